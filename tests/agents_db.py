"""The agents' SQLite database, written the way the agents write it: its own connection, commits."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

PHASE_QUEUE_OLD = """
CREATE TABLE phase_queue (
    queue_id TEXT PRIMARY KEY, parent_issue INTEGER NOT NULL, phase_number INTEGER NOT NULL,
    issue_number INTEGER, status TEXT NOT NULL DEFAULT 'queued', depends_on_phase INTEGER,
    phase_data TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP, updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    error_message TEXT, adw_id TEXT, pr_number INTEGER, priority INTEGER DEFAULT 50,
    queue_position INTEGER, ready_timestamp TEXT, started_timestamp TEXT
)"""
PHASE_QUEUE_NEW = """
CREATE TABLE phase_queue (
    queue_id TEXT PRIMARY KEY, feature_id INTEGER NOT NULL, phase_number INTEGER NOT NULL,
    issue_number INTEGER, status TEXT NOT NULL DEFAULT 'queued', depends_on_phases TEXT DEFAULT '[]',
    phase_data TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP, updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
    error_message TEXT, adw_id TEXT, pr_number INTEGER, priority INTEGER DEFAULT 50,
    queue_position INTEGER, ready_timestamp TEXT, started_timestamp TEXT
)"""
QUEUE_CONFIG = "CREATE TABLE queue_config (config_key TEXT PRIMARY KEY, config_value TEXT, updated_at TEXT)"
WORKFLOW_HISTORY = """
CREATE TABLE workflow_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, adw_id TEXT NOT NULL UNIQUE, issue_number INTEGER, nl_input TEXT,
    github_url TEXT, workflow_template TEXT, model_used TEXT, status TEXT NOT NULL, start_time TEXT,
    end_time TEXT, duration_seconds INTEGER, error_message TEXT, phase_count INTEGER, current_phase TEXT,
    retry_count INTEGER DEFAULT 0, input_tokens INTEGER DEFAULT 0, output_tokens INTEGER DEFAULT 0,
    cached_tokens INTEGER DEFAULT 0, total_tokens INTEGER DEFAULT 0, cache_efficiency_percent REAL DEFAULT 0,
    estimated_cost_total REAL DEFAULT 0, actual_cost_total REAL DEFAULT 0, cost_breakdown TEXT,
    token_breakdown TEXT, structured_input TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
    updated_at TEXT DEFAULT CURRENT_TIMESTAMP
)"""


class AgentsDb:
    """Create and change the agents' tables through a separate connection, committing each change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def execute(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> None:
        with sqlite3.connect(self.path) as conn:  # commits on leaving the block
            conn.execute(sql, params)
        conn.close()

    def create(self, *, variant: str = "old", queue: bool = True, history: bool = True) -> AgentsDb:
        if queue:
            self.execute(PHASE_QUEUE_OLD if variant == "old" else PHASE_QUEUE_NEW)
            self.execute(QUEUE_CONFIG)
        if history:
            self.execute(WORKFLOW_HISTORY)
        return self

    def add_phase(self, queue_id: str, phase_number: int, *, title: str | None = None, **columns: Any) -> None:
        row: dict[str, Any] = {"queue_id": queue_id, "phase_number": phase_number, **columns}
        if title is not None:
            row["phase_data"] = json.dumps({"title": title, "content": f"Do {title}", "total_phases": 3})
        names = ", ".join(row)
        self.execute(f"INSERT INTO phase_queue ({names}) VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    def set_phase(self, queue_id: str, **columns: Any) -> None:
        sets = ", ".join(f"{name} = ?" for name in columns)
        self.execute(f"UPDATE phase_queue SET {sets} WHERE queue_id = ?", (*columns.values(), queue_id))

    def set_paused(self, paused: bool) -> None:
        self.execute(
            "INSERT OR REPLACE INTO queue_config (config_key, config_value) VALUES ('queue_paused', ?)",
            ("true" if paused else "false",),
        )

    def add_history(self, adw_id: str, status: str, **columns: Any) -> None:
        row: dict[str, Any] = {"adw_id": adw_id, "status": status, **columns}
        for key in ("cost_breakdown", "token_breakdown", "structured_input"):
            if isinstance(row.get(key), dict):
                row[key] = json.dumps(row[key])
        names = ", ".join(row)
        self.execute(
            f"INSERT INTO workflow_history ({names}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
        )
