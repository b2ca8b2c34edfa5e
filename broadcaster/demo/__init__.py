"""``adw-broadcaster --demo``: simulated agents in a temporary workspace, and the service on them.

The simulated agents behave like the real ADW tooling: they write ``adw_state.json`` (in place
and by temp-file-and-rename), create phase directories with logs, a worktree per run, phase
queue rows and, when a run ends, a workflow_history row, all through their own SQLite
connection. A small fake backend on 127.0.0.1 plays the webhook service, an OpenAPI document
that grows as runs ship features, and a health endpoint that sometimes fails, so every one of
the eight channels moves. Ctrl-C stops everything and removes the workspace.
"""

from .run import demo_config, run_demo

__all__ = ["demo_config", "run_demo"]
