"""Typed application keys: everything create_app wires together, reachable from a request."""

from __future__ import annotations

from aiohttp import web

from sources.adw_files import AdwFiles

from .config import Config
from .hub import Hub
from .pipeline import Pipeline

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
PIPELINE = web.AppKey("pipeline", Pipeline)
ADW_FILES = web.AppKey("adw_files", AdwFiles)
