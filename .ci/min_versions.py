"""Print a pip constraints file pinning every ``name>=X`` requirement of pyproject.toml to ``name==X``.

CI installs the package with these constraints in a second venv and runs the tests there, so a
minimum that is too low fails CI instead of a user's install.
"""

import re
import tomllib
from pathlib import Path

project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
requirements = list(project["dependencies"])
requirements += project["optional-dependencies"]["test"] + project["optional-dependencies"]["cluster"]
for requirement in requirements:
    match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][0-9.]*)\s*(;.*)?", requirement)
    if match:
        print(f"{match[1]}=={match[2]}")
