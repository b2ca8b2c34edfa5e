"""Install the built wheel and sdist as a user would, each in a clean venv, and check what they serve.

    python3 .ci/install_check.py

Builds both from a copy of the files of this checkout that git knows (``python -m build --sdist
--wheel``: the wheel from the tree, the sdist installed by pip, which builds its own wheel from
it), installs each (not editable, no
extras) into a new virtual environment, and from an empty directory outside the checkout:

- ``adw-broadcaster --demo`` starts on uvloop and serves ``/``, every file the page loads (found
  by following its ``<script>``/``<link>`` tags and the modules' imports), ``/client.js`` and
  ``/client.d.ts``; a WebSocket on ``/ws/adw-monitor`` gets the demo's snapshot first; SIGINT
  ends it with 0, no traceback, its demo workspace removed;
- with ``[backplane] url`` set, start-up stops with one line naming the ``cluster`` extra (the
  plain install has no ``redis``).

Then the README's first command, as written, in that copy of the checkout: the same checks.

Run by a Python that has ``build`` (the ``dev`` extra); the rest is the stdlib, so nothing of this
checkout's environment leaks into what is checked.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path
from urllib.parse import urljoin, urlsplit

REPO = Path(__file__).resolve().parents[1]
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".ts": "application/typescript"}
TAGS = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="(/[^"]*)\"""")
IMPORTS = re.compile(r"""(?:\bfrom\s*|\bimport\s*\(?\s*)["']([^"']+)["']""")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="adwb-install-"))
    try:
        dist, source = work / "dist", copy_checkout(work / "source")
        run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(dist), str(source)], quiet=True)
        [wheel] = dist.glob("*.whl")  # built before the README's command below puts a venv into source
        [sdist] = dist.glob("*.tar.gz")
        for kind, artifact in (("wheel", wheel), ("sdist", sdist)):
            venv = work / f"venv-{kind}"
            run([sys.executable, "-m", "venv", str(venv)])
            run([str(venv / "bin" / "pip"), "install", "-q", str(artifact)], quiet=True)
            cwd = work / f"run-{kind}"
            cwd.mkdir()
            served = check_demo([str(venv / "bin" / "adw-broadcaster"), "--demo", "--port", "0"], cwd)
            check_backplane_needs_the_extra(venv, cwd)
            print(f"{kind} {artifact.name}: served {', '.join(served)}; SIGINT exit 0; backplane: one line")
        # The README's first command, as written, in the copy (a fresh clone's files): it makes its
        # own venv there. Port 0 through the environment, so a service already on 8002 is no bother.
        readme = (REPO / "README.md").read_text().split("```sh\n", 1)[1].splitlines()[0]
        served = check_demo(["bash", "-c", readme], source, env={"BROADCASTER_SERVER_PORT": "0"})
        print(f"README's first command: served {len(served)} paths; SIGINT exit 0")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def copy_checkout(to: Path) -> Path:
    """Copy the files git knows of (tracked, or new and not ignored) to ``to``: the tree a clone has.

    Not the checkout itself: an editable install leaves ``*.egg-info`` there, whose file list
    would put files into the sdist and wheel that a build from a clean clone leaves out.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        origin, target = REPO / name, to / name
        if not origin.is_symlink() and not origin.exists():
            continue  # deleted in the work tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_symlink():
            target.symlink_to(os.readlink(origin))
        else:
            shutil.copy2(origin, target)
    return to


def run(command: list[str], *, quiet: bool = False) -> None:
    done = subprocess.run(command, capture_output=quiet, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stdout or ''}{done.stderr or ''}")


def check_demo(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    """Run ``command`` (``adw-broadcaster --demo``, or one ending in it) in ``cwd``; return the paths it served."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # SIGINT goes to the whole group, as Ctrl-C in a terminal does
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        banner = [proc.stdout.readline() for _ in range(3)]
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", banner[0])
        workspace = re.search(r"demo\s+simulated agents in (\S+)", banner[2])
        if found is None or workspace is None:
            proc.kill()
            raise SystemExit(f"the installed demo did not start: {banner!r}\n{proc.stderr.read()}")
        base = found.group(1)
        served = crawl(base)
        snapshot = first_frame(base, "/ws/adw-monitor")
        assert snapshot["type"] == "adw_monitor_update" and snapshot["data"]["workflows"], snapshot
        os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            for pid in subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, text=True).stdout.split():
                os.kill(int(pid), signal.SIGUSR1)  # the service writes every thread's stack (faulthandler)
            try:
                proc.wait(2)  # bash, if the demo runs under it, ends on USR1; the service goes on
            except subprocess.TimeoutExpired:
                pass
            os.killpg(proc.pid, signal.SIGKILL)
            raise SystemExit(f"the demo did not end within 15 s of SIGINT; it wrote:\n{proc.stderr.read()}") from None
        err = proc.stderr.read()
        assert code == 0, f"exit {code} on SIGINT: {err}"
        assert "Traceback" not in err, err
        assert re.search(r"; event loop uvloop \d", err), f"not on uvloop: {err}"
        assert not Path(workspace.group(1)).exists(), "the demo workspace was left behind"
        return served
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def crawl(base: str) -> list[str]:
    """GET ``/`` and everything it loads, recursively, plus the client files; each must be 200 and typed."""
    todo, seen = ["/", "/client.js", "/client.d.ts"], []
    while todo:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.append(path)
        with urllib.request.urlopen(base + path, timeout=10) as answer:
            body = answer.read().decode()
            kind = answer.headers.get_content_type()
        suffix = ".html" if path.endswith("/") else path[path.rindex(".") :]
        assert (answer.status, kind) == (200, TYPES[suffix]), f"{path}: {answer.status} {kind}"
        found = TAGS.findall(body) if suffix == ".html" else IMPORTS.findall(body) if suffix == ".js" else []
        todo += [urlsplit(urljoin(base + path, ref)).path for ref in found if not ref.startswith("data:")]
    return seen


def first_frame(base: str, path: str) -> dict[str, object]:
    """Open a WebSocket on ``path`` with a raw socket; return the first message the server sends."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    assert host is not None and port is not None
    with socket.create_connection((host, port), timeout=10) as sock:
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, data = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        while True:
            if len(data) >= 2:
                size, start = data[1] & 0x7F, 2
                if size == 126:
                    size, start = int.from_bytes(data[2:4], "big"), 4
                elif size == 127:
                    size, start = int.from_bytes(data[2:10], "big"), 10
                if len(data) >= start + size:
                    message: dict[str, object] = json.loads(data[start : start + size])
                    return message
            chunk = sock.recv(65536)
            assert chunk, "the socket closed before the first message"
            data += chunk


def check_backplane_needs_the_extra(venv: Path, cwd: Path) -> None:
    """With ``[backplane] url`` and no ``redis``, start-up stops with one line naming the extra."""
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import redis"], capture_output=True)
    assert probe.returncode != 0, "the plain install has redis: the extra is not optional"
    (cwd / "cluster.toml").write_text('[backplane]\nurl = "redis://127.0.0.1:9/0"\n[server]\nport = 0\n')
    done = subprocess.run(
        [str(venv / "bin" / "adw-broadcaster"), "--config", "cluster.toml"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and len(lines) == 1, (done.returncode, done.stderr)
    assert "pip install 'adw-broadcaster[cluster]'" in lines[0], lines[0]


if __name__ == "__main__":
    sys.exit(main())
