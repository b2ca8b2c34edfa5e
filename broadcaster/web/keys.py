"""Typed application keys: everything create_app wires together, reachable from a request."""

from __future__ import annotations

from aiohttp import web

from sources.adw_files import AdwFiles
from sources.http import Fetch
from sources.source import DatabaseWatch

from ..channels.feeds import Feeds
from ..channels.status import SystemStatus
from ..config import Config
from ..core.counters import Counters
from ..core.events import EventLog
from ..core.hub import Hub
from ..core.pipeline import Pipeline
from ..supervisor import Supervisor

CONFIG = web.AppKey("config", Config)
HUB = web.AppKey("hub", Hub)
PIPELINE = web.AppKey("pipeline", Pipeline)
ADW_FILES = web.AppKey("adw_files", AdwFiles)
DATABASES = web.AppKey("databases", list[DatabaseWatch])
FEEDS = web.AppKey("feeds", Feeds)
FETCH = web.AppKey("fetch", Fetch)
STATUS = web.AppKey("status", SystemStatus)
EVENT_LOG = web.AppKey("event_log", EventLog)
SUPERVISOR = web.AppKey("supervisor", Supervisor)
COUNTERS = web.AppKey("counters", Counters)
# The handshake deadlines' key lives beside them: guards.HANDSHAKES_KEY (guards reads CONFIG from here).
