"""``adw-broadcaster``: load the configuration, serve until Ctrl-C or SIGTERM, exit cleanly."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import importlib.metadata
import logging
import resource
import signal
import ssl
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web

from sources.urls import safe_url

from ._version import __version__
from .app import create_app
from .channels.specs import SPECS
from .cluster import node_name
from .config import LOG_LEVELS, Config, load_config
from .demo import run_demo
from .errors import ConfigError, ListenError, StartupError
from .web.auth import TOKEN_KEY, AccessLog, TokenScrubber, load_token
from .web.guards import HANDSHAKES_KEY, is_loopback
from .web.site import GuardedSite, LoopErrors, quiet_server_log
from .web.tls import tls_context

logger = logging.getLogger("broadcaster")

SHUTDOWN_TIMEOUT = 1.0  # seconds handlers get after sockets were told to go away


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="adw-broadcaster",
        description="Watch ADW agents' state files and database; push real changes to dashboards over WebSockets.",
        epilog="adw-broadcaster watch CHANNEL... follows channels of a running service (see watch --help).",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration (default: ./config.toml if it exists)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", help="port to bind (default 8002, or BACKEND_PORT from .ports.env)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="log verbosity (default info)")
    parser.add_argument(
        "--demo", action="store_true", help="run on simulated agents in a temporary workspace (removed on exit)"
    )
    parser.add_argument(
        "--demo-speed",
        type=float,
        default=1.0,
        metavar="X",
        help="with --demo: make the simulated agents X times faster (default 1)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the service (or ``watch``, a client of one); return the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["watch"]:
        from .subscriber import watch  # a client: none of the service's start-up applies

        return watch.main(argv[1:])
    args = parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.host is not None:
        overrides["server.host"] = args.host
    if args.port is not None:
        overrides["server.port"] = args.port
    if args.log_level is not None:
        overrides["log_level"] = args.log_level
    path = args.config
    if path is None and Path("config.toml").is_file():
        path = Path("config.toml")
    try:
        config = load_config(path, overrides=overrides)
        token = load_token(config.server)  # a token file that cannot be read stops here, in one line
        tls = tls_context(config.server)
    except ConfigError as exc:
        print(f"adw-broadcaster: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(TokenScrubber(token))  # no line of any logger, at any level, shows the token
    if config.log_level != "debug":
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every change at INFO
    if args.demo_speed <= 0:
        print("adw-broadcaster: --demo-speed must be > 0", file=sys.stderr)
        return 2
    _raise_descriptor_limit()
    # kill -USR1 <pid> writes every thread's stack to stderr: a service that will not stop or
    # seems stuck tells where it is, without a debugger.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        run(run_demo(config, serve, speed=args.demo_speed, tls=tls) if args.demo else serve(config, tls=tls))
    except ListenError as exc:
        print(f"adw-broadcaster: {exc}", file=sys.stderr)
        return 1
    except StartupError as exc:
        print(f"adw-broadcaster: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


async def serve(
    config: Config, *, banner: bool = True, demo_workspace: Path | None = None, tls: ssl.SSLContext | None = None
) -> None:
    """Serve ``config`` until SIGINT or SIGTERM, then close sockets (1001) and stop every source."""
    asyncio.get_running_loop().set_exception_handler(LoopErrors())
    app = create_app(config)
    # Requests are logged only with --log-level debug (one line each would swamp polling clients),
    # the token in a query shown as ***.
    access = logging.getLogger("broadcaster.access") if config.log_level == "debug" else None
    runner = web.AppRunner(
        app,
        access_log=access,
        access_log_class=AccessLog,
        shutdown_timeout=SHUTDOWN_TIMEOUT,
        logger=quiet_server_log(),
    )
    await runner.setup()
    try:
        site = GuardedSite(
            runner, config.server.host, config.server.port, handshakes=app[HANDSHAKES_KEY], ssl_context=tls
        )
        try:
            await site.start()
        except OSError as exc:  # the port is taken, the address does not exist, ...
            raise ListenError(
                f"cannot listen on {config.server.host}:{config.server.port}: {exc.strerror or exc}"
            ) from exc
        log_start(config, runner, tls is not None, bool(app[TOKEN_KEY]), loop=loop_name())
        if banner:
            print_banner(config, runner, demo_workspace, tls is not None, bool(app[TOKEN_KEY]))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logger.info("shutting down")
    finally:
        await runner.cleanup()


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop (a dependency wherever it is built for the platform), else on asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def loop_name() -> str:
    """Return which event loop runs this service, for the start line: ``uvloop 0.21.0`` or ``asyncio``."""
    if type(asyncio.get_running_loop()).__module__.startswith("uvloop"):
        return f"uvloop {importlib.metadata.version('uvloop')}"
    return "asyncio"


def _raise_descriptor_limit() -> None:
    """Use the hard limit on open files: every client is a descriptor, and sources need theirs too."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
    except (ValueError, OSError) as exc:
        logger.debug("cannot raise the descriptor limit: %s", exc)


def _bound(config: Config, runner: web.AppRunner) -> str:
    host, port = config.server.host, config.server.port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            host, port = address[0], address[1]
            break
    return f"{f'[{host}]' if ':' in str(host) else host}:{port}"


def log_start(config: Config, runner: web.AppRunner, tls: bool, token: bool, *, loop: str) -> None:
    """Log one line per start: version, address, sources, whether a token and TLS are on, the event loop."""
    b = config.backplane
    if b.view == "cluster":
        sources = [f"cluster view of the nodes on {safe_url(b.url)}"]
    else:
        sources = [f"agents {config.adw.agents_dir}"]
        if config.database.path is not None:
            sources.append(f"database {config.database.path}")
        if config.webhook.status_url:
            sources.append(f"webhook {config.webhook.status_url}")
        if b.url:
            sources.append(f"publishing to {safe_url(b.url)} as {node_name(b.node)}")
    if config.upstream.url:
        sources.append(f"upstream {config.upstream.url}")
    logger.info(
        "adw-broadcaster %s on %s://%s; %s; token %s; TLS %s; event loop %s",
        __version__,
        "https" if tls else "http",
        _bound(config, runner),
        ", ".join(sources),
        "on" if token else "off",
        "on" if tls else "off",
        loop,
    )
    if not token and not is_loopback(config.server.host):
        logger.warning(
            "listening on %s without a token: anyone who reaches the port reads the agents' state "
            "(set [server] token or token_file)",
            config.server.host,
        )


def print_banner(
    config: Config, runner: web.AppRunner, demo_workspace: Path | None = None, tls: bool = False, token: bool = False
) -> None:
    """Tell the user where to connect."""
    base = _bound(config, runner)
    prefix = config.server.path_prefixes[-1] if config.server.path_prefixes else ""
    http, ws = ("https", "wss") if tls else ("http", "ws")
    lines = [
        f"adw-broadcaster {__version__} listening on {http}://{base}",
        f"  dashboard {http}://{base}/   <- open this",
    ]
    if demo_workspace is not None:
        lines.append(f"  demo      simulated agents in {demo_workspace} (removed on exit)")
    elif config.backplane.view == "cluster":
        lines.append(f"  viewing   every node publishing to {safe_url(config.backplane.url)}")
    else:
        lines.append(f"  watching  {config.adw.agents_dir}")
    lines += [
        f"  live      {ws}://{base}{prefix}/ws/adw-monitor   (any of: {', '.join(_ws_names())})",
        f"  one socket {ws}://{base}{prefix}/ws?channels=adw-monitor,queue   (or subscribe by message)",
        f"  snapshot  {http}://{base}/api/v1/adw-monitor   (same data over HTTP, JSON)",
        f"  status    {http}://{base}/api/v1/system-status",
        f"  clients   {http}://{base}/client.js   adw-broadcaster watch adw-monitor --url {http}://{base}",
        f"  protocol  {http}://{base}/asyncapi.json   {http}://{base}/broadcaster/openapi.json",
        "  Ctrl-C to stop",
    ]
    print("\n".join(lines), flush=True)


def _ws_names() -> list[str]:
    return [spec.path.lstrip("/") for spec in SPECS.values()]
