"""Configuration: typed sections read from TOML, the environment, ``.ports.env`` and the CLI.

Precedence, highest first: CLI flag > ``BROADCASTER_<SECTION>_<KEY>`` > ``.ports.env``
``BACKEND_PORT`` > config file > built-in default. Relative paths in the file are relative to
the file; relative paths from the environment or the CLI are relative to the working directory.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .rules import validate
from .sections import SECTIONS, TOP_LEVEL_KEYS, Config


def load_config(
    path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Build a Config from a TOML file, the environment, ``.ports.env`` and CLI overrides.

    Args:
        path: the TOML file; None uses built-in defaults only.
        env: the environment to read ``BROADCASTER_*`` from (default ``os.environ``).
        overrides: ``"section.key"`` (or ``"log_level"``) -> value, from the CLI.
        cwd: base for relative paths that do not come from the file (default: working directory).

    Raises:
        ConfigError: one line naming the file and key that is wrong.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    layers: list[tuple[str, Path, dict[str, dict[str, Any]]]] = []

    if path is not None:
        layers.append((str(path), path.parent.resolve(), _read_toml(path)))
    ports_file = _find_ports_env(path, cwd)
    if ports_file is not None:
        port = _read_backend_port(ports_file)
        if port is not None:
            layers.append((str(ports_file), cwd, {"server": {"port": port}}))
    env_values = _from_env(env)
    if env_values:
        layers.append(("environment", cwd, env_values))
    if overrides:
        layers.append(("command line", cwd, _nest(overrides)))

    merged: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}
    for origin, base, values in layers:
        for section, keys in values.items():
            target = merged.setdefault(section, {})
            for key, raw in keys.items():
                target[key] = _coerce(raw, _field_type(origin, section, key), f"{origin}: {_where(section, key)}", base)
                origins[_where(section, key)] = origin

    top = merged.pop("", {})
    base = path.parent.resolve() if path is not None else cwd
    sections = {name: _absolute_paths(cls(**merged.get(name, {})), base) for name, cls in SECTIONS.items()}
    config = Config(source=path, **top, **sections)
    validate(config, origins)
    return _derived(config)


def _derived(config: Config) -> Config:
    """Fill what follows from other keys: with an upstream, the routes come from its OpenAPI document."""
    if config.upstream.url and not config.routes.openapi_url:
        routes = dataclasses.replace(config.routes, openapi_url=config.upstream.url.rstrip("/") + "/openapi.json")
        return dataclasses.replace(config, routes=routes)
    return config


def _absolute_paths(section: Any, base: Path) -> Any:
    """Anchor the built-in relative defaults at ``base`` (the config file's directory)."""
    changes = {
        f.name: base / value
        for f in dataclasses.fields(section)
        if isinstance(value := getattr(section, f.name), Path) and not value.is_absolute()
    }
    return dataclasses.replace(section, **changes) if changes else section


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    out: dict[str, dict[str, Any]] = {"": {}}
    for key, value in raw.items():
        if key in TOP_LEVEL_KEYS:
            out[""][key] = value
        elif key in SECTIONS:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: [{key}] must be a table")
            out[key] = dict(value)
        else:
            raise ConfigError(f"{path}: unknown key {key!r} (known: {', '.join([*TOP_LEVEL_KEYS, *SECTIONS])})")
    return out


def _find_ports_env(config_path: Path | None, cwd: Path) -> Path | None:
    candidates = ([config_path.parent / ".ports.env"] if config_path else []) + [cwd / ".ports.env"]
    return next((c for c in candidates if c.is_file()), None)


def _read_backend_port(path: Path) -> str | None:
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        m = re.match(r"\s*(?:export\s+)?BACKEND_PORT\s*=\s*['\"]?([^'\"#\s]*)", line)
        if m:
            return m.group(1)
    return None


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key in TOP_LEVEL_KEYS:
        name = f"BROADCASTER_{key.upper()}"
        if name in env:
            out.setdefault("", {})[key] = env[name]
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            name = f"BROADCASTER_{section.upper()}_{f.name.upper()}"
            if name in env and not _is_table_list(typing.get_type_hints(cls)[f.name]):
                out.setdefault(section, {})[f.name] = env[name]
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for dotted, value in flat.items():
        section, _, key = dotted.rpartition(".")
        out.setdefault(section, {})[key] = value
    return out


def _where(section: str, key: str) -> str:
    return f"[{section}] {key}" if section else key


def _field_type(origin: str, section: str, key: str) -> Any:
    cls = Config if section == "" else SECTIONS[section]
    hints = typing.get_type_hints(cls)
    if key not in hints or (section == "" and key not in TOP_LEVEL_KEYS):
        known = ", ".join(TOP_LEVEL_KEYS if section == "" else (f.name for f in dataclasses.fields(cls)))
        raise ConfigError(f"{origin}: unknown key {_where(section, key)} (known: {known})")
    return hints[key]


def _coerce(value: Any, kind: Any, where: str, base: Path) -> Any:
    """Turn a TOML value or an environment string into ``kind``, or say what is wrong."""
    optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
    if optional:
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    from_text = isinstance(value, str) and kind is not str and kind is not Path
    try:
        if kind is bool:
            if from_text and value.strip().lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                return value.strip().lower() in ("1", "true", "yes", "on")
            if isinstance(value, bool):
                return value
            raise ValueError
        if kind is int:
            if from_text:
                return int(value.strip())
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            raise ValueError
        if kind is float:
            if from_text:
                return float(value.strip())
            if isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            raise ValueError
        if kind is str:
            if isinstance(value, str):
                return value
            raise ValueError
        if kind is Path:
            if not isinstance(value, str):
                raise ValueError
            if value == "" and optional:
                return None
            p = Path(value).expanduser()
            return p if p.is_absolute() else (base / p)
        if _is_table_list(kind):
            item_cls = typing.get_args(kind)[0]
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ValueError
            return tuple(_table(item_cls, v, f"{where}[{i}]") for i, v in enumerate(value))
        if typing.get_origin(kind) is tuple:
            if from_text:
                value = [part.strip() for part in value.split(",")] if value.strip() else []
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
            raise ValueError
    except ValueError:
        pass
    raise ConfigError(f"{where}: expected {_describe(kind, optional)}, got {value!r}")


def _is_table_list(kind: Any) -> bool:
    args = typing.get_args(kind)
    return typing.get_origin(kind) is tuple and bool(args) and dataclasses.is_dataclass(args[0])


def _table(cls: type[Any], value: dict[str, Any], where: str) -> Any:
    """Build one entry of an array of tables (e.g. ``[[system_status.checks]]``)."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key, item in value.items():
        if key not in hints:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(names)})")
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{where} {key}: expected a non-empty string, got {item!r}")
    missing = [n for n in names if n not in value]
    if missing:
        raise ConfigError(f"{where}: missing {', '.join(missing)}")
    return cls(**value)


def _describe(kind: Any, optional: bool) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", Path: "a path"}
    if _is_table_list(kind):
        return "an array of tables"
    if typing.get_origin(kind) is tuple:
        return "a list of strings"
    text = names.get(kind, str(kind))
    return f'{text} (or "" for none)' if optional else text
