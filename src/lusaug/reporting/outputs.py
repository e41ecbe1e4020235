"""The files of one finished cross-validated run, read once (``RunOutputs``).

Only ``params.yaml`` and ``metrics/test.json`` are required. Every other file is optional: absent
it is ``None`` and the section that needs it says which file is missing; present but unreadable it
is a :class:`ReportError` (a torn write is not a missing input).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lusaug.core.config import SYNTHETIC_PREFIX, ConfigError, Params, load_params, parse_strategy
from lusaug.core.errors import LusaugError

logger = logging.getLogger(__name__)

# Where the run keeps each file (relative to the repository).
TEST_JSON = "metrics/test.json"
FILES = {
    "test_runs": "metrics/test_runs.json",
    "comparison": "metrics/comparison.json",
    "summary": "metrics/summary.json",
    "rare": "metrics/rare_patients.json",
    "selection": "metrics/selection.json",
    "final": "metrics/final.json",
    "validation": "metrics/validation.json",
    "split": "reports/split.json",
    "ingest": "reports/ingest.json",
    "onnx": "reports/onnx_parity.json",
    "registered": "models/registered.json",
}
ENCODER_JSON = "metrics/fold-{k}/encoder.json"
SYNTHETIC_JSON = "metrics/fold-{k}/synthetic_{g}.json"
TUNED_YAML = "params/tuned/fold-{k}.yaml"
SKIPPED_JSON = "models/classifiers/fold-{k}/{run}/skipped.json"  # a run a fold did not train


class ReportError(LusaugError, RuntimeError):
    """A required input of the write-up is missing or unreadable."""


def missing(rel: str, stage: str) -> str:
    """The sentence a section shows instead of its content when its input is absent."""
    return f"Not available: {rel} is missing (stage `{stage}` writes it)."


def read_json(path: Path) -> Any:
    """Parsed JSON, None when absent; ReportError when unreadable."""
    if not path.exists():
        logger.warning("report: %s not found; its section says so", path)
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON: {exc}") from None


def read_yaml(path: Path) -> Any:
    if not path.exists():
        logger.warning("report: %s not found; its section says so", path)
        return None
    try:
        return yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid YAML: {exc}") from None


def planned_settings(params: Params) -> list[str]:
    """``<strategy>-<arch>`` of every setting the train stages produce, in params order (the
    plan of ``lusaug.models.run_setup.planned_runs`` without its seeds and torch import)."""
    return [f"{s}-{a}" for s, a in params.train.settings()]


def _load_params(repo: Path) -> Params:
    path = repo / "params.yaml"
    if not path.exists():
        raise ReportError(f"{path} not found: --repo must be the run's repository")
    try:
        return load_params(path)
    except ConfigError as exc:
        raise ReportError(
            f"{path} does not match this lusaug version's parameters ({exc}); "
            "run the report with the code the run used"
        ) from None


def _load_test(repo: Path, params: Params) -> dict[str, Any]:
    path = repo / TEST_JSON
    if not path.exists():
        raise ReportError(
            f"{path} not found: the run has not finished its `evaluate` stage (run `dvc repro`)"
        )
    test = read_json(path)
    if not isinstance(test, dict) or not isinstance(test.get("settings"), dict):
        raise ReportError(f"{path} holds no settings")
    if "test" not in test:
        raise ReportError(
            f"{path} has no pooled out-of-fold summary ('test'): it is from the hold-out "
            "pipeline; re-run `dvc repro` (stage evaluate)"
        )
    unplanned = sorted(set(test["settings"]) - set(planned_settings(params)))
    if unplanned:
        raise ReportError(
            f"{path} holds settings params.yaml does not plan ({unplanned}): it is left over "
            "from a run with other params; finish `dvc repro` (stage evaluate) first"
        )
    return test


@dataclass
class FoldOutputs:
    """One fold's files: its feature space, each generator's filter metrics, its tuned file."""

    fold: int
    encoder: dict[str, Any] | None
    synthetic: dict[str, dict[str, Any] | None]  # enabled generator -> metrics (None: missing)
    tuned: dict[str, Any] | None


@dataclass
class RunOutputs:
    """The files of one finished run, parsed (None = absent)."""

    repo: Path
    params: Params
    test: dict[str, Any]
    files: dict[str, Any]  # key of FILES -> parsed content or None
    folds: dict[int, FoldOutputs]
    left_out: list[str] = field(default_factory=list)  # generator files these params do not run

    @classmethod
    def load(cls, repo: Path) -> RunOutputs:
        params = _load_params(repo)
        test = _load_test(repo, params)
        files = {key: read_json(repo / rel) for key, rel in FILES.items()}
        enabled = list(params.generate.enabled)
        folds, left_out = {}, []
        for k in params.split.folds:
            synthetic = {g: read_json(repo / SYNTHETIC_JSON.format(k=k, g=g)) for g in enabled}
            folds[k] = FoldOutputs(
                fold=k,
                encoder=read_json(repo / ENCODER_JSON.format(k=k)),
                synthetic=synthetic,
                tuned=read_yaml(repo / TUNED_YAML.format(k=k)),
            )
            for path in sorted((repo / f"metrics/fold-{k}").glob("synthetic_*.json")):
                if path.stem.removeprefix("synthetic_") not in enabled:
                    left_out.append(path.relative_to(repo).as_posix())
        return cls(repo, params, test, files, folds, left_out)

    def get(self, key: str) -> Any:
        """The parsed file ``FILES[key]`` (None when absent)."""
        return self.files[key]

    # -- derived views

    @property
    def target(self) -> str:
        return self.params.base.target_class

    @property
    def info(self) -> dict[str, Any]:
        """test.json's pooled summary: frames, videos, patients, folds, bootstrap, ci."""
        return self.test.get("test") or {}

    def settings(self) -> dict[tuple[str, str], dict[str, Any]]:
        """(strategy, architecture) -> flat metrics of metrics/test.json."""
        out = {}
        for name, values in self.test["settings"].items():
            strategy, _, arch = name.rpartition("-")  # architecture names never contain '-'
            out[(strategy, arch)] = values
        return out

    def architectures(self) -> list[str]:
        return list(self.params.train.architectures)

    def strategies(self) -> list[str]:
        """Planned strategies in params order, the baseline first when it is planned and each
        ``oversample_matched-<G>`` right after its ``synthetic-<G>``."""
        planned = list(self.params.train.strategies)
        base = self.params.evaluate.baseline
        order = [base, *(s for s in planned if s != base)] if base in planned else planned
        twins = {
            SYNTHETIC_PREFIX + parse_strategy(s).generator: s
            for s in order
            if parse_strategy(s).kind == "matched"
        }
        twins = {k: v for k, v in twins.items() if k in order}
        out: list[str] = []
        for s in order:
            if s in twins.values():
                continue  # placed right after its synthetic-<G>
            out.append(s)
            if s in twins:
                out.append(twins[s])
        return out

    def generators(self) -> list[str]:
        return list(self.params.generate.enabled)

    def is_leaky(self, strategy: str) -> bool:
        g = parse_strategy(strategy).generator
        spec = self.params.generate.generators.get(g) if g else None
        return bool(spec and spec.leaky)

    def label(self, strategy: str) -> str:
        return f"{strategy} (leaky)" if self.is_leaky(strategy) else strategy

    def comparisons(self) -> dict[str, Any]:
        """metrics/comparison.json's comparisons: name -> entry (strategy, control, ...)."""
        return (self.get("comparison") or {}).get("comparisons") or {}

    def comparison_entry(
        self, strategy: str, arch: str, control: str | None = None
    ) -> dict[str, Any] | None:
        """The comparison of ``strategy`` with ``control`` (default: the baseline) on ``arch``."""
        control = control or self.params.evaluate.baseline
        for e in self.comparisons().values():
            if (e.get("strategy"), e.get("control"), e.get("architecture")) == (
                strategy,
                control,
                arch,
            ):
                return e
        return None

    def missing_settings(self) -> dict[str, str]:
        """Planned settings absent from test.json -> why, as far as the run's files say."""
        present = set(self.test["settings"])
        return {s: self._why_absent(s) for s in planned_settings(self.params) if s not in present}

    def _why_absent(self, setting: str) -> str:
        strategy = parse_strategy(setting.rpartition("-")[0])
        reasons = []
        strategy_name, _, arch = setting.rpartition("-")
        for k, fold in self.folds.items():
            for seed in self.params.train.seeds_of(strategy_name, arch):
                rel = SKIPPED_JSON.format(k=k, run=f"{setting}-{seed}")
                skipped = read_json(self.repo / rel) if (self.repo / rel).exists() else None
                if isinstance(skipped, dict) and skipped.get("reason"):
                    reasons.append(f"fold {k}: {skipped['reason']}")
                    break
            else:
                m = fold.synthetic.get(strategy.generator) if strategy.generator else None
                section = (fold.tuned or {}).get(strategy.name) if strategy.tuned else None
                if isinstance(m, dict) and m.get("blocked"):
                    reasons.append(
                        f"fold {k}: {strategy.generator} blocked ({m['blocked_reason']})"
                    )
                elif isinstance(section, dict) and (
                    section.get("blocked") or section.get("skipped")
                ):
                    reasons.append(f"fold {k}: {section.get('blocked') or section.get('skipped')}")
        return "; ".join(reasons) or "no pooled out-of-fold prediction in metrics/test.json"
