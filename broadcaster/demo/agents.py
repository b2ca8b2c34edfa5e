"""Simulated ADW runs writing state files, phase dirs, worktrees, queue and history rows as the real tooling does."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sources.adw_read import PHASES
from sources.tasks import cancel_all_and_wait

from .backend import Backend

logger = logging.getLogger(__name__)

SCHEMA = (
    """CREATE TABLE phase_queue (
        queue_id TEXT PRIMARY KEY, feature_id INTEGER NOT NULL, phase_number INTEGER NOT NULL,
        issue_number INTEGER, status TEXT NOT NULL DEFAULT 'queued', depends_on_phases TEXT DEFAULT '[]',
        phase_data TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP, updated_at TEXT DEFAULT CURRENT_TIMESTAMP,
        error_message TEXT, adw_id TEXT, pr_number INTEGER, priority INTEGER DEFAULT 50,
        queue_position INTEGER, ready_timestamp TEXT, started_timestamp TEXT)""",
    "CREATE TABLE queue_config (config_key TEXT PRIMARY KEY, config_value TEXT, updated_at TEXT)",
    """CREATE TABLE workflow_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT, adw_id TEXT NOT NULL UNIQUE, issue_number INTEGER,
        nl_input TEXT, github_url TEXT, workflow_template TEXT, model_used TEXT, status TEXT NOT NULL,
        start_time TEXT, end_time TEXT, duration_seconds INTEGER, error_message TEXT, phase_count INTEGER,
        current_phase TEXT, retry_count INTEGER DEFAULT 0, input_tokens INTEGER DEFAULT 0,
        output_tokens INTEGER DEFAULT 0, cached_tokens INTEGER DEFAULT 0, total_tokens INTEGER DEFAULT 0,
        cache_efficiency_percent REAL DEFAULT 0, estimated_cost_total REAL DEFAULT 0,
        actual_cost_total REAL DEFAULT 0, cost_breakdown TEXT, token_breakdown TEXT, structured_input TEXT,
        created_at TEXT DEFAULT CURRENT_TIMESTAMP, updated_at TEXT DEFAULT CURRENT_TIMESTAMP)""",
)
REPO = "acme/webshop"
TASKS = (
    ("/feature", "Add dark mode toggle to the settings page"),
    ("/bug", "Fix cart total rounding for discounted items"),
    ("/feature", "Export order history as CSV"),
    ("/chore", "Upgrade the test runner and fix deprecations"),
    ("/feature", "Show shipping estimates on the product page"),
    ("/bug", "Login redirect loses the return URL"),
    ("/patch", "Tighten rate limits on the search endpoint"),
    ("/feature", "Wishlist sharing by link"),
)
MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")
FEATURE_PHASES = ("Data model", "API endpoints", "UI")


class Agents:
    """Simulated ADW runs writing files and rows the way the real tooling does."""

    def __init__(self, root: Path, backend: Backend, *, speed: float, rng: random.Random) -> None:
        self.agents = root / "agents"
        self.trees = root / "trees"
        self.db = root / "db" / "database.db"
        self.backend = backend
        self.speed = speed
        self.rng = rng
        self._issue = 100
        self._feature = 40

    def create(self) -> None:
        """Lay out the workspace: dirs, schema, and some finished runs so history is not empty."""
        for path in (self.agents, self.trees, self.db.parent):
            path.mkdir(parents=True, exist_ok=True)
        (self.agents / "port_allocations.json").write_text("{}")  # real agents/ has plain files too
        with sqlite3.connect(self.db) as conn:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO queue_config VALUES ('queue_paused', 'false', CURRENT_TIMESTAMP)")
            now = datetime.now(UTC)
            for n in range(12):
                self._history_row(
                    conn,
                    f"past{n:04x}",
                    60 + n,
                    self.rng.choice(TASKS)[1],
                    "failed" if n % 5 == 4 else "completed",
                    now - timedelta(days=n, hours=n),
                )
        conn.close()

    async def run(self) -> None:
        """Keep about three runs going, one new feature's phases at a time. Runs until cancelled."""
        runs: set[asyncio.Task[None]] = set()
        try:
            while True:
                runs = {t for t in runs if not t.done()}
                if len(runs) < 3:
                    runs.add(asyncio.create_task(self._feature_run(), name="demo run"))
                await self._pause(2, 4)
                if self.rng.random() < 0.15:
                    await self._sql(
                        "UPDATE queue_config SET config_value = ? WHERE config_key = 'queue_paused'",
                        (self.rng.choice(("true", "false")),),
                    )
        finally:
            await cancel_all_and_wait(runs)  # no run may write into the workspace once it is removed

    async def _feature_run(self) -> None:
        self._feature += 1
        feature = self._feature
        for number, title in enumerate(FEATURE_PHASES, 1):
            await self._sql(
                "INSERT INTO phase_queue (queue_id, feature_id, phase_number, status, depends_on_phases, "
                "phase_data, priority) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    f"f{feature}-p{number}",
                    feature,
                    number,
                    "ready" if number == 1 else "queued",
                    json.dumps([number - 1] if number > 1 else []),
                    json.dumps({"title": title, "content": f"{title} for feature {feature}", "total_phases": 3}),
                    self.rng.choice((30, 50, 70)),
                ),
            )
        for number in range(1, len(FEATURE_PHASES) + 1):
            ok = await self._adw_run(feature, number)
            if not ok:
                await self._sql(
                    "UPDATE phase_queue SET status = 'blocked', updated_at = CURRENT_TIMESTAMP "
                    "WHERE feature_id = ? AND phase_number > ?",
                    (feature, number),
                )
                return

    async def _adw_run(self, feature: int, number: int) -> bool:
        """One ADW run through the six phases; return whether it succeeded."""
        self._issue += 1
        issue, adw_id = self._issue, f"{self.rng.getrandbits(32):08x}"
        issue_class, task = self.rng.choice(TASKS)
        queue_id = f"f{feature}-p{number}"
        started = datetime.now()
        state = self._new_state(adw_id, issue, issue_class, task, started)
        self.backend.received += 1
        self.backend.last_successful = datetime.now(UTC).isoformat(timespec="seconds")
        await self._sql(
            "UPDATE phase_queue SET status = 'running', adw_id = ?, issue_number = ?, "
            "started_timestamp = CURRENT_TIMESTAMP, updated_at = CURRENT_TIMESTAMP WHERE queue_id = ?",
            (adw_id, issue, queue_id),
        )
        (self.trees / adw_id).mkdir()
        self._write_state(adw_id, state, atomic=True)
        fails_at = self.rng.choice(PHASES[2:]) if self.rng.random() < 0.2 else None
        try:
            await self._phases(adw_id, issue, task, state, fails_at)
            ok, error = True, None
        except RuntimeError as exc:
            ok, error = False, str(exc)
            (self.agents / adw_id / "error.log").write_text(f"Traceback (most recent call last):\n  ...\n{error}\n")
            self.backend.failed += 1
            self.backend.recent_failures.append(
                {"adw_id": adw_id, "error": error, "at": datetime.now(UTC).isoformat(timespec="seconds")}
            )
        state.update(status="completed" if ok else "failed", end_time=datetime.now().isoformat(timespec="seconds"))
        if error:
            state.update(last_error=error, error_count=1)
        self._write_state(adw_id, state, atomic=True)
        shutil.rmtree(self.trees / adw_id, ignore_errors=True)
        await self._sql(
            "UPDATE phase_queue SET status = ?, error_message = ?, updated_at = CURRENT_TIMESTAMP WHERE queue_id = ?",
            ("completed" if ok else "failed", error, queue_id),
        )
        if ok:
            await self._sql(
                "UPDATE phase_queue SET status = 'ready', ready_timestamp = CURRENT_TIMESTAMP "
                "WHERE feature_id = ? AND phase_number = ?",
                (feature, number + 1),
            )
        await asyncio.to_thread(self._finish, adw_id, issue, task, ok, state)
        if self.rng.random() < 0.3:  # the frontend restarts now and then
            self.backend.frontend_up = False
            await self._pause(3, 5)
            self.backend.frontend_up = True
        return ok

    def _new_state(self, adw_id: str, issue: int, issue_class: str, task: str, started: datetime) -> dict[str, Any]:
        """Return a run's first state, as the real agents write it."""
        return {
            "adw_id": adw_id,
            "issue_number": str(issue),
            "branch_name": f"{issue_class[1:]}-{issue}-{adw_id}",
            "plan_file": f"specs/issue-{issue}-adw-{adw_id}.md",
            "issue_class": issue_class,
            "worktree_path": str(self.trees / adw_id),
            "backend_port": 9100 + issue % 100,
            "frontend_port": 9200 + issue % 100,
            "model_set": self.rng.choice(("base", "heavy")),
            "all_adws": ["adw_plan_iso"],
            "estimated_cost_total": round(self.rng.uniform(1.5, 6), 2),
            "workflow_template": "adw_sdlc_iso",
            "model_used": self.rng.choice(MODELS),
            "start_time": started.isoformat(timespec="seconds"),
            "nl_input": task,
            "github_url": f"https://github.com/{REPO}/issues/{issue}",
            "status": "running",
            "current_phase": "plan",
            "current_cost": 0.0,
        }

    async def _phases(self, adw_id: str, issue: int, task: str, state: dict[str, Any], fails_at: str | None) -> None:
        """Go through the phases, writing the state and the phase logs; raise RuntimeError where the run fails."""
        for phase in PHASES:
            phase_dir = self.agents / adw_id / f"adw_{phase}_iso"
            phase_dir.mkdir()
            with (phase_dir / "execution.log").open("a") as log:
                log.write(f"{datetime.now().isoformat()} starting {phase}\n")
            state["current_phase"] = phase
            state["all_adws"] = [f"adw_{p}_iso" for p in PHASES[: PHASES.index(phase) + 1]]
            self._write_state(adw_id, state, atomic=self.rng.random() < 0.5)
            for _ in range(self.rng.randint(1, 3)):
                await self._pause(1, 2.5)
                state["current_cost"] = round(state["current_cost"] + self.rng.uniform(0.05, 0.4), 3)
                self._write_state(adw_id, state, atomic=False)
                with (phase_dir / "execution.log").open("a") as log:
                    log.write(f"{datetime.now().isoformat()} {phase}: step done\n")
            if phase == fails_at:
                raise RuntimeError(f"{phase} failed: 3 tests failing in test_{phase}.py")
            if phase == "ship":
                slug = task.split()[1].lower()
                self.backend.paths[f"/api/v1/{slug}/{issue}"] = {
                    "post": {"operationId": f"{slug}_{issue}", "summary": task, "tags": [slug]}
                }

    def _finish(self, adw_id: str, issue: int, task: str, ok: bool, state: dict[str, Any]) -> None:
        with sqlite3.connect(self.db) as conn:
            self._history_row(
                conn,
                adw_id,
                issue,
                task,
                "completed" if ok else "failed",
                datetime.now(UTC),
                error=state.get("last_error"),
                cost=state["current_cost"],
            )
        conn.close()

    def _history_row(
        self,
        conn: sqlite3.Connection,
        adw_id: str,
        issue: int,
        task: str,
        status: str,
        when: datetime,
        *,
        error: str | None = None,
        cost: float | None = None,
    ) -> None:
        tokens_in, tokens_out = self.rng.randint(40_000, 400_000), self.rng.randint(5_000, 60_000)
        cached = self.rng.randint(0, tokens_in)
        cost = cost if cost is not None else round(self.rng.uniform(0.8, 5.0), 3)
        duration = self.rng.randint(300, 2400)
        conn.execute(
            "INSERT INTO workflow_history (adw_id, issue_number, nl_input, github_url, workflow_template, "
            "model_used, status, start_time, end_time, duration_seconds, error_message, phase_count, current_phase, "
            "input_tokens, output_tokens, cached_tokens, total_tokens, cache_efficiency_percent, "
            "estimated_cost_total, actual_cost_total, cost_breakdown, token_breakdown, structured_input, created_at) "
            "VALUES (?, ?, ?, ?, 'adw_sdlc_iso', ?, ?, ?, ?, ?, ?, 6, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                adw_id,
                issue,
                task,
                f"https://github.com/{REPO}/issues/{issue}",
                self.rng.choice(MODELS),
                status,
                (when - timedelta(seconds=duration)).isoformat(timespec="seconds"),
                when.isoformat(timespec="seconds"),
                duration,
                error,
                "ship" if status == "completed" else "test",
                tokens_in,
                tokens_out,
                cached,
                tokens_in + tokens_out,
                round(cached / tokens_in * 100, 1),
                round(cost * 1.1, 3),
                cost,
                json.dumps({"estimated_total": round(cost * 1.1, 3), "actual_total": cost}),
                json.dumps({"input_tokens": tokens_in, "output_tokens": tokens_out, "cached_tokens": cached}),
                json.dumps({"nl_input": task}),
                when.strftime("%Y-%m-%d %H:%M:%S"),
            ),
        )

    def _write_state(self, adw_id: str, state: dict[str, Any], *, atomic: bool) -> None:
        path = self.agents / adw_id / "adw_state.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(state, indent=2)
        if atomic:
            tmp = path.with_name(f".adw_state.{os.getpid()}.tmp")
            tmp.write_text(body)
            os.replace(tmp, path)
        else:
            path.write_text(body)

    async def _sql(self, sql: str, params: tuple[Any, ...]) -> None:
        def run() -> None:
            with sqlite3.connect(self.db) as conn:
                conn.execute(sql, params)
            conn.close()

        await asyncio.to_thread(run)

    async def _pause(self, low: float, high: float) -> None:
        await asyncio.sleep(self.rng.uniform(low, high) / self.speed)
