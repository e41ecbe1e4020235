"""Benchmark: calibrate the whole method on the phantom (type-I rate, power, coverage, power curve).

Usage:
    python benchmarks/calibration.py run [--replicates 20] [--rare 4 8 16 32] [--profile micro]
        [--settings issue|current] [--results benchmarks/results/calibration.jsonl]
    python benchmarks/calibration.py true-effect [--results ...] [--training-sets 10]
        [--test-patients 40] [--out benchmarks/results/calibration_true_effect.json]
    python benchmarks/calibration.py summarise [--results ...] [--true-effect FILE]
        [--plots docs/img]

``run`` repeats the cross-validated pipeline R times per rare-class patient count, each replicate
in a fresh temporary copy of the repo (the profile applied, ``phantom.seed``, ``base.seed`` (the
split's seed too) and ``phantom.patients.<target>`` set, the phantom written and committed to DVC,
``split.folds`` set from the data, ``dvc repro evaluate``). It appends one JSON line per replicate
(:mod:`lusaug.calibration.records`) and skips replicates already in the results file, so an
interrupted benchmark resumes where it stopped (``--retry-failed`` re-runs failed ones).
Replicate r uses the same seeds at every patient count (common random numbers: the first
patients of every class are the same, so the curve's steps are not seed noise). Only the rare
class's patient count changes; the other classes keep the profile's counts.

``true-effect`` estimates the oracle's true effect per patient count from new phantom patients
(:func:`lusaug.calibration.true_effect.estimate_true_effect`), with one fold's training sizes
as the replicates recorded them; ``summarise`` joins it into the records and prints the type-I
rates, power, coverage and power curve with Monte Carlo intervals, and writes the two figures.

Settings: ``issue`` is the issue's design (the control generators and the same-share control
must be wired into the pipeline first; it refuses until they are); ``current`` runs what the
pipeline has today (baseline, oversample, class_weights on the micro profile) so the loop, the
resume and the records can be exercised now; its comparisons all have role ``other``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedSeq
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.pipelines.helpers: the repo copy the pipeline tests use

from lusaug.calibration.plots import write_plots
from lusaug.calibration.records import (
    SCHEMA,
    append_line,
    comparisons_from_report,
    done_keys,
    read_lines,
    replicate_key,
    with_true_effects,
)
from lusaug.calibration.stats import summary
from lusaug.calibration.true_effect import design_from_split, estimate_true_effect
from lusaug.core.config import GENERATOR_KINDS, Params, load_params, params_from_dict
from lusaug.core.profiles import load_overlay
from lusaug.core.utils import atomic_path
from lusaug.generators.control_generators import ORACLE_KIND, RELABEL_KIND
from tests.pipelines.helpers import copy_repo, run

RESULTS = Path("benchmarks/results/calibration.jsonl")
TRUE_EFFECT = Path("benchmarks/results/calibration_true_effect.json")
ORACLE, NULL = "oracle", "null_other"
# The settings: params set in every replicate (beside the seeds and patient count).
SETTINGS: dict[str, dict[str, Any]] = {
    "issue": {
        "generate.enabled": [ORACLE, NULL],
        "train.strategies": [
            "baseline",
            f"oversample_matched-{ORACLE}",
            f"synthetic-{ORACLE}",
            f"synthetic-{NULL}",
            f"oversample_matched-{NULL}",
        ],
        # TODO(verdicts): evaluate.primary = synthetic-oracle vs oversample_matched-oracle,
        # resnet, the rare-class endpoint; the placebo needs >= 2 train.seeds
        "train.seeds": [0, 1],
    },
    "current": {
        "generate.enabled": ["ddpm_all"],
        "train.strategies": ["baseline", "oversample", "class_weights"],
        "train.seeds": [0],
    },
}
ROLES: dict[str, dict[str, str]] = {
    "issue": {
        f"synthetic-{ORACLE} vs oversample_matched-{ORACLE}": "oracle",
        f"synthetic-{NULL} vs oversample_matched-{NULL}": "null",
        f"synthetic-{NULL}": "null",  # against the baseline: more viral-labelled images
    },
    "current": {},
}
# The pipeline's endpoint -> the true-effect estimate it is compared with.
# TODO(verdicts): the per-patient mean recall (rare_recall_patient_mean) once evaluate tests it.
ENDPOINT_TRUTH = {"recall": "rare_recall_pooled"}


def _merge_flow(node: Any, overlay: dict[str, Any]) -> None:
    """profiles._merge_into, writing lists in flow style as set_param does: a block list under
    a commented key breaks the next round trip (`lusaug folds --write` after `lusaug profile
    micro` fails on main the same way)."""
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(node.get(key), dict):
            _merge_flow(node[key], value)
            continue
        if isinstance(value, list):
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        node[key] = value


def apply_settings(params_path: Path, profile: str, settings: dict[str, Any]) -> None:
    """Apply ``profile`` and the dotted ``settings`` to ``params_path`` in one pass (comments
    kept); the result is checked once (one key at a time can fail, e.g. strategies naming a
    generator that a later key enables)."""
    overlay: dict[str, Any] = {}
    for key, value in settings.items():
        *parents, leaf = key.split(".")
        node = overlay
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 4096
    with params_path.open() as fh:
        doc = rt.load(fh)
    _merge_flow(doc, load_overlay(profile))
    _merge_flow(doc, overlay)
    doc["base"]["profile"] = f"{profile}+calibration"
    with atomic_path(params_path) as tmp:
        with tmp.open("w") as fh:
            rt.dump(doc, fh)
        params_from_dict(yaml.safe_load(tmp.read_text()))


def replicate_seeds(master: int, replicate: int) -> dict[str, int]:
    """phantom.seed and base.seed of replicate r (the same at every patient count)."""
    state = np.random.SeedSequence([master, replicate]).generate_state(2)
    return {"phantom.seed": int(state[0] % 2**31), "base.seed": int(state[1] % 2**31)}


def _check_settings(name: str) -> None:
    if name == "issue" and not {ORACLE_KIND, RELABEL_KIND} <= set(GENERATOR_KINDS):
        raise SystemExit(
            "settings 'issue' needs the control generators wired into generate/filter "
            f"({ORACLE_KIND}, {RELABEL_KIND} in lusaug.core.config.GENERATOR_KINDS, the {ORACLE} and "
            f"{NULL} entries in generate.generators) and the oversample_matched-<G> strategy; "
            "use --settings current until then"
        )


def _fold_patients(repo: Path) -> dict[str, dict[str, int]]:
    split = pd.read_csv(repo / "data" / "splits" / "fold-0.csv", dtype=str)
    counts = split.groupby(["split", "label"])["patient_id"].nunique()
    return {s: {c: int(n) for c, n in counts[s].items()} for s in counts.index.levels[0]}


def _kept(repo: Path, generator: str) -> list[int]:
    found = sorted((repo / "metrics").glob(f"fold-*/synthetic_{generator}.json"))
    return [int(json.loads(p.read_text()).get("kept", 0)) for p in found]


def run_replicate(args: argparse.Namespace, n_rare: int, r: int) -> dict[str, Any]:
    """One replicate in a temporary repo copy; its record (status failed with the error)."""
    params = load_params(ROOT / "params.yaml")
    target = params.base.target_class
    settings = {**replicate_seeds(args.seed, r), f"phantom.patients.{target}": n_rare}
    settings.update(SETTINGS[args.settings])
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "key": replicate_key(n_rare, r),
        "replicate": r,
        "n_rare_patients": n_rare,
        "profile": args.profile,
        "settings_name": args.settings,
        "settings": settings,
    }
    start = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="lusaug-calibration-"))
    try:
        repo = copy_repo(tmp)
        apply_settings(repo / "params.yaml", args.profile, settings)
        run(["lusaug", "phantom", "--out", "data/raw", "--force"], repo)
        run(["dvc", "commit", "-q", "-f", "data.dvc"], repo)
        run(["dvc", "repro", "-q", "frames"], repo, timeout=args.timeout)
        run(["lusaug", "folds", "--write"], repo)
        run(["dvc", "repro", "-q", "evaluate"], repo, timeout=args.timeout)
        report = json.loads((repo / "metrics" / "comparison.json").read_text())
        done = load_params(repo / "params.yaml")
        record.update(
            status="ok",
            error=None,
            alpha=done.evaluate.alpha,
            folds=list(done.split.folds),
            fold_patients=_fold_patients(repo),
            kept={g: _kept(repo, g) for g in done.generate.enabled},
            comparisons=comparisons_from_report(report, ROLES[args.settings], "recall", n_rare),
        )
    except (AssertionError, OSError, ValueError, KeyError) as exc:  # a failed replicate is data
        record.update(status="failed", error=f"{type(exc).__name__}: {str(exc)[-2000:]}")
    finally:
        if args.keep:
            record["repo"] = str(tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    record["seconds"] = round(time.perf_counter() - start, 1)
    return record


def cmd_run(args: argparse.Namespace) -> None:
    _check_settings(args.settings)
    done = done_keys(read_lines(args.results), retry_failed=args.retry_failed)
    todo = [(n, r) for n in args.rare for r in range(args.replicates)]
    todo = [(n, r) for n, r in todo if replicate_key(n, r) not in done]
    print(f"{len(done)} replicate(s) already in {args.results}; {len(todo)} to run")
    bar = tqdm(todo, desc="calibration", unit="replicate")
    for n_rare, r in bar:
        bar.set_postfix_str(f"{n_rare} rare patients, replicate {r}")
        record = run_replicate(args, n_rare, r)
        append_line(args.results, record)
        bar.write(f"{record['key']}: {record['status']} in {record['seconds']:.0f} s")


def replicate_params(record: dict[str, Any]) -> Params:
    """The params a replicate ran with: params.yaml, its profile, its settings."""
    with tempfile.TemporaryDirectory(prefix="lusaug-calibration-params-") as tmp:
        path = Path(tmp) / "params.yaml"
        shutil.copy(ROOT / "params.yaml", path)
        apply_settings(path, record["profile"], record["settings"])
        return load_params(path)


def cmd_true_effect(args: argparse.Namespace) -> None:
    """Per patient count: the oracle's true effect on new patients, one fold's sizes as the
    replicates recorded them (the first finished replicate of that count)."""
    records = [r for r in read_lines(args.results) if r.get("status") == "ok"]
    out: dict[str, Any] = {}
    for n_rare in sorted({int(r["n_rare_patients"]) for r in records}):
        first = next(r for r in records if int(r["n_rare_patients"]) == n_rare)
        params = replicate_params(first)
        rows = [
            {"split": s, "label": c, "patient_id": f"{s}-{c}-{i}"}
            for s, per_class in first["fold_patients"].items()
            for c, n in per_class.items()
            for i in range(n)
        ]
        kept = first.get("kept", {}).get(ORACLE) or [params.generate.sampling.candidates]
        design = design_from_split(
            pd.DataFrame(rows),
            test_patients={c: args.test_patients for c in params.base.classes},
            training_sets=args.training_sets,
            oracle_images=max(1, round(float(np.mean(kept)))),
            seeds=tuple(params.train.seeds),
            architecture=args.architecture,
            # TODO(verdicts): control = oversample_matched-oracle once that strategy exists
        )
        with tempfile.TemporaryDirectory(prefix="lusaug-true-effect-") as work:
            result = estimate_true_effect(params, design, args.seed + n_rare, work)
        out[str(n_rare)] = {"effects": result["effects"], "design": result["design"]}
        print(f"{n_rare} rare patients: {json.dumps(result['effects'])}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")


def cmd_summarise(args: argparse.Namespace) -> None:
    records = read_lines(args.results)
    if args.true_effect and args.true_effect.exists():
        truth = json.loads(args.true_effect.read_text())
        effects = {
            int(n): v["effects"][ENDPOINT_TRUTH["recall"]]["mean"] for n, v in truth.items()
        }
        records = with_true_effects(records, effects)
    result = summary(records, args.ci, args.method)
    print(json.dumps(result, indent=2, sort_keys=True, default=float))
    alpha = next((r["alpha"] for r in records if r.get("status") == "ok"), 0.05)
    for name, path in write_plots(records, args.plots, alpha, args.power, args.ci).items():
        print(f"{name}: {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run (or resume) the replicates")
    p_run.add_argument("--replicates", type=int, default=20)
    p_run.add_argument("--rare", type=int, nargs="+", default=[4, 8, 16, 32])
    p_run.add_argument("--profile", default="micro")
    p_run.add_argument("--settings", choices=sorted(SETTINGS), default="issue")
    p_run.add_argument("--seed", type=int, default=2025, help="master seed of the replicates")
    p_run.add_argument("--timeout", type=int, default=3600, help="seconds per dvc repro")
    p_run.add_argument("--retry-failed", action="store_true")
    p_run.add_argument("--keep", action="store_true", help="keep each replicate's repo copy")
    p_true = sub.add_parser("true-effect", help="estimate the oracle's true effect")
    p_true.add_argument("--training-sets", type=int, default=10)
    p_true.add_argument("--test-patients", type=int, default=40, help="per class")
    p_true.add_argument("--architecture", default="resnet")
    p_true.add_argument("--seed", type=int, default=7_000_000, help="apart from the replicates'")
    p_true.add_argument("--out", type=Path, default=TRUE_EFFECT)
    p_sum = sub.add_parser("summarise", help="rates, intervals and figures")
    p_sum.add_argument("--true-effect", type=Path, default=TRUE_EFFECT)
    p_sum.add_argument("--plots", type=Path, default=Path("docs/img"))
    p_sum.add_argument("--ci", type=float, default=0.95)
    p_sum.add_argument("--method", choices=["exact", "wilson"], default="exact")
    p_sum.add_argument("--power", type=float, default=0.8)
    for p in (p_run, p_true, p_sum):
        p.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    {"run": cmd_run, "true-effect": cmd_true_effect, "summarise": cmd_summarise}[args.command](
        args
    )


if __name__ == "__main__":
    main()
