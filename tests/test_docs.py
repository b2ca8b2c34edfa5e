"""The docs a user reads live in the repository and point only at what it holds.

Every relative link of README.md and docs/*.md leads to a file here (and to a heading of it when
it names one); no file the package, the JS client or the docs ship points to the team's design
notes outside the repository; CI runs the README's test command as written (its run command is
run as written by .ci/install_check.py).
"""

from __future__ import annotations

import re
import subprocess

from tests.helpers import REPO

LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(markdown: str) -> set[str]:
    """Return the GitHub anchors of a markdown file's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_every_relative_link_of_the_docs_leads_to_a_file_and_heading_here() -> None:
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            if not linked.exists():
                broken.append(f"{doc.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked.read_text()):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert broken == []


def test_nothing_points_at_notes_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    shipped = [
        name
        for name in tracked.splitlines()
        if name.startswith(("broadcaster/", "sources/", "clients/", "docs/", "tests/", "bench/"))
        or name in ("README.md", "BENCHMARKS.md", "config.toml", "pyproject.toml")
    ]
    pointing = [
        name
        for name in shipped
        if (REPO / name).is_file()
        and not name.endswith((".png", ".svg"))
        and re.search(r"DESIGN\.md|\.\./shared/", (REPO / name).read_text(errors="replace"))
        and name != "tests/test_docs.py"
    ]
    assert pointing == []


def test_ci_runs_the_readme_test_command_as_written() -> None:
    run, test = (REPO / "README.md").read_text().split("```sh\n", 1)[1].split("\n```", 1)[0].splitlines()
    assert run.endswith("adw-broadcaster --config config.toml --demo")
    assert test in (REPO / ".ci" / "run").read_text().splitlines()
