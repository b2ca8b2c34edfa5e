"""What an install must hold and what start-up says when it does not (real service processes).

The built wheel and sdist themselves are installed and run by ``.ci/install_check.py``; here:
the list of served files matches the package's ``static/`` folder and everything the dashboard
loads; a missing shipped file, or a backplane without the ``cluster`` extra, is one line at
start-up; without uvloop the service runs on asyncio's loop and says so.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from urllib.parse import urljoin

import aiohttp

from broadcaster.web.static_files import FILES
from tests.helpers import REPO, Service, service_command, service_config
from tests.protocol_check import check_frame

STATIC = REPO / "broadcaster" / "web" / "static"
# What a page or module loads: <script src>, <link href>, and ES module imports.
LOADS = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="(/[^"]*)"|\bfrom\s*["']([^"']+)["']""")


def test_every_shipped_file_is_served_and_everything_the_dashboard_loads_is_shipped() -> None:
    on_disk = sorted(str(p.relative_to(STATIC)) for p in STATIC.rglob("*") if p.is_file())
    assert sorted(name for name, _ in FILES.values()) == on_disk
    loaded = set()
    for path, (name, _) in FILES.items():
        if name.startswith("dashboard/"):  # the page and its modules (client.js imports nothing)
            for tag, module in LOADS.findall((STATIC / name).read_text()):
                loaded.add(urljoin(path, tag or module))
    assert loaded == {"/client.js", "/dashboard/app.js", "/dashboard/dashboard.css"} | {
        f"/dashboard/{m}.js" for m in ("alerts", "detail", "format", "monitor", "panels")
    }
    assert loaded <= set(FILES)


async def start_once(cwd, *args: str, hide: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """Run the service with ``args``; it is expected to refuse to start."""
    return await asyncio.to_thread(
        subprocess.run,
        [*service_command(hide), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(cwd if (cwd / "broadcaster").is_dir() else REPO), "PATH": "/usr/bin:/bin"},
    )


async def test_a_shipped_file_missing_from_the_package_is_one_line_naming_it(tmp_path) -> None:
    for package in ("broadcaster", "sources"):  # a copy of the package, as a broken install would hold it
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    missing = tmp_path / "broadcaster" / "web" / "static" / "dashboard" / "panels.js"
    missing.unlink()
    done = await start_once(tmp_path, "--demo", "--port", "0")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        f"adw-broadcaster: cannot start: {missing}: a file the service serves is missing from the installed "
        "package (No such file or directory); reinstall adw-broadcaster"
    ]


async def test_a_backplane_without_the_cluster_extra_is_one_line_naming_it(tmp_path) -> None:
    for view in ("", "\nview = 'cluster'"):  # a node and a view alike
        (tmp_path / "config.toml").write_text(f'[server]\nport = 0\n[backplane]\nurl = "redis://127.0.0.1:9/0"{view}\n')
        done = await start_once(tmp_path, "--config", "config.toml", hide=("redis",))
        assert (done.returncode, done.stdout) == (1, "")
        assert done.stderr.splitlines() == [
            "adw-broadcaster: cannot start: [backplane] needs the redis package, which is not installed: "
            "pip install 'adw-broadcaster[cluster]'"
        ]


async def test_without_uvloop_it_runs_on_asyncio_and_says_so(workspace, write_state) -> None:
    write_state("a1", issue_number=1, status="running", step=0)
    service = await Service(workspace.root, service_config(workspace, 0), hide=("uvloop",)).start()
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(service.url("/ws/adw-state/a1")) as ws:
            frame = await ws.receive_str(timeout=5)
            check_frame(frame)
            assert '"step":0' in frame
    finally:
        assert await service.stop() == 0
    assert re.search(r"adw-broadcaster 0\.1\.0 on http://127\.0\.0\.1:\d+; .*; event loop asyncio\n", service.log)
    assert "Traceback" not in service.log
