"""Replicate records: one JSON line per pipeline replicate, appended, resumable.

A line (schema :data:`SCHEMA`)::

    {"schema": 1, "key": "viral4-r003", "replicate": 3, "n_rare_patients": 4,
     "settings": {"phantom.seed": ..., "base.seed": ..., "phantom.patients.viral": 4},
     "status": "ok" | "failed", "error": null, "seconds": 412.0, "alpha": 0.05,
     "comparisons": [{"name": "synthetic-oracle-resnet", "role": "oracle",
                      "strategy": "synthetic-oracle", "control": "oversample_matched-oracle",
                      "architecture": "resnet", "endpoint": "recall",
                      "decision": "helps", "estimate": 0.12, "lo": 0.01, "hi": 0.25,
                      "p_exact": 0.0625, "p_holm": 0.25, "mdd": 0.3, "n_patients": 4,
                      "true_effect": 0.1}, ...]}

``role`` says what the comparison calibrates: ``oracle`` (power, coverage), ``null`` and
``placebo`` (type-I rate), ``other`` (reported, not summarised). A failed replicate is written
with its error and counted as failed, never as "no effect". A line cut by an interruption (not
valid JSON) is ignored on reading, so its replicate runs again.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SCHEMA = 1
ROLES = ("oracle", "null", "placebo", "other")
HELPS = "helps"  # the decision string that counts as a positive verdict


def replicate_key(n_rare_patients: int, replicate: int) -> str:
    """The unique key of one replicate: resuming skips keys already in the results file."""
    return f"rare{n_rare_patients}-r{replicate:03d}"


def read_lines(path: Path | str) -> list[dict[str, Any]]:
    """Every complete record of a JSON-lines file (none when it does not exist)."""
    path = Path(path)
    if not path.exists():
        return []
    records = []
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:  # cut by an interruption: that replicate runs again
            logger.warning("%s:%d: ignoring an incomplete line", path, i + 1)
    return records


def append_line(path: Path | str, record: Mapping[str, Any]) -> None:
    """Append one record as one line and flush it to disk (an interruption loses at most it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, sort_keys=True, allow_nan=True)
    cut = path.exists() and path.stat().st_size and not path.read_bytes().endswith(b"\n")
    with path.open("a") as fh:
        fh.write(("\n" if cut else "") + text + "\n")  # a cut last line stays on its own
        fh.flush()
        os.fsync(fh.fileno())


def done_keys(records: Iterable[Mapping[str, Any]], retry_failed: bool = False) -> set[str]:
    """Keys of finished replicates (failed ones too, unless ``retry_failed``)."""
    return {
        r["key"] for r in records if "key" in r and (r.get("status") == "ok" or not retry_failed)
    }


def latest(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The last record of every key (a replicate re-run with --retry-failed supersedes its
    failed line), in the order keys first appeared."""
    last: dict[Any, Mapping[str, Any]] = {}
    for i, rec in enumerate(records):
        last[rec.get("key", i)] = rec
    return list(last.values())


def ok_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The replicates that finished, latest record per key (the statistics use only these;
    failures are reported)."""
    return [r for r in latest(records) if r.get("status") == "ok"]


def _endpoint_entry(comp: Mapping[str, Any], endpoint: str) -> Mapping[str, Any]:
    entry = (comp.get("rare") or {}).get(endpoint)
    if not isinstance(entry, Mapping):
        raise KeyError(f"comparison {comp.get('strategy')!r} has no rare endpoint {endpoint!r}")
    return entry


def _verdict(decision: Any) -> Any:
    """evaluate's decision record -> its verdict string (a bare string passes through)."""
    return decision.get("verdict") if isinstance(decision, Mapping) else decision


def comparisons_from_report(
    report: Mapping[str, Any],
    roles: Mapping[str, str],
    endpoint: str,
    n_patients: int,
    true_effects: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """The comparison entries of one replicate from its ``metrics/comparison.json``.

    Args:
        report: the parsed comparison.json: ``comparisons`` by name, each with ``strategy``,
            ``control``, ``architecture``, ``rare.<endpoint>`` (estimate, interval, exact test),
            ``p_holm`` and ``decision``; ``placebos`` by architecture; ``mdd``.
        roles: ``"<strategy> vs <control>"`` or ``"<strategy>"`` -> role (:data:`ROLES`); the
            first form wins; comparisons named by neither are ``other``.
        endpoint: the rare-class endpoint (``recall``, ``auroc`` or ``ap``).
        n_patients: the replicate's rare-class patients.
        true_effects: comparison name -> true effect (oracle settings), when known.
    """
    mdd = report.get("mdd") or {}
    mdd_value = mdd.get("value") if mdd.get("endpoint") == endpoint else None
    entries: dict[str, tuple[Mapping[str, Any], str | None, Any]] = {}
    for name, comp in (report.get("comparisons") or {}).items():
        strategy, control = str(comp.get("strategy", name)), comp.get("control")
        role = roles.get(f"{strategy} vs {control}", roles.get(strategy, "other"))
        if role not in ROLES:
            raise ValueError(f"role {role!r} of {strategy!r} is not one of {ROLES}")
        entries[name] = (comp, role, (comp.get("p_holm") or {}).get(endpoint))
    for arch, placebo in (report.get("placebos") or {}).items():
        if "comparison" in placebo:  # a placebo that could not run has only `not_run`
            comp = {**placebo["comparison"], "decision": placebo.get("verdict")}
            entries[f"placebo ({arch})"] = (comp, "placebo", None)
    out = []
    for name, (comp, role, p_holm) in sorted(entries.items()):
        ep = _endpoint_entry(comp, endpoint)
        interval, test = ep.get("interval") or {}, ep.get("test") or {}
        out.append(
            {
                "name": name,
                "role": role,
                "strategy": comp.get("strategy"),
                "control": comp.get("control"),
                "architecture": comp.get("architecture"),
                "endpoint": endpoint,
                "decision": _verdict(comp.get("decision")),
                "estimate": ep.get("estimate"),
                "lo": interval.get("lo"),
                "hi": interval.get("hi"),
                "p_exact": test.get("p_value"),
                "p_holm": p_holm,
                "mdd": mdd_value,
                "n_patients": n_patients,
                "true_effect": (true_effects or {}).get(name),
            }
        )
    return out


def with_true_effects(
    records: Iterable[Mapping[str, Any]],
    effects: Mapping[int, float],
    role: str = "oracle",
) -> list[dict[str, Any]]:
    """Copies of ``records`` whose ``role`` comparisons carry the true effect of their number
    of rare-class patients (``effects``: n_rare_patients -> effect; absent n: left as is)."""
    out = []
    for rec in records:
        n = int(rec.get("n_rare_patients", -1))
        comps = [
            {**c, "true_effect": effects[n]} if c.get("role") == role and n in effects else c
            for c in rec.get("comparisons", [])
        ]
        out.append({**rec, "comparisons": comps})
    return out
