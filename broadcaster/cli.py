"""``adw-broadcaster``: load the configuration, serve until Ctrl-C or SIGTERM, exit cleanly."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from aiohttp import web

from . import __version__
from .app import create_app
from .config import LOG_LEVELS, Config, load_config
from .errors import ConfigError

logger = logging.getLogger("broadcaster")

SHUTDOWN_TIMEOUT = 1.0  # seconds handlers get after sockets were told to go away


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="adw-broadcaster",
        description="Watch ADW agents' state files and database; push real changes to dashboards over WebSockets.",
    )
    parser.add_argument("--config", type=Path, help="TOML configuration (default: ./config.toml if it exists)")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", help="port to bind (default 8002, or BACKEND_PORT from .ports.env)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="log verbosity (default info)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the service; return the process exit code."""
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
    except ConfigError as exc:
        print(f"adw-broadcaster: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if config.log_level != "debug":
        logging.getLogger("watchfiles").setLevel(logging.WARNING)  # it logs every change at INFO
    try:
        asyncio.run(serve(config))
    except OSError as exc:  # the port is taken, the address does not exist, ...
        print(
            f"adw-broadcaster: cannot listen on {config.server.host}:{config.server.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return 1
    return 0


async def serve(config: Config, *, banner: bool = True) -> None:
    """Serve ``config`` until SIGINT or SIGTERM, then close sockets (1001) and stop every source."""
    runner = web.AppRunner(create_app(config), access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.server.host, config.server.port)
        await site.start()
        if banner:
            print_banner(config, runner)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        logger.info("shutting down")
    finally:
        await runner.cleanup()


def print_banner(config: Config, runner: web.AppRunner) -> None:
    """Tell the user where to connect."""
    host, port = config.server.host, config.server.port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            host, port = address[0], address[1]
            break
    shown = f"[{host}]" if ":" in str(host) else host
    base = f"{shown}:{port}"
    prefix = config.server.path_prefixes[-1] if config.server.path_prefixes else ""
    print(f"adw-broadcaster {__version__} listening on http://{base}", flush=True)
    print(f"  watching  {config.adw.agents_dir}", flush=True)
    print(f"  try       ws://{base}{prefix}/ws/adw-monitor", flush=True)
    print("  Ctrl-C to stop", flush=True)
