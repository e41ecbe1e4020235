"""The MLflow Model Registry side: register the validation winner, promote with gates, roll back.

MLflow 3 deprecated registry *stages*; lusaug uses **aliases** named after them:
``candidate`` (set by the ``register`` stage) -> ``staging`` -> ``production``.

- :func:`register_winner` picks the best run by a VALIDATION metric (``register.metric``),
  exports it to ONNX, logs it as a models-from-code pyfunc (so ``mlflow models serve`` and
  ``lusaug serve`` both serve it), and registers a version of ``register.model_name`` with alias
  ``candidate``, tags (strategy, architecture, metrics with intervals, git commit, data hash) and
  a model card as its description. The ``export`` stage then records ONNX parity on the version.
- :func:`promote` moves an alias to a version after gates (ONNX parity passed; not worse than the
  current holder on ``register.gate_metric`` beyond the holder's interval), or with ``force`` and
  a reason. All audit tags are written first, then the alias moves; any failure undoes every
  change, so a promotion happens completely or not at all.
- :func:`rollback` gives an alias back to its previous holder (kept in a registered-model tag).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lusaug.config import ExportParams, RegisterParams
from lusaug.errors import LusaugError
from lusaug.serving.session import sha256_file

logger = logging.getLogger(__name__)

PARITY_TAG = "onnx_parity"  # pending | passed | failed (written by the export stage)
HISTORY_TAG = "alias_history.{alias}"  # registered-model tag: JSON list of versions, oldest first
HISTORY_KEEP = 50
ONNX_FILE = "classifier.onnx"


class RegistryError(LusaugError, RuntimeError):
    """A registry operation that cannot proceed (bad version, nothing to roll back, ...)."""


class PromotionRefused(RegistryError):
    """A gate failed; the message lists every failed gate."""


# --------------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class RunSummary:
    """One training run as ``metrics/validation_runs.json`` describes it."""

    name: str
    entry: dict[str, Any]

    def value(self, metric: str) -> float:
        if metric not in self.entry or self.entry[metric] is None:
            raise RegistryError(
                f"run {self.name} has no validation metric {metric!r} "
                f"(register.metric); available: "
                f"{sorted(k for k in self.entry if k.startswith('val_'))}"
            )
        return float(self.entry[metric])

    def interval(self, metric: str) -> tuple[float | None, float | None]:
        lo, hi = self.entry.get(f"{metric}_lo"), self.entry.get(f"{metric}_hi")
        return (None if lo is None else float(lo), None if hi is None else float(hi))


def read_validation_runs(path: Path | str) -> list[RunSummary]:
    path = Path(path)
    if not path.exists():
        raise RegistryError(f"{path} not found: run `dvc repro evaluate` first")
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not data:
        raise RegistryError(f"{path} lists no runs")
    return [RunSummary(name, entry) for name, entry in sorted(data.items())]


def select_winner(runs: Sequence[RunSummary], metric: str) -> RunSummary:
    """Highest validation ``metric``; ties go to the first run name (sorted), so it is stable."""
    if not metric.startswith("val_"):
        raise RegistryError(f"register.metric must be a validation metric (val_*), got {metric!r}")
    return max(runs, key=lambda r: (r.value(metric), [-ord(c) for c in r.name]))


# ------------------------------------------------------------------------------ registration


def _fmt_metric(run: RunSummary, metric: str) -> str:
    lo, hi = run.interval(metric)
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    return f"{run.value(metric):.3f}{ci}"


def model_card(
    run: RunSummary,
    cfg: RegisterParams,
    split_counts: dict[str, dict[str, int]],
    classes: list[str],
    tags: dict[str, str],
) -> str:
    """A short Markdown model card: data, split, metrics, intended use, limitations."""
    metrics = [
        m
        for m in (
            cfg.metric,
            "val_accuracy",
            "val_balanced_accuracy",
            "val_recall_macro",
            *(f"val_recall_{c}" for c in classes),
        )
        if m in run.entry
    ]
    lines = [
        f"# {cfg.model_name}: {run.name}",
        "",
        (
            f"Lung-ultrasound frame classifier ({', '.join(classes)}), timm "
            f"`{run.entry.get('model') or run.entry.get('architecture')}` trained from scratch "
            f"with strategy `{run.entry.get('strategy')}` (seed {run.entry.get('seed')}), "
            "served as ONNX."
        ),
        "",
        "## Data",
        (
            f"- Frames from data/raw (DVC data hash `{tags.get('data_hash', 'unknown')}`), "
            f"code at git `{tags.get('git_commit', 'unknown')}`."
        ),
        (
            "- Split by patient (no patient, video or near-identical frame in two splits; checked "
            "by "
            "the validate stage). Frames per split and class:"
        ),
    ]
    for split, counts in split_counts.items():
        lines.append(f"  - {split}: " + ", ".join(f"{c} {counts.get(c, 0)}" for c in classes))
    lines += [
        "",
        "## Metrics (validation split, 95% patient-bootstrap intervals)",
        (
            f"Selected as the best of the evaluated runs by `{cfg.metric}`; the test split is "
            "reported by the evaluate stage (reports/comparison.md), never used for this choice."
        ),
    ]
    lines += [f"- {m}: {_fmt_metric(run, m)}" for m in metrics]
    lines += [
        "",
        "## Intended use",
        (
            "Research on whether synthetic rare-class images help a small, imbalanced ultrasound "
            "classifier; a demonstrator of the MLOps pipeline. Input: one grey ultrasound frame "
            "(or "
            "a clip, averaged over sampled frames)."
        ),
        "",
        "## Limitations",
        "- Not a medical device; not for diagnosis or triage.",
        (
            "- Trained on few patients (the rare class from a handful); intervals are wide and "
            "the "
            "model may not transfer to other scanners, probes, presets or populations."
        ),
        "- Frame-level model: no temporal context beyond averaging over a clip.",
    ]
    return "\n".join(lines)


def split_counts(splits_csv: Path | str | None) -> dict[str, dict[str, int]]:
    if splits_csv is None or not Path(splits_csv).exists():
        return {}
    from lusaug.data.manifest import read_manifest

    df = read_manifest(splits_csv)
    return {
        s: {str(k): int(v) for k, v in g["label"].value_counts().items()}
        for s, g in df.groupby("split", sort=False)
    }


def version_tags(
    run: RunSummary,
    cfg: RegisterParams,
    checkpoint_sha: str,
    onnx_sha: str,
    standard: dict[str, str],
) -> dict[str, str]:
    tags = {
        "run_name": run.name,
        "strategy": str(run.entry.get("strategy", "")),
        "architecture": str(run.entry.get("architecture", "")),
        "seed": str(run.entry.get("seed", "")),
        "timm_model": str(run.entry.get("model") or ""),
        "train_run_id": str(run.entry.get("mlflow_run_id") or ""),
        "checkpoint": str(run.entry.get("checkpoint", "")),
        "checkpoint_sha256": checkpoint_sha,
        "onnx_sha256": onnx_sha,
        "selection_metric": cfg.metric,
        PARITY_TAG: "pending",
        "git_commit": standard.get("git_commit", "unknown"),
        "data_hash": standard.get("data_hash", "unknown"),
    }
    for key, value in run.entry.items():  # every validation metric with its interval
        if (
            key.startswith("val_")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        ):
            tags[key] = f"{value:.6g}"
    return tags


def export_key(checkpoint_sha: str, export_cfg: ExportParams, geometry: dict[str, Any]) -> str:
    """Identity of a registered artifact: same weights, exporter settings and frame geometry."""
    spec = {"checkpoint": checkpoint_sha, "opset": export_cfg.opset, "dynamo": export_cfg.dynamo,
            "geometry": {k: str(v) for k, v in sorted(geometry.items())}}  # fmt: skip
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]


def _existing_version(client: Any, name: str, key: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{name}' and tags.export_key='{key}'")
    except MlflowException:
        return None
    return max(found, key=lambda mv: int(mv.version)) if found else None


def register_winner(
    validation_runs: Path | str,
    cfg: RegisterParams,
    export_cfg: ExportParams,
    *,
    root: Path | str = ".",
    splits_csv: Path | str | None = None,
    classes: list[str] | None = None,
    frame_geometry: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register the validation winner as a new ONNX-pyfunc version with alias ``cfg.alias``.

    Re-registering the same checkpoint with the same export settings and frame geometry
    (:func:`export_key`) reuses its version instead of creating a duplicate. ``frame_geometry``
    (``auto_crop_black``, ``black_threshold`` of the frames stage) goes into the ONNX metadata
    with size and normalisation, so serving trims borders as the training frames were trimmed.
    Returns what ``models/registered.json`` records. The MLflow tracking URI must be set
    (:func:`lusaug.mlflow_store.setup_experiment`).
    """
    import mlflow
    from mlflow import MlflowClient

    from lusaug.export.mlflow_model import log_onnx_pyfunc
    from lusaug.export.onnx_export import export_onnx
    from lusaug.mlflow_store import standard_tags
    from lusaug.models.classifier import load_classifier

    root = Path(root)
    runs = read_validation_runs(validation_runs)
    winner = select_winner(runs, cfg.metric)
    ckpt = Path(str(winner.entry.get("checkpoint", "")))
    ckpt = ckpt if ckpt.is_absolute() else root / ckpt
    if not ckpt.is_file():
        raise RegistryError(f"winner {winner.name}: checkpoint {ckpt} not found")
    logger.info("winner by %s: %s (%s)", cfg.metric, winner.name, _fmt_metric(winner, cfg.metric))
    client = MlflowClient()
    ckpt_sha = sha256_file(ckpt)
    std = standard_tags(root, dvc_stage="register")
    model, meta = load_classifier(ckpt)
    classes = classes or list(meta.classes)
    key = export_key(ckpt_sha, export_cfg, frame_geometry or {})
    existing = _existing_version(client, cfg.model_name, key)
    if existing is not None:
        version, reused = str(existing.version), True
        onnx_sha = existing.tags.get("onnx_sha256", "")
        logger.info("checkpoint already registered as version %s; reusing it", version)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(
                model,
                meta,
                Path(tmp) / ONNX_FILE,
                export_cfg,
                registered_model=cfg.model_name,
                run_name=winner.name,
                checkpoint_sha256=ckpt_sha,
                selection_metric=cfg.metric,
                **(frame_geometry or {}),
            )
            onnx_sha = sha256_file(onnx_path)
            tags = {**version_tags(winner, cfg, ckpt_sha, onnx_sha, std), "export_key": key}
            with mlflow.start_run(run_name="register", tags={**std, "run_name": winner.name}):
                mlflow.log_params({"register.metric": cfg.metric, "winner": winner.name})
                mlflow.log_metric(cfg.metric, winner.value(cfg.metric))
                info = log_onnx_pyfunc(onnx_path)
        mv = mlflow.register_model(info.model_uri, cfg.model_name, tags=tags)
        version, reused = str(mv.version), False
        try:
            card = model_card(winner, cfg, split_counts(splits_csv), classes, tags)
            client.update_model_version(cfg.model_name, version, description=card)
            client.set_registered_model_tag(
                cfg.model_name, "task", "lung-ultrasound frame classification"
            )
        except Exception:
            client.delete_model_version(cfg.model_name, version)  # no half-registered version
            raise
    previous = _alias_holder(client, cfg.model_name, cfg.alias)
    if previous != version:
        _move_alias(
            client,
            cfg.model_name,
            cfg.alias,
            version,
            previous,
            reason=f"registered {winner.name}",
            forced=False,
            extra_checks=(),
        )
    lo, hi = winner.interval(cfg.metric)
    return {
        "name": cfg.model_name,
        "version": version,
        "alias": cfg.alias,
        "reused": reused,
        "model_uri": f"models:/{cfg.model_name}/{version}",
        "run_name": winner.name,
        "checkpoint": str(winner.entry.get("checkpoint")),
        "checkpoint_sha256": ckpt_sha,
        "onnx_sha256": onnx_sha,
        "metric": cfg.metric,
        "value": winner.value(cfg.metric),
        "interval": [lo, hi],
    }


# ------------------------------------------------------------------------------ promotion


def _alias_holder(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _version(client: Any, name: str, version: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        raise RegistryError(f"{name} has no version {version}") from exc


def _float_tag(tags: dict[str, str], key: str) -> float | None:
    try:
        return float(tags[key])
    except (KeyError, ValueError):
        return None


@dataclass
class GateResult:
    name: str
    passed: bool
    detail: str


def check_gates(
    client: Any, name: str, version: str, alias: str, cfg: RegisterParams
) -> list[GateResult]:
    """Promotion gates for ``version`` -> ``alias`` (evaluated; nothing is changed)."""
    mv = _version(client, name, version)
    gates = []
    parity = mv.tags.get(PARITY_TAG, "missing")
    if cfg.require_parity:
        gates.append(
            GateResult(
                "onnx_parity",
                parity == "passed",
                f"ONNX parity is {parity!r} (the export stage must pass it)",
            )
        )
    holder = _alias_holder(client, name, alias)
    metric = cfg.gate_metric
    new = _float_tag(mv.tags, metric)
    if holder is None or holder == str(version):
        gates.append(
            GateResult(
                metric,
                new is not None,
                f"no current {alias}; {metric} = {new}"
                if new is not None
                else f"version {version} has no {metric} tag",
            )
        )
        return gates
    old_tags = _version(client, name, holder).tags
    old, old_lo = _float_tag(old_tags, metric), _float_tag(old_tags, f"{metric}_lo")
    if new is None or old is None:
        gates.append(
            GateResult(
                metric,
                False,
                f"{metric} missing on version {version} or on {alias} holder {holder}",
            )
        )
        return gates
    floor = old_lo if old_lo is not None else old
    ok = new >= floor
    gates.append(
        GateResult(
            metric,
            ok,
            f"{metric} {new:.4f} vs {alias} holder v{holder} {old:.4f} "
            f"(interval low {floor:.4f}): "
            + ("not worse beyond the interval" if ok else "worse beyond the holder's interval"),
        )
    )
    return gates


class _Transaction:
    """Registry writes with their inverses; ``undo`` restores the state before ``begin``."""

    def __init__(self, client: Any, name: str) -> None:
        self.client, self.name = client, name
        self._undo: list[Callable[[], None]] = []

    def set_version_tag(self, version: str, key: str, value: str) -> None:
        old = _version(self.client, self.name, version).tags.get(key)
        self.client.set_model_version_tag(self.name, version, key, value)
        if old is None:
            self._undo.append(
                lambda: self.client.delete_model_version_tag(self.name, version, key)
            )
        else:
            self._undo.append(
                lambda: self.client.set_model_version_tag(self.name, version, key, old)
            )

    def set_model_tag(self, key: str, value: str) -> None:
        old = self.client.get_registered_model(self.name).tags.get(key)
        self.client.set_registered_model_tag(self.name, key, value)
        if old is None:
            self._undo.append(lambda: self.client.delete_registered_model_tag(self.name, key))
        else:
            self._undo.append(lambda: self.client.set_registered_model_tag(self.name, key, old))

    def set_alias(self, alias: str, version: str, previous: str | None) -> None:
        self.client.set_registered_model_alias(self.name, alias, version)
        if previous is None:
            self._undo.append(lambda: self.client.delete_registered_model_alias(self.name, alias))
        else:
            self._undo.append(
                lambda: self.client.set_registered_model_alias(self.name, alias, previous)
            )

    def undo(self) -> None:
        for step in reversed(self._undo):
            try:
                step()
            except Exception:  # keep undoing the rest; report what could not be restored
                logger.exception("could not undo a registry change")
        self._undo.clear()


FinalCheck = Callable[[Any, str, str, str | None], None]  # (client, version, alias, previous)


def _holder_unchanged(client: Any, name: str) -> FinalCheck:
    def check(_: Any, version: str, alias: str, previous: str | None) -> None:
        now = _alias_holder(client, name, alias)
        if now != previous:
            raise RegistryError(f"{alias} moved to v{now} while promoting v{version}; try again")

    return check


def _history(client: Any, name: str, alias: str) -> list[str]:
    """Previous holders of ``alias`` (oldest first); the last one is what a rollback restores."""
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG.format(alias=alias), "[]")
    return [str(v) for v in json.loads(raw)]


def _move_alias(
    client: Any,
    name: str,
    alias: str,
    version: str,
    previous: str | None,
    *,
    reason: str,
    forced: bool,
    extra_checks: Sequence[FinalCheck],
    kind: str = "promotion",
    gates: Sequence[GateResult] = (),
) -> dict[str, str]:
    """Audit tags, history, final checks, then the alias move; on any failure, undo all.

    History: a promotion pushes the previous holder; a rollback pops the version it restores.
    """
    mv = _version(client, name, version)
    from_aliases = ",".join(sorted(a for a in (mv.aliases or []) if a != alias)) or "none"
    audit = {
        "from": from_aliases,
        "to": alias,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "who": os.environ.get("LUSAUG_USER") or getpass.getuser(),
        "reason": reason,
        "previous_holder": previous or "none",
        "kind": kind,
        "forced": str(forced).lower(),
        "gates": "; ".join(f"{g.name}: {'pass' if g.passed else 'FAIL'}" for g in gates) or "none",
    }
    hist_key = HISTORY_TAG.format(alias=alias)
    history = _history(client, name, alias)
    if kind == "rollback":
        history = history[:-1]
    elif previous is not None:
        history = [*history, previous]
    txn = _Transaction(client, name)
    try:
        for key, value in audit.items():
            txn.set_version_tag(version, f"audit.{alias}.{key}", value)
        txn.set_model_tag(hist_key, json.dumps(history[-HISTORY_KEEP:]))
        for check in [_holder_unchanged(client, name), *extra_checks]:
            check(client, version, alias, previous)
        txn.set_alias(alias, version, previous)
    except BaseException:
        txn.undo()
        raise
    logger.info("%s: %s@%s v%s -> v%s (%s)", kind, name, alias, previous or "-", version, reason)
    return audit


@dataclass
class PromotionResult:
    name: str
    version: str
    alias: str
    previous: str | None
    forced: bool
    gates: list[GateResult] = field(default_factory=list)
    audit: dict[str, str] = field(default_factory=dict)


def promote(
    name: str,
    version: str | int,
    to: str,
    cfg: RegisterParams,
    *,
    force: bool = False,
    reason: str = "",
    final_checks: Sequence[FinalCheck] = (),
) -> PromotionResult:
    """Move alias ``to`` to ``version`` if the gates pass (or ``force`` with a ``reason``).

    ``final_checks`` run after the audit tags are written and just before the alias moves (the
    built-in one verifies that nobody moved the alias meanwhile); if any raises, every change is
    undone and the exception propagates.
    """
    from mlflow import MlflowClient

    version = str(version)
    if to not in cfg.promote_to:
        raise RegistryError(
            f"--to must be one of {cfg.promote_to} (register.promote_to), got {to!r}"
        )
    if force and not reason.strip():
        raise RegistryError('--force needs --reason "..." (it goes into the audit tags)')
    client = MlflowClient()
    _version(client, name, version)
    previous = _alias_holder(client, name, to)
    if previous == version:
        raise RegistryError(f"version {version} already holds {name}@{to}")
    gates = check_gates(client, name, version, to, cfg)
    failed = [g for g in gates if not g.passed]
    if failed and not force:
        raise PromotionRefused(
            f"refusing to promote {name} v{version} to {to}: "
            + "; ".join(g.detail for g in failed)
            + ' (override with --force --reason "...")'
        )
    why = reason.strip() or "gates passed"
    audit = _move_alias(
        client,
        name,
        to,
        version,
        previous,
        reason=why,
        forced=bool(failed) and force,
        extra_checks=final_checks,
        gates=gates,
    )
    return PromotionResult(name, version, to, previous, bool(failed) and force, gates, audit)


def rollback(name: str, alias: str, reason: str = "") -> PromotionResult:
    """Give ``alias`` back to the version that held it before the current one."""
    from mlflow import MlflowClient

    client = MlflowClient()
    current = _alias_holder(client, name, alias)
    if current is None:
        raise RegistryError(f"{name}@{alias} is not set; nothing to roll back")
    history = _history(client, name, alias)
    if not history:
        raise RegistryError(f"{name}@{alias} has no previous holder to roll back to")
    target = history[-1]
    _version(client, name, target)
    why = f"rollback from v{current}" + (f": {reason.strip()}" if reason.strip() else "")
    audit = _move_alias(
        client,
        name,
        alias,
        target,
        current,
        reason=why,
        forced=False,
        extra_checks=(),
        kind="rollback",
    )
    return PromotionResult(name, target, alias, current, False, [], audit)


def set_export_tags(name: str, version: str, report: dict[str, Any]) -> None:
    """Record the export stage's verdict on the version (the gate reads ``onnx_parity``)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    par = report["parity"]
    tags = {
        PARITY_TAG: "passed" if par["passed"] else "failed",
        "onnx_parity_max_abs_diff": f"{par['max_abs_diff']:.3g}",
        "onnx_parity_frames": str(par["frames"]),
        "int8_mode": report["int8"].get("mode", "none"),
    }
    if "accuracy_delta" in report["int8"]:
        tags["int8_accuracy_delta"] = f"{report['int8']['accuracy_delta']:.4f}"
    for k, v in tags.items():
        client.set_model_version_tag(name, str(version), k, v)


def list_versions(name: str, metric: str) -> list[dict[str, Any]]:
    """Every version with its aliases, strategy, architecture, metric (interval) and parity."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
        holders = dict(client.get_registered_model(name).aliases)  # search omits aliases
    except MlflowException as exc:
        raise RegistryError(f"cannot list {name}: {exc.message}") from exc
    aliases: dict[str, list[str]] = {}
    for alias, v in holders.items():
        aliases.setdefault(str(v), []).append(alias)
    rows = []
    for mv in sorted(versions, key=lambda v: int(v.version)):
        t = mv.tags
        rows.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "run_name": t.get("run_name", ""),
                "strategy": t.get("strategy", ""),
                "architecture": t.get("architecture", ""),
                metric: _float_tag(t, metric),
                f"{metric}_lo": _float_tag(t, f"{metric}_lo"),
                f"{metric}_hi": _float_tag(t, f"{metric}_hi"),
                "onnx_parity": t.get(PARITY_TAG, ""),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
            }
        )
    return rows
