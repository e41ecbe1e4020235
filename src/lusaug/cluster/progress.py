"""What a user watches: every item's state (queued, running on which worker, done, failed).

On a terminal a live table (rich) redraws in place; elsewhere (CI, a log file) each change is one
line, so a log of the run tells the same story.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

STATES = ("queued", "running", "done", "failed", "cancelled")


@dataclass
class Row:
    state: str = "queued"
    worker: str = ""
    detail: str = ""
    since: float = field(default_factory=time.monotonic)


class Progress:
    """The table of items; :meth:`update` is called from Dask's event thread and the main loop."""

    def __init__(self, items: list[str], out: TextIO | None = None, live: bool | None = None):
        self.rows = {name: Row() for name in items}
        self.out = out or sys.stdout
        self.lock = threading.Lock()
        self.live_display: Any = None
        use_live = self.out.isatty() if live is None else live
        if use_live:
            from rich.console import Console
            from rich.live import Live

            self.live_display = Live(
                self._table(), console=Console(file=self.out), refresh_per_second=2
            )
            self.live_display.start()

    def say(self, text: str) -> None:
        if self.live_display is not None:
            self.live_display.console.print(text)
        else:
            print(text, file=self.out, flush=True)

    def update(self, item: str, state: str, worker: str = "", detail: str = "") -> None:
        with self.lock:
            row = self.rows.setdefault(item, Row())
            changed = (row.state, row.worker) != (state, worker or row.worker)
            row.state, row.detail, row.since = state, detail, time.monotonic()
            if worker:
                row.worker = worker
            if self.live_display is not None:
                self.live_display.update(self._table())
            elif changed or detail:
                where = f" on {worker}" if state == "running" and worker else ""
                extra = f" ({detail})" if detail else ""
                print(
                    f"{self._counts()}  {item}: {state}{where}{extra}", file=self.out, flush=True
                )

    def _counts(self) -> str:
        counts = {s: 0 for s in STATES}
        for row in self.rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return f"[{counts['done']}/{len(self.rows)} done, {counts['running']} running]"

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(title=f"lusaug cluster repro {self._counts()}")
        for col in ("item", "state", "worker", "detail"):
            table.add_column(col)
        style = {"done": "green", "failed": "red", "running": "cyan", "cancelled": "yellow"}
        for name, row in self.rows.items():
            state = f"[{style.get(row.state, '')}]{row.state}" if row.state in style else row.state
            table.add_row(name, state, row.worker, row.detail)
        return table

    def close(self) -> None:
        if self.live_display is not None:
            self.live_display.stop()
