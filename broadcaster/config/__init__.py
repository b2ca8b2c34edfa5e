"""The configuration: ``config.toml``, ``BROADCASTER_*`` variables and flags, typed and checked together."""

from .rules import LOG_LEVELS
from .sections import CheckConfig, Config, ServerConfig, UpstreamConfig
from .settings import load_config

__all__ = ["LOG_LEVELS", "CheckConfig", "Config", "ServerConfig", "UpstreamConfig", "load_config"]
