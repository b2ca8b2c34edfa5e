"""What redaction by look costs where values enter: ``Cleaner.clean`` on real-shaped data.

Every state file read and every database row passes through ``Cleaner.clean`` once (never per
client). Issue 21 made it search every text for credential-looking values. This times, in one
process and interleaved so the machine's noise hits both alike:

- ``names only``: the same cleaner with no value patterns (what clean cost before, by name only);
- ``names + looks``: the default rule (key names and the default patterns);

on a state file like the agents write (30 fields, one long ``nl_input``), a 1,000-row
``workflow_history`` read, and a state holding a credential in a text (the slow path: a match).

    .venv/bin/python bench/redaction.py
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sources.values import DEFAULT_SECRET_KEYS, Cleaner

ROUNDS = 15


def state(n: int) -> dict[str, Any]:
    return {
        "adw_id": f"a{n:07d}",
        "issue_number": str(n),
        "issue_class": "/feature",
        "branch_name": f"feat-issue-{n}-adw-a{n:07d}-add-the-thing",
        "plan_file": f"specs/issue-{n}-adw-a{n:07d}-sdlc_planner-add-the-thing.md",
        "worktree_path": f"/home/dev/tac-webbuilder/trees/a{n:07d}",
        "backend_port": 9100 + n % 15,
        "frontend_port": 9200 + n % 15,
        "model_set": "base",
        "all_adws": ["adw_plan_iso", "adw_build_iso", "adw_test_iso", "adw_review_iso"],
        "status": "running",
        "current_phase": "build",
        "start_time": "2026-12-07T06:00:00",
        "nl_input": "Add a dashboard panel that lists every queued phase with its dependencies, "
        "its estimated cost and a link to the GitHub issue; keep it in step with the queue. " * 4,
        "github_url": f"https://github.com/acme/tac-webbuilder/issues/{n}",
        "current_cost": 1.25,
        "estimated_cost_total": 3.5,
        "error_count": 0,
        "last_error": None,
        "total_tokens": 123_456,
        "token_breakdown": {"input_tokens": 100_000, "output_tokens": 23_456, "cached_tokens": 50_000},
        "workflow_template": "adw_sdlc_iso",
        "pr_number": None,
        "phases": {p: {"status": "done", "started": "2026-12-07T06:00:00"} for p in ("plan", "build")},
    }


def history(rows: int) -> list[dict[str, Any]]:
    return [
        {
            "id": n,
            "adw_id": f"a{n:07d}",
            "issue_number": n,
            "nl_input": "Fix the flaky test in the queue panel and add a retry to the poller",
            "status": "completed",
            "start_time": "2026-12-06T10:00:00",
            "end_time": "2026-12-06T10:20:00",
            "error_message": None,
            "input_tokens": 10_000,
            "output_tokens": 2_000,
            "actual_cost_total": 0.5,
            "cost_breakdown": {"plan": 0.1, "build": 0.3, "test": 0.1},
            "structured_input": {"issue": n, "labels": ["bug", "queue"]},
            "created_at": "2026-12-06T10:00:00",
        }
        for n in range(rows)
    ]


def per_call(clean: Callable[[Any], Any], data: Any, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        clean(data)
    return (time.perf_counter() - start) / calls


def main() -> None:
    names_only = Cleaner(DEFAULT_SECRET_KEYS, patterns=())
    default = Cleaner()
    leaky = state(7)
    leaky["last_error"] = "push refused for https://bob:hunter2@github.com/acme/x.git with ghp_" + "A1b2C3d4E5" * 4
    cases = [
        ("a state file", state(1), 2000),
        ("1,000 history rows", history(1000), 5),
        ("a state with a secret", leaky, 2000),
    ]
    print(f"{'data':<24}{'names only':>14}{'names + looks':>16}{'ratio':>8}")
    for name, data, calls in cases:
        before, after = [], []
        for _ in range(ROUNDS):  # interleaved: noise lands on both
            before.append(per_call(names_only.clean, data, calls))
            after.append(per_call(default.clean, data, calls))
        b, a = statistics.median(before), statistics.median(after)
        print(f"{name:<24}{b * 1e6:>11.1f} us{a * 1e6:>13.1f} us{a / b:>7.2f}x")


if __name__ == "__main__":
    main()
