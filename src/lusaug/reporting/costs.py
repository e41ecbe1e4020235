"""Section "Costs": wall time and peak memory per stage, from the ``$LUSAUG_STAGE_COSTS`` log
(one JSON line per pipeline process, written by ``lusaug.core.utils.record_stage_costs``)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from lusaug.core.markdown import Doc, plural
from lusaug.reporting.header import DATE_FORMAT
from lusaug.reporting.outputs import ReportError

TITLE = "Costs: runtime and peak memory per stage"
SECONDS_PER_MINUTE, SECONDS_PER_HOUR = 60, 3600
ITEM_FLAGS = ("--strategy", "--arch", "--seed")  # older per-run train processes


def duration(seconds: float) -> str:
    """Seconds as ``42.0 s``, ``3 min 05 s`` or ``1 h 07 min``."""
    if seconds < SECONDS_PER_MINUTE:
        return f"{seconds:.1f} s"
    h, rem = divmod(round(seconds), SECONDS_PER_HOUR)
    m, s = divmod(rem, SECONDS_PER_MINUTE)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


@dataclass(frozen=True)
class StageCost:
    """Aggregate of one pipeline script's records in the stage-cost log."""

    script: str
    count: int
    total_wall_s: float
    max_wall_s: float
    max_peak_rss_mb: float
    slowest: str  # the slowest item's label (matrix stages), "" for single-item stages


@dataclass(frozen=True)
class CostSummary:
    stages: list[StageCost]  # in order of first start
    first_start: float
    last_end: float
    bad_lines: int

    @property
    def wall_clock_s(self) -> float:
        return self.last_end - self.first_start


def item_label(argv: list[str]) -> str:
    """What a matrix item's argv names: its generator (a leading bare word) and its fold, or
    the strategy-arch-seed of an older per-run process."""
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    if "--strategy" in flags:
        return "-".join(flags[k] for k in ITEM_FLAGS if k in flags)
    parts = [argv[0]] if argv and "/" not in argv[0] and not argv[0].startswith("-") else []
    if "--fold" in flags:
        parts.append(f"fold {flags['--fold']}")
    return " ".join(parts)


def read_stage_costs(path: Path) -> CostSummary:
    """Aggregate a $LUSAUG_STAGE_COSTS JSONL file per script (see ``record_stage_costs``)."""
    records, bad = [], 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            records.append(
                (
                    str(rec["script"]),
                    list(rec.get("argv", [])),
                    float(rec["started"]),
                    float(rec["wall_s"]),
                    float(rec["peak_rss_mb"]),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1  # a process killed mid-write leaves at most one torn line
    if not records:
        raise ReportError(f"{path} holds no stage-cost records")
    by_script: dict[str, list[tuple]] = {}
    for rec in sorted(records, key=lambda r: r[2]):
        by_script.setdefault(rec[0], []).append(rec)
    stages = []
    for script, recs in by_script.items():
        slowest = max(recs, key=lambda r: r[3])
        stages.append(
            StageCost(
                script=script,
                count=len(recs),
                total_wall_s=sum(r[3] for r in recs),
                max_wall_s=slowest[3],
                max_peak_rss_mb=max(r[4] for r in recs),
                slowest=item_label(slowest[1]) if len(recs) > 1 else "",
            )
        )
    return CostSummary(
        stages=stages,
        first_start=min(r[2] for r in records),
        last_end=max(r[2] + r[3] for r in records),
        bad_lines=bad,
    )


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(DATE_FORMAT)


def costs_section(doc: Doc, costs_log: Path | None) -> None:
    doc.h(2, TITLE)
    if costs_log is None or not costs_log.is_file():
        where = f" ({costs_log} does not exist)" if costs_log else ""
        doc.p(
            f"Not available: no stage-cost log{where}. Run `dvc repro` with "
            "`LUSAUG_STAGE_COSTS=logs/stage_costs.jsonl` set to record one line per stage."
        )
        return
    c = read_stage_costs(costs_log)
    total = sum(s.total_wall_s for s in c.stages)
    doc.p(
        f"From `{costs_log.name}`: one record per pipeline process (matrix stages: one per "
        "item), wall time from process start (imports included) and peak resident memory (the "
        "process or its largest child). The whole run took "
        f"{duration(c.wall_clock_s)} of wall clock ({_when(c.first_start)} to "
        f"{_when(c.last_end)}, including DVC's own work between stages and any pause between "
        f"resumed runs); the stages themselves add up to {duration(total)}."
    )
    rows = [
        [
            s.script,
            s.count,
            duration(s.total_wall_s),
            duration(s.max_wall_s) + (f" ({s.slowest})" if s.slowest else ""),
            f"{s.max_peak_rss_mb:,.0f}",
        ]
        for s in c.stages
    ]
    rows.append(
        [
            "**all**",
            sum(s.count for s in c.stages),
            duration(total),
            "",
            f"{max(s.max_peak_rss_mb for s in c.stages):,.0f}",
        ]
    )
    doc.table(["Script", "Processes", "Total wall", "Longest (item)", "Peak RSS (MB)"], rows)
    if c.bad_lines:
        doc.p(f"{plural(c.bad_lines, 'unreadable line')} skipped.")
