"""Configuration: file, environment, .ports.env and CLI, and one clear line when it is wrong."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from broadcaster.cli import main
from broadcaster.config import load_config
from broadcaster.errors import ConfigError
from tests.helpers import service_command

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_shipped_config_toml_is_valid_and_holds_the_defaults(tmp_path: Path) -> None:
    shipped = load_config(REPO / "config.toml", env={}, cwd=tmp_path)
    builtin = load_config(None, env={}, cwd=REPO)
    assert shipped.server == builtin.server
    assert shipped.broadcast == builtin.broadcast
    assert shipped.adw == builtin.adw
    assert shipped.database == builtin.database
    assert (shipped.server.host, shipped.server.port, shipped.server.path_prefixes) == (
        "127.0.0.1",
        8002,
        ("", "/api/v1"),
    )
    assert shipped.broadcast.min_interval == 1.0
    assert shipped.adw.agents_dir == REPO / "agents"


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    cfg = write(tmp_path / "conf" / "b.toml", '[adw]\nagents_dir = "../proj/agents"\n[database]\npath = "db.sqlite"\n')
    config = load_config(cfg, env={}, cwd=Path("/somewhere/else"))
    assert config.adw.agents_dir == tmp_path / "conf" / "../proj/agents"
    assert config.adw.trees_dir == tmp_path / "conf" / "trees"  # a default, anchored at the file too
    assert config.database.path == tmp_path / "conf" / "db.sqlite"


def test_precedence_cli_over_env_over_ports_env_over_file(tmp_path: Path) -> None:
    cfg = write(tmp_path / "c.toml", '[server]\nport = 9001\nhost = "127.0.0.2"\n')
    assert load_config(cfg, env={}, cwd=tmp_path).server.port == 9001
    write(tmp_path / ".ports.env", "FRONTEND_PORT=9200\nBACKEND_PORT=9102\n")
    assert load_config(cfg, env={}, cwd=tmp_path).server.port == 9102
    env = {
        "BROADCASTER_SERVER_PORT": "9103",
        "BROADCASTER_BROADCAST_MIN_INTERVAL": "0.5",
        "BROADCASTER_SERVER_PATH_PREFIXES": "/a, /b",
        "BROADCASTER_ADW_FORCE_POLLING": "yes",
    }
    config = load_config(cfg, env=env, cwd=tmp_path)
    assert (config.server.port, config.broadcast.min_interval) == (9103, 0.5)
    assert (config.server.path_prefixes, config.adw.force_polling) == (("/a", "/b"), True)
    assert config.server.host == "127.0.0.2"
    assert load_config(cfg, env=env, overrides={"server.port": "9104"}, cwd=tmp_path).server.port == 9104


def test_ports_env_in_the_working_directory_counts_too(tmp_path: Path) -> None:
    write(tmp_path / ".ports.env", "export BACKEND_PORT='9150'\n")
    assert load_config(None, env={}, cwd=tmp_path).server.port == 9150


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nport = "eighty"\n', "c.toml: [server] port: expected an integer, got 'eighty'"),
        ("[server]\nprot = 1\n", "c.toml: unknown key [server] prot (known: host, port, path_prefixes,"),
        (
            "[srever]\nport = 1\n",
            "c.toml: unknown key 'srever' (known: log_level, server, broadcast, adw, database, webhook, upstream, "
            "routes, system_status, event_log, redaction, backplane, alerts)",
        ),
        ("[server]\nport = 70000\n", "c.toml: [server] port: must be 0-65535, got 70000"),
        ('[server]\npath_prefixes = ["api"]\n', "c.toml: [server] path_prefixes: each prefix is"),
        ("[broadcast]\nmin_interval = -1\n", "c.toml: [broadcast] min_interval: must be >= 0, got -1.0"),
        ('[adw]\nforce_polling = "maybe"\n', "c.toml: [adw] force_polling: expected true or false, got 'maybe'"),
        ('[adw]\ngithub_repo = "nope"\n', "c.toml: [adw] github_repo: must look like owner/name, got 'nope'"),
        ('log_level = "loud"\n', "c.toml: log_level: must be one of debug, info, warning, error, got 'loud'"),
        ("[server\n", "c.toml: not valid TOML"),
        (
            '[database]\nurl = "mysql://u:secret@h/db"\n',
            "c.toml: [database] url: must be a postgresql://user@host:port/database URL",
        ),
        (
            '[database]\nurl = "postgresql://u@h/db"\npath = "agents.db"\n',
            "c.toml: [database] url: and [database] path (SQLite) are two databases: set one of them",
        ),
        ('[database]\nlisten = ["queue"]\n', "c.toml: [database] listen: is for PostgreSQL: set [database] url too"),
        (
            '[database]\nurl = "postgresql://u@h/db"\nlisten = ["a;drop"]\n',
            "c.toml: [database] listen: channel names are identifiers, got 'a;drop'",
        ),
        (
            '[[system_status.checks]]\nname = "database"\nurl = "http://x"\n',
            "c.toml: [system_status] checks: name 'database' is one of the service's own entries (backend_api,",
        ),
    ],
)
def test_a_bad_config_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = write(tmp_path / "c.toml", text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg, env={}, cwd=tmp_path)
    assert str(info.value).startswith(f"{tmp_path}/{message}")
    assert "\n" not in str(info.value)


def test_a_bad_environment_value_names_the_variable_origin(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^environment: \[server\] port: expected an integer, got 'x'$"):
        load_config(None, env={"BROADCASTER_SERVER_PORT": "x"}, cwd=tmp_path)


def test_cli_stops_with_one_line_on_a_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path / "c.toml", '[broadcast]\nmin_interval = "soon"\n')
    assert main(["--config", str(cfg)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert (
        err == f"adw-broadcaster: configuration error: {cfg}: [broadcast] min_interval: expected a number, got 'soon'\n"
    )


def test_cli_reports_a_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert (
        capsys.readouterr().err
        == f"adw-broadcaster: configuration error: {tmp_path}/nope.toml: config file not found\n"
    )


def test_the_token_comes_from_the_environment_too(tmp_path: Path) -> None:
    from broadcaster.web.auth import load_token

    config = load_config(None, env={"BROADCASTER_SERVER_TOKEN": " from-env \n"}, cwd=tmp_path)
    assert load_token(config.server) == b"from-env"
    (tmp_path / "token").write_text("from-file\n")
    config = load_config(None, env={"BROADCASTER_SERVER_TOKEN_FILE": str(tmp_path / "token")}, cwd=tmp_path)
    assert load_token(config.server) == b"from-file"


def test_the_database_url_comes_from_the_environment_and_its_password_never_in_an_error(tmp_path: Path) -> None:
    config = load_config(None, env={"BROADCASTER_DATABASE_URL": "postgresql://u:pw@db:5432/tac"}, cwd=tmp_path)
    assert config.database.url == "postgresql://u:pw@db:5432/tac"
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"BROADCASTER_DATABASE_URL": "postgres:/u:s3cret@x"}, cwd=tmp_path)
    assert "s3cret" not in str(info.value)


def test_an_unreadable_password_file_is_one_line_at_start_up(tmp_path: Path) -> None:
    cfg = write(
        tmp_path / "c.toml",
        '[server]\nport = 0\n[event_log]\npath = ""\n[database]\nurl = "postgresql://u@127.0.0.1:1/db"\n'
        'password_file = "missing-pw"\n',
    )
    done = subprocess.run(
        [*service_command(), "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        1,
        "",
        f"adw-broadcaster: cannot start: [database] password_file: cannot read {tmp_path / 'missing-pw'}: "
        "No such file or directory\n",
    )
