"""The study write-up (``docs/results-<profile>.md``) from a finished ``dvc repro`` run's outputs.

Everything comes from files the pipeline already wrote (metrics/*.json, reports/*.json,
models/registered.json, params/tuned.yaml, params.yaml, plots/) plus, optionally, the per-stage
cost records of ``$LUSAUG_STAGE_COSTS`` and a hand-written conclusion. Nothing is recomputed, so
the write-up shows exactly the numbers ``dvc metrics show`` shows. Figures are copied (and shrunk
when large) next to the write-up, because plots/ is DVC-cached and not in git.

Only ``metrics/test.json`` and ``params.yaml`` are required; every other missing input turns its
section into a sentence saying what is missing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lusaug.config import SYNTHETIC_PREFIX, ConfigError, Params, load_params
from lusaug.errors import LusaugError
from lusaug.utils import atomic_path

logger = logging.getLogger(__name__)

# The seed study's own numbers, from its Table 3 (test split of 444 frames: 195 regular, 112 covid,
# 121 pneumonia, 16 viral), as quoted in issue 6. Percentages; the study gives no intervals and
# does not name the F1/precision average. Keys: our strategy names and architecture families.
STUDY_REFERENCE: dict[str, Any] = {
    "source": "the study, Table 3",
    "models": {"resnet": "ResNet50", "vit": "ViT"},
    "test_frames": {"regular": 195, "covid": 112, "pneumonia": 121, "viral": 16},
    "settings": [
        {
            "label": "Baseline",
            "strategy": "baseline",
            "values": {
                "resnet": {"accuracy": 76.57, "f1_macro": 74.59, "precision_macro": 75.23},
                "vit": {"accuracy": 71.84, "f1_macro": 70.83, "precision_macro": 71.02},
            },
        },
        {
            "label": "Class weights",
            "strategy": "class_weights",
            "values": {"resnet": {"accuracy": 75.90}, "vit": {"accuracy": 68.91}},
        },
        {
            "label": "DDPM 3 mixed",
            "strategy": SYNTHETIC_PREFIX + "ddpm_3mixed",
            "values": {
                "resnet": {"accuracy": 78.82, "f1_macro": 76.80, "precision_macro": 76.66},
                "vit": {"accuracy": 70.72, "f1_macro": 71.07, "precision_macro": 74.14},
            },
        },
        {
            "label": "DDPM all viral",
            "strategy": SYNTHETIC_PREFIX + "ddpm_all",
            "values": {"resnet": {"accuracy": 70.72}, "vit": {"accuracy": 66.89}},
            "note": (
                "the study's 'all viral' DDPM was trained on every viral frame, test frames "
                "included; our ddpm_all sees training frames only"
            ),
        },
    ],
}

# Row order of the Table 3 layout; synthetic-<G> rows follow in the order of train.generators.
STRATEGY_ORDER = (
    "baseline",
    "class_weights",
    "class_weights_norm",
    "class_weights_tuned",
    "oversample",
)
# Figures copied from plots/evaluate/figures ({target} = base.target_class), with captions.
EVALUATE_FIGURES = (
    ("confusion_grid.png", "Confusion matrices on the test split, summed over seeds"),
    ("recall_bars.png", "Per-class recall with patient-bootstrap intervals"),
    ("differences_f1_macro.png", "Paired macro-F1 differences with the baseline"),
    ("differences_recall_{target}.png", "Paired {target} recall differences with the baseline"),
    ("curves_val_macro_f1.png", "Validation macro-F1 per epoch"),
)
# Figures copied from plots/synthetic/<G>/ (the real/kept grids are shown side by side).
GENERATOR_FIGURES = ("real_grid.png", "kept_grid.png", "filter_scatter.png", "closest_pairs.png")
TUNE_FIGURES = (("optimization_history.png", "Optuna optimisation history"),)
# A copied PNG larger than this is downscaled (docs live in git; keep the repository small).
FIGURE_MAX_BYTES = 400_000
# Each downscaling pass shrinks the sides by this factor until the PNG fits.
DOWNSCALE_STEP = 0.8


class ReportError(LusaugError, RuntimeError):
    """A required input of the write-up is missing or unreadable."""


# ---------------------------------------------------------------- formatting


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def pct(x: Any) -> str:
    """A fraction as a percentage with one decimal ('n/a' when absent)."""
    if not _finite(x):
        return "n/a"
    s = f"{100 * x:.1f}"
    return "0.0" if s == "-0.0" else s


def signed_pct(x: Any) -> str:
    """A difference of fractions in percentage points, signed ('+1.2', '-0.5', '0.0')."""
    if not _finite(x):
        return "n/a"
    s = f"{100 * x:+.1f}"
    return "0.0" if s in ("+0.0", "-0.0") else s


def interval(value: Any, lo: Any, hi: Any, *, signed: bool = False) -> str:
    """'value [lo, hi]' in percent; the value signed for differences."""
    head = signed_pct(value) if signed else pct(value)
    if not (_finite(lo) and _finite(hi)):
        return head
    return f"{head} [{pct(lo)}, {pct(hi)}]"


def duration(seconds: float) -> str:
    """Seconds as '42.0 s', '3 min 05 s' or '1 h 07 min'."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    total = round(seconds)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------- inputs


def _read_json(path: Path, *, required: bool = False, hint: str = "") -> Any:
    if not path.exists():
        if required:
            raise ReportError(f"{path} not found{': ' + hint if hint else ''}")
        logger.warning("report: %s not found; its section says so", path)
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path} is not valid JSON: {exc}") from None


def _read_yaml(path: Path) -> Any:
    if not path.exists():
        logger.warning("report: %s not found; its section says so", path)
        return None
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ReportError(f"{path} is not valid YAML: {exc}") from None


def planned_settings(params: Params) -> list[str]:
    """'<strategy>-<arch>' of every setting the train stages produce for ``params``.

    The same plan as ``lusaug.models.evaluate.planned_runs`` (without its torch import).
    """
    t = params.train
    strategies = [
        *t.strategies,
        *t.tuned_strategies,
        *(SYNTHETIC_PREFIX + g for g in t.generators),
    ]
    return [f"{s}-{a}" for s in strategies for a in t.architectures]


def _check_settings_match(path: Path, present: set[str], params: Params) -> None:
    """A test.json whose settings differ from the params' plan is left over from another run."""
    planned = set(planned_settings(params))
    if present == planned:
        return
    raise ReportError(
        f"{path} does not match params.yaml (missing {sorted(planned - present)}, not planned "
        f"{sorted(present - planned)}): it is left over from a run with other params; finish "
        "`dvc repro` (stage evaluate) first"
    )


@dataclass
class RunOutputs:
    """The files of one finished run, parsed (None = absent)."""

    repo: Path
    params: Params
    test: dict[str, Any]
    comparison: dict[str, Any] | None
    split: dict[str, Any] | None
    ingest: dict[str, Any] | None
    validation: dict[str, Any] | None
    synthetic: dict[str, dict[str, Any]]  # generator -> metrics/synthetic_<G>.json
    unplanned_generators: list[str]  # synthetic_<G>.json present but G not in params: left out
    encoder: dict[str, Any] | None
    onnx: dict[str, Any] | None
    registered: dict[str, Any] | None
    tuned: dict[str, Any] | None

    @classmethod
    def load(cls, repo: Path) -> RunOutputs:
        params_path = repo / "params.yaml"
        if not params_path.exists():
            raise ReportError(f"{params_path} not found: --repo must be the run's repository")
        try:
            params = load_params(params_path)
        except ConfigError as exc:
            raise ReportError(
                f"{params_path} does not match this lusaug version's parameters ({exc}); "
                "run the report with the code the run used"
            ) from None
        test = _read_json(
            repo / "metrics" / "test.json",
            required=True,
            hint="the run has not finished its `evaluate` stage (run `dvc repro`)",
        )
        if not isinstance(test, dict) or not test.get("settings"):
            raise ReportError(f"{repo / 'metrics' / 'test.json'} holds no settings")
        _check_settings_match(repo / "metrics" / "test.json", set(test["settings"]), params)
        # generators of this run's params only: DVC leaves other generators' old files behind
        planned = {*params.train.generators, *params.generate.enabled}
        synthetic, unplanned = {}, []
        for path in sorted((repo / "metrics").glob("synthetic_*.json")):
            g = path.stem.removeprefix("synthetic_")
            if g in planned:
                synthetic[g] = _read_json(path)
            else:
                unplanned.append(g)
        return cls(
            repo=repo,
            params=params,
            test=test,
            comparison=_read_json(repo / "metrics" / "comparison.json"),
            split=_read_json(repo / "reports" / "split.json"),
            ingest=_read_json(repo / "reports" / "ingest.json"),
            validation=_read_json(repo / "metrics" / "validation.json"),
            synthetic=synthetic,
            unplanned_generators=unplanned,
            encoder=_read_json(repo / "metrics" / "encoder.json"),
            onnx=_read_json(repo / "reports" / "onnx_parity.json"),
            registered=_read_json(repo / "models" / "registered.json"),
            tuned=_read_yaml(repo / "params" / "tuned.yaml"),
        )

    # -- derived views

    @property
    def target(self) -> str:
        return self.params.base.target_class

    def settings(self) -> dict[tuple[str, str], dict[str, float]]:
        """(strategy, architecture) -> flat metrics of metrics/test.json."""
        out = {}
        for name, values in self.test["settings"].items():
            strategy, _, arch = name.rpartition("-")  # architecture names never contain '-'
            out[(strategy, arch)] = values
        return out

    def architectures(self) -> list[str]:
        present = {a for _, a in self.settings()}
        known = [a for a in self.params.train.architectures if a in present]
        return known + sorted(present - set(known))

    def strategies(self) -> list[str]:
        present = {s for s, _ in self.settings()}
        wanted = [*STRATEGY_ORDER, *(SYNTHETIC_PREFIX + g for g in self.params.train.generators)]
        known = [s for s in dict.fromkeys(wanted) if s in present]
        return known + sorted(present - set(known))

    def generators(self) -> list[str]:
        """Generators of this run's params (train.generators, then generate.enabled)."""
        p = self.params
        return list(dict.fromkeys([*p.train.generators, *p.generate.enabled]))

    def is_leaky(self, strategy: str) -> bool:
        if not strategy.startswith(SYNTHETIC_PREFIX):
            return False
        g = strategy.removeprefix(SYNTHETIC_PREFIX)
        spec = self.params.generate.generators.get(g)
        if spec is not None:
            return bool(spec.leaky)
        return bool((self.synthetic.get(g) or {}).get("leaky", False))

    def label(self, strategy: str) -> str:
        return f"{strategy} (leaky)" if self.is_leaky(strategy) else strategy

    def comparison_entry(self, strategy: str, arch: str) -> dict[str, Any] | None:
        return (self.comparison or {}).get(f"{strategy}-{arch}")


# ---------------------------------------------------------------- figures


def _lossless_compact(image: Any) -> Any:
    """Drop an all-opaque alpha channel and collapse grey RGB to L (matplotlib saves RGBA)."""
    from PIL import ImageChops

    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert("RGB" if image.mode == "RGBA" else "L")
    if image.mode == "RGB":
        r, g, b = image.split()
        if ImageChops.difference(r, g).getbbox() is None and (
            ImageChops.difference(g, b).getbbox() is None
        ):
            image = image.convert("L")
    return image


def copy_figure(src: Path, dst: Path, max_bytes: int = FIGURE_MAX_BYTES) -> Path | None:
    """Copy a PNG atomically, re-encoded losslessly when smaller and downscaled until it is at
    most ``max_bytes``; None when ``src`` does not exist."""
    if not src.is_file():
        return None
    from PIL import Image, UnidentifiedImageError

    with atomic_path(dst) as tmp:
        try:
            with Image.open(src) as im:
                image = _lossless_compact(im.copy())  # in memory: the file closes here
        except (OSError, UnidentifiedImageError):
            logger.warning("report: %s is not a readable image; copied as it is", src)
            image = None
        if image is not None:
            image.save(tmp, format="PNG", optimize=True)
        if image is None or tmp.stat().st_size >= src.stat().st_size:
            shutil.copyfile(src, tmp)
        if image is not None and tmp.stat().st_size > max_bytes:
            scale = math.sqrt(max_bytes / tmp.stat().st_size)
            while True:
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                image.resize(size, Image.Resampling.LANCZOS).save(tmp, format="PNG", optimize=True)
                if tmp.stat().st_size <= max_bytes or min(size) <= 1:
                    break
                scale *= DOWNSCALE_STEP
            logger.info("report: %s downscaled to %s px", src, size)
        tmp.chmod(0o644)  # mkstemp's 0600 is wrong for files meant to be shared
    return dst


class _Figures:
    """Copies figures into the figures folder and links them relative to the write-up."""

    def __init__(self, repo: Path, figures_dir: Path, out_md: Path) -> None:
        self.repo = repo
        self.dir = figures_dir
        self.md_dir = out_md.resolve().parent
        self.copied: list[Path] = []
        self.missing: list[Path] = []

    def add(self, src: Path, rel_dst: str) -> str | None:
        """Copy ``src`` to ``figures_dir/rel_dst``; return its link, or None when absent."""
        dst = copy_figure(src, self.dir / rel_dst)
        if dst is None:
            self.missing.append(src)
            return None
        self.copied.append(dst)
        return Path(os.path.relpath(dst.resolve(), self.md_dir)).as_posix()

    def shown(self, path: Path) -> str:
        """``path`` as the text names it: relative to the run's repository when inside it."""
        return (
            path.relative_to(self.repo).as_posix() if path.is_relative_to(self.repo) else str(path)
        )

    def image(self, src: Path, rel_dst: str, caption: str) -> list[str]:
        link = self.add(src, rel_dst)
        if link is None:
            return [f"_Figure not available: {self.shown(src)} is missing._", ""]
        return [f"![{caption}]({link})", "", f"*{caption}.*", ""]


# ---------------------------------------------------------------- sections


def _git_commit(repo: Path) -> str:
    try:
        sha = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git repository)"
    return f"`{sha}`" + (" (with uncommitted changes to tracked files)" if dirty else "")


def _header(run: RunOutputs, title: str) -> list[str]:
    p = run.params
    lines = [f"# {title}", ""]
    lines.append(
        "Generated by `lusaug report` from the outputs of a finished `dvc repro` run; every "
        "number below is read from the run's metrics and reports files."
    )
    lines.append("")
    data = f"profile `{p.base.profile}`"
    split, ingest = run.split or {}, run.ingest or {}
    totals = ingest.get("totals", {})
    n_frames = split.get("n_frames", totals.get("frames"))
    n_patients = split.get("n_patients", totals.get("patients"))
    videos = sum(t.get("videos", 0) for t in split.get("totals", {}).values()) or None
    if videos is None and ingest.get("files"):
        videos = len({f.get("video_id") for f in ingest["files"]})
    counts = ", ".join(
        f"{n} {noun}"
        for n, noun in ((n_frames, "frames"), (videos, "videos/images"), (n_patients, "patients"))
        if n is not None
    )
    data += f": {counts}" if counts else " (reports/split.json and reports/ingest.json missing)"
    per_class = totals.get("frames_per_class")
    if per_class:
        order = [c for c in p.base.classes if c in per_class]
        order += sorted(set(per_class) - set(order))
        data += " (frames per class: " + ", ".join(f"{c} {per_class[c]}" for c in order) + ")"
    if totals:
        data += (
            f"; ingest processed {totals.get('files_processed', 'n/a')} files, skipped "
            f"{totals.get('files_skipped', 'n/a')}, dropped {totals.get('frames_dropped', 'n/a')}"
            " frames"
        )
    info = run.test.get("test_split", {})
    models = "; ".join(
        f"{fam} = `{a.model}`" + (f" {json.dumps(a.kwargs)}" if a.kwargs else "")
        for fam, a in p.train.architectures.items()
    )
    ev = p.evaluate
    lines += [
        f"- **Data**: {data}.",
        (
            f"- **Test split**: {info.get('test_frames', 'n/a')} frames, "
            f"{info.get('test_videos', 'n/a')} videos, "
            f"{info.get('test_patients', 'n/a')} patients (read once, by `evaluate`)."
        ),
        f"- **Image size**: {p.base.image_size} px, grey.",
        f"- **Models** (timm, from scratch): {models}.",
        (
            f"- **Seeds**: {', '.join(str(s) for s in p.train.seeds)}; every setting is the mean "
            "over seeds."
        ),
        f"- **Epochs**: at most {p.train.epochs} (early stopping patience {p.train.patience}).",
        (
            f"- **Intervals**: {round(100 * info.get('ci', ev.ci))}% from "
            f"{info.get('bootstrap', ev.bootstrap)} bootstrap resamples of test patients"
            f"{' within each class' if info.get('stratified', ev.stratify) else ''}; differences "
            f"are paired with `{ev.baseline}` of the same architecture, seeds and draws."
        ),
        f"- **Code**: git commit {_git_commit(run.repo)}.",
        f"- **Written**: {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.",
        "",
    ]
    return lines


def _table3_metrics(target: str) -> list[tuple[str, str]]:
    return [
        ("accuracy", "Acc"),
        ("f1_macro", "macro-F1"),
        ("precision_macro", "macro-Prec"),
        (f"recall_{target}", f"{target} recall"),
        ("video_accuracy", "video Acc"),
    ]


def _leaky_note(run: RunOutputs, strategies: list[str]) -> list[str]:
    leaky = [s for s in strategies if run.is_leaky(s)]
    if not leaky:
        return []
    return [
        (
            f"(leaky) marks {', '.join(f'`{s}`' for s in leaky)}: its generator was trained on "
            "frames that include validation/test frames (`generate.generators.<G>.leaky`), as the "
            "study's 'all viral' DDPM was; it is not a fair comparison."
        ),
        "",
    ]


def _table3(run: RunOutputs) -> list[str]:
    settings, archs, strategies = run.settings(), run.architectures(), run.strategies()
    metrics = _table3_metrics(run.target)
    lines = ["## Test metrics per strategy (the study's Table 3 layout)", ""]
    lines.append(
        "Percent, mean over seeds; brackets are the patient-bootstrap interval. Columns are "
        "grouped by architecture family."
    )
    lines.append("")
    header = ["Strategy"] + [f"{a}: {lab}" for a in archs for _, lab in metrics]
    rows = []
    for s in strategies:
        row: list[Any] = [run.label(s)]
        for a in archs:
            v = settings.get((s, a))
            for m, _ in metrics:
                row.append(interval(v.get(m), v.get(f"{m}_lo"), v.get(f"{m}_hi")) if v else "-")
        rows.append(row)
    lines += _table(header, rows)
    lines += _leaky_note(run, strategies)
    test_patients = (
        (run.split or {}).get("classes", {}).get(run.target, {}).get("test", {}).get("patients")
    )
    if test_patients is not None and test_patients < 2:
        lines += [
            (
                f"Caution: the test split holds "
                f"{_plural(int(test_patients), run.target + ' patient')}; {run.target} recall is "
                "that patient's outcome, so its interval is degenerate and its differences are "
                "not estimable."
            ),
            "",
        ]

    lines += [f"## Paired differences with `{run.params.evaluate.baseline}`", ""]
    if run.comparison is None:
        return [*lines, "Not available: metrics/comparison.json is missing.", ""]
    lines.append(
        "Difference in percentage points, the same seeds and bootstrap draws on both sides, "
        "followed by the verdict of metrics/comparison.json ('better'/'worse' when the interval "
        "excludes 0, 'not significant' when it spans 0, 'not estimable' when the class has too "
        "few test patients for an interval). The last column is the macro-F1 difference per "
        "training seed."
    )
    lines.append("")
    header = ["Strategy", "Arch", *(f"Δ {lab}" for _, lab in metrics), "Δ macro-F1 per seed"]
    rows = []
    for s in strategies:
        for a in archs:
            e = run.comparison_entry(s, a)
            if e is None:
                continue
            cells = []
            for m, _ in metrics:
                d = e.get(m)
                if not isinstance(d, dict):
                    cells.append("n/a")
                    continue
                text = interval(d.get("diff"), d.get("lo"), d.get("hi"), signed=True)
                cells.append(f"{text} — {d['verdict']}" if d.get("verdict") else text)
            seeds = ", ".join(signed_pct(x) for x in e.get("seed_diffs_f1_macro", []))
            rows.append([run.label(s), a, *cells, seeds or "n/a"])
    if not rows:
        return [*lines, "No strategy besides the baseline was compared.", ""]
    return lines + _table(header, rows)


def _reference(run: RunOutputs, reference: dict[str, Any]) -> list[str]:
    settings, archs = run.settings(), run.architectures()
    models = reference.get("models", {})
    frames = reference.get("test_frames", {})
    src = reference.get("source", "the study")
    lines = ["## The study's numbers beside ours", ""]
    split_info = run.test.get("test_split", {})
    per_class = ""
    if run.split:
        per_class = (
            " ("
            + ", ".join(
                f"{c} {run.split['classes'].get(c, {}).get('test', {}).get('frames', 0)}"
                for c in run.params.base.classes
            )
            + ")"
        )
    lines.append(
        f"Reference values from {src}: {sum(frames.values())} test frames ("
        + ", ".join(f"{c} {n}" for c, n in frames.items())
        + f"). Ours: {split_info.get('test_frames', 'n/a')} test frames{per_class}, point "
        "estimates (mean over seeds). The data version, the frames and the scale differ "
        "(the study: 224 px, "
        + " and ".join(models.values())
        + f" on a GPU; ours: {run.params.base.image_size} px, "
        + " and ".join(f"`{a.model}`" for a in run.params.train.architectures.values())
        + " on CPU), so read the two side by side for direction, not as a replication. The "
        "study reports F1 and precision without naming the average; ours are macro averages."
    )
    lines.append("")
    header = [
        "Study setting",
        "Our strategy",
        "Family",
        "Acc study",
        "Acc ours",
        "F1 study",
        "macro-F1 ours",
        "Prec study",
        "macro-Prec ours",
    ]
    rows, notes = [], []
    for ref in reference.get("settings", []):
        s = ref["strategy"]
        if ref.get("note"):
            notes.append(f"{ref['label']}: {ref['note']}.")
        for fam, values in ref.get("values", {}).items():
            ours = settings.get((s, fam)) if fam in archs else None
            row: list[Any] = [f"{ref['label']} ({models.get(fam, fam)})", run.label(s), fam]
            for m in ("accuracy", "f1_macro", "precision_macro"):
                study = values.get(m)
                row.append(f"{study:.2f}" if study is not None else "-")
                row.append(pct(ours.get(m)) if ours else "not run")
            rows.append(row)
    lines += _table(header, rows)
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    return lines


def _evaluate_figures(run: RunOutputs, figs: _Figures) -> list[str]:
    lines = ["## Figures of the evaluation", ""]
    src_dir = run.repo / "plots" / "evaluate" / "figures"
    for name, caption in EVALUATE_FIGURES:
        name, caption = name.format(target=run.target), caption.format(target=run.target)
        lines += figs.image(src_dir / name, name, caption)
    return lines


def _kid_text(kid: Any) -> str:
    if not isinstance(kid, dict) or not _finite(kid.get("mean")):
        return "n/a"
    text = f"{kid['mean']:.3f}"
    if _finite(kid.get("std")):
        text += f" ± {kid['std']:.3f}"
    return text


def _generators(run: RunOutputs, figs: _Figures) -> list[str]:
    lines = ["## Generators", ""]
    names = run.generators()
    if not run.synthetic:
        planned = ", ".join(f"`{g}`" for g in names) or "none"
        return [
            *lines,
            (
                "Not available: no metrics/synthetic_<G>.json in this run (generators planned by "
                f"params: {planned})."
            ),
            "",
        ]
    lines.append(
        "Per generator: its training set, candidates sampled, candidates kept by the quality "
        "filter (pixel std and grey-level entropy) and the memorisation check, the share of "
        "candidates flagged as near-copies of training frames, and KID/FID of the kept samples "
        "against the real training frames of the class (lower is closer). The real-validation "
        "references score real held-out frames the same way."
    )
    lines.append("")
    header = [
        "Generator",
        "Training set",
        "Leaky",
        "Candidates",
        "Kept",
        "Rejected (low std / low entropy / memorised)",
        "Memorisation rate (real val ref.)",
        "KID ± std (real val ref.)",
        "FID",
    ]
    rows, notes, caveats = [], [], []
    for g in names:
        m = run.synthetic.get(g)
        if m is None:
            notes.append(f"`{g}`: metrics/synthetic_{g}.json is missing (stage filter@{g}).")
            continue
        rej = m.get("rejected_by_reason", {})
        mem = m.get("memorisation") or {}
        kid_ref = m.get("kid_real_val_reference")
        fid = m.get("fid")
        train_set = f"{m.get('train_set', 'n/a')}: {m.get('train_frames', 'n/a')} frames"
        if m.get("train_patients") is not None:
            train_set += f" / {_plural(int(m['train_patients']), 'patient')}"
        rows.append(
            [
                f"`{g}` ({m.get('kind', 'n/a')})",
                train_set,
                "yes" if m.get("leaky") else "no",
                m.get("candidates", "n/a"),
                m.get("kept", "n/a"),
                (
                    f"{m.get('rejected', 'n/a')} ({rej.get('low_std', 0)} / "
                    f"{rej.get('low_entropy', 0)} / {rej.get('memorised', 0)})"
                ),
                f"{pct(mem.get('rate'))}% ({pct(mem.get('real_val_rate'))}%)",
                f"{_kid_text(m.get('kid'))} ({_kid_text(kid_ref)})",
                f"{fid:.1f}" if _finite(fid) else "n/a",
            ]
        )
        for note in m.get("train_notes", []):
            notes.append(f"`{g}`: {note}.")
        if m.get("kid_reason"):
            notes.append(f"`{g}`: no KID: {m['kid_reason']}.")
        if m.get("leaky") and m.get("leakage"):
            notes.append(f"`{g}`: {m['leakage']}.")
        if m.get("fid_caveat") and m["fid_caveat"] not in caveats:
            caveats.append(m["fid_caveat"])
    if rows:
        lines += _table(header, rows)
    enc = run.encoder or {}
    if _finite(enc.get("val_balanced_accuracy")):
        notes.append(
            "KID, FID and feature-space memorisation use the domain encoder of "
            f"metrics/encoder.json ({enc.get('num_features', 'n/a')} features, trained on "
            f"{enc.get('train_frames', 'n/a')} training frames of every class, validation "
            f"balanced accuracy {pct(enc['val_balanced_accuracy'])}%)."
        )
    else:
        first = next(iter(run.synthetic.values()), None) or {}
        if first.get("feature_space"):
            notes.append(
                f"KID, FID and feature-space memorisation use the {first['feature_space']}."
            )
    notes += [f"FID caveat: {c}." for c in caveats]
    if run.unplanned_generators:
        left_out = ", ".join(f"metrics/synthetic_{g}.json" for g in run.unplanned_generators)
        notes.append(f"Left out (generator not in this run's params): {left_out}.")
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    for g in names:
        if g not in run.synthetic:
            continue
        src = run.repo / "plots" / "synthetic" / g
        real = figs.add(src / "real_grid.png", f"{g}/real_grid.png")
        kept = figs.add(src / "kept_grid.png", f"{g}/kept_grid.png")
        lines += [f"### `{g}`", ""]
        if real or kept:
            lines += _table(
                ["real frames", "kept synthetic"],
                [
                    [
                        f"![real frames]({real})" if real else "missing",
                        f"![kept synthetic]({kept})" if kept else "missing",
                    ]
                ],
            )
        else:
            lines += [
                (
                    f"_Sample grids not available: {figs.shown(src)} has no real_grid.png or "
                    "kept_grid.png._"
                ),
                "",
            ]
        lines += figs.image(
            src / "filter_scatter.png",
            f"{g}/filter_scatter.png",
            f"`{g}`: pixel std vs grey-level entropy of the candidates, with the filter "
            "thresholds",
        )
        lines += figs.image(
            src / "closest_pairs.png",
            f"{g}/closest_pairs.png",
            f"`{g}`: candidates and their closest training frames",
        )
    return lines


def _tuning(run: RunOutputs, figs: _Figures) -> list[str]:
    lines = ["## Tuning (Optuna)", ""]
    t = run.tuned
    if not isinstance(t, dict):
        return [*lines, "Not available: params/tuned.yaml is missing (stage tune).", ""]
    study = t.get("study") or {}
    metric = run.params.tune.metric
    best = study.get(metric)
    lines.append(
        f"Study `{study.get('name', 'n/a')}`: {study.get('trials', 'n/a')} trials "
        f"({study.get('complete', 'n/a')} complete, {study.get('pruned', 'n/a')} pruned); best "
        f"trial {study.get('best_trial', 'n/a')} with {metric} "
        f"{f'{best:.3f}' if _finite(best) else 'n/a'}"
        + ("" if study.get("feasible", True) else " (no trial met the constraint)")
        + ". The tuned values are what `class_weights_tuned` trains with."
    )
    lines.append("")
    weights = t.get("class_weights") or {}
    lr = t.get("lr")
    if weights:
        lines += _table(
            [*weights, "learning rate"],
            [[*(f"{w:.2f}" for w in weights.values()), f"{lr:.3g}" if _finite(lr) else "n/a"]],
        )
    flt = t.get("filter") or {}
    if flt:
        lines.append(
            f"Filter thresholds: pixel std > {flt.get('min_std', 'n/a')}, entropy > "
            f"{flt.get('min_entropy', 'n/a')} bits ("
            + ("tuned" if flt.get("tuned") else "not tuned: the params values")
            + ")."
        )
        lines.append("")
    for name, caption in TUNE_FIGURES:
        lines += figs.image(run.repo / "plots" / "tune" / name, f"tune/{name}", caption)
    return lines


def _split(run: RunOutputs) -> list[str]:
    lines = ["## Data split", ""]
    s = run.split
    if not isinstance(s, dict):
        return [*lines, "Not available: reports/split.json is missing (stage split).", ""]
    settings = s.get("settings", {})
    lines.append(
        f"Split mode {settings.get('mode', 'n/a')}, grouped by "
        f"{settings.get('grouping', 'patient')}, stratified by {settings.get('stratify', 'n/a')}"
        f", fractions {json.dumps(settings.get('fractions', {}))}. Cells: patients / videos / "
        "frames."
    )
    lines.append("")
    splits = ("train", "val", "test")
    classes = [c for c in run.params.base.classes if c in s.get("classes", {})]
    classes += sorted(set(s.get("classes", {})) - set(classes))

    def cell(d: dict) -> str:
        return f"{d.get('patients', 0)} / {d.get('videos', 0)} / {d.get('frames', 0)}"

    rows = [[c, *(cell(s["classes"][c].get(sp, {})) for sp in splits)] for c in classes]
    if s.get("totals"):
        rows.append(["**all**", *(cell(s["totals"].get(sp, {})) for sp in splits)])
    lines += _table(["Class", *splits], rows)
    linked = s.get("linked_patients") or {}
    if linked.get("n_groups"):
        lines.append(
            f"Near-identical frames linked {linked.get('n_linked_patients')} patients into "
            f"{linked['n_groups']} groups (pHash of {linked.get('hash_size')}² bits, distance "
            f"≤ {linked.get('max_distance')}); each group was kept in one split:"
        )
        lines.append("")
        lines += [_linked_group(grp) for grp in linked.get("groups", [])] + [""]
    elif linked:
        lines += ["No patients were linked by near-identical frames.", ""]
    if s.get("multi_class_patients"):
        lines += [
            "Patients with frames of more than one class (their frames stay in one split): "
            + ", ".join(map(str, s["multi_class_patients"]))
            + ".",
            "",
        ]
    return lines


def _linked_group(group: Any) -> str:
    """One bullet per linked group: its patients, split and why (split.json's own reasons)."""
    if not isinstance(group, dict):  # an older split.json: a bare list of patient ids
        return f"- patients {', '.join(map(str, group))}"
    patients = ", ".join(map(str, group.get("patients", [])))
    split = ", ".join(map(str, group.get("split", [])))
    reasons = "; ".join(str(link.get("reason", "")) for link in group.get("links", []))
    return f"- patients {patients} → {split}: {reasons}".rstrip(": ")


def _validation(run: RunOutputs) -> list[str]:
    lines = ["## Data validation (Great Expectations)", ""]
    v = run.validation
    if not isinstance(v, dict):
        return [*lines, "Not available: metrics/validation.json is missing (stage validate).", ""]
    ok = v.get("success")
    lines.append(
        f"{'Passed' if ok else 'FAILED'}: {v.get('successful_expectations', 'n/a')} of "
        f"{v.get('evaluated_expectations', 'n/a')} expectations met on "
        f"{v.get('n_frames', 'n/a')} frames. Data Docs: `{v.get('data_docs', 'n/a')}` "
        "(DVC-cached, not in git)."
    )
    lines.append("")
    suites: dict[str, list[int]] = {}
    failed = []
    for e in v.get("expectations", []):
        passed_total = suites.setdefault(e.get("suite", "?"), [0, 0])
        passed_total[1] += 1
        if e.get("success"):
            passed_total[0] += 1
        else:
            failed.append(f"{e.get('suite')}: {e.get('expectation')} ({e.get('column')})")
    if suites:
        lines += _table(
            ["Suite", "Passed / total"], [[k, f"{p} / {n}"] for k, (p, n) in suites.items()]
        )
    if failed:
        lines += ["Failed expectations:", ""] + [f"- {f}" for f in failed] + [""]
    if v.get("skipped_suites"):
        lines += [f"- skipped suite {k}: {r}" for k, r in v["skipped_suites"].items()] + [""]
    return lines


def _registry(run: RunOutputs) -> list[str]:
    lines = ["## Registry and export", ""]
    r = run.registered
    if isinstance(r, dict):
        iv = r.get("interval") or [None, None]
        lines.append(
            f"- Registered `{r.get('name', 'n/a')}` version {r.get('version', 'n/a')} "
            f"(alias `{r.get('alias', 'n/a')}`): winner `{r.get('run_name', 'n/a')}` by "
            f"{r.get('metric', 'n/a')} {interval(r.get('value'), iv[0], iv[1])} %"
            + (
                " (an existing version with the same checkpoint was reused)"
                if r.get("reused")
                else ""
            )
            + "."
        )
    else:
        lines.append("- Not available: models/registered.json is missing (stage register).")
    o = run.onnx
    if isinstance(o, dict):
        par = o.get("parity") or {}
        onnx = o.get("onnx") or {}
        lines.append(
            f"- ONNX (opset {onnx.get('opset', 'n/a')}, {onnx.get('exporter', 'n/a')} exporter): "
            f"parity {'passed' if par.get('passed') else 'FAILED'} on {par.get('frames', 'n/a')} "
            f"{par.get('split', '')} frames, max |logit difference| "
            f"{par.get('max_abs_diff', float('nan')):.2e} (tolerance {par.get('atol', 'n/a')}), "
            f"argmax agreement {pct(par.get('argmax_agreement'))}%, accuracy torch "
            f"{pct(par.get('accuracy_torch'))}% / ONNX {pct(par.get('accuracy_onnx'))}%."
        )
        q = o.get("int8")
        if isinstance(q, dict):
            lines.append(
                f"- int8 ({q.get('mode', 'n/a')}): accuracy {pct(q.get('accuracy_int8'))}%, "
                f"{signed_pct(q.get('accuracy_delta'))} points against fp32, argmax agreement "
                f"with fp32 {pct(q.get('argmax_agreement_with_fp32'))}%."
            )
        else:
            lines.append("- int8: no quantised variant in this run.")
    else:
        lines.append("- ONNX parity: not available (reports/onnx_parity.json is missing).")
    return [*lines, ""]


# ---------------------------------------------------------------- costs


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


def _item_label(argv: list[str]) -> str:
    flags = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i].startswith("--")}
    if "--strategy" in flags:
        return "-".join(flags[k] for k in ("--strategy", "--arch", "--seed") if k in flags)
    return argv[0] if argv and "/" not in argv[0] and not argv[0].startswith("-") else ""


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
                slowest=_item_label(slowest[1]) if len(recs) > 1 else "",
            )
        )
    return CostSummary(
        stages=stages,
        first_start=min(r[2] for r in records),
        last_end=max(r[2] + r[3] for r in records),
        bad_lines=bad,
    )


def _costs(costs_log: Path | None) -> list[str]:
    lines = ["## Runtime and peak memory per stage", ""]
    if costs_log is None or not costs_log.is_file():
        where = f" ({costs_log} does not exist)" if costs_log else ""
        return [
            *lines,
            (
                f"Not available: no stage-cost log{where}. Run `dvc repro` with "
                "`LUSAUG_STAGE_COSTS=logs/stage_costs.jsonl` set to record one line per stage."
            ),
            "",
        ]
    c = read_stage_costs(costs_log)
    utc = dt.UTC

    def when(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, utc).strftime("%Y-%m-%d %H:%M UTC")

    total = sum(s.total_wall_s for s in c.stages)
    lines.append(
        f"From `{costs_log.name}`: one record per pipeline process (matrix stages: one per "
        "item), wall time from process start (imports included) and peak resident memory (the "
        "process or its largest child). The whole run took "
        f"{duration(c.wall_clock_s)} of wall clock ({when(c.first_start)} to "
        f"{when(c.last_end)}, including DVC's own work between stages and any pause between "
        f"resumed runs); the stages themselves add up to {duration(total)}."
    )
    lines.append("")
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
    lines += _table(["Script", "Processes", "Total wall", "Longest (item)", "Peak RSS (MB)"], rows)
    if c.bad_lines:
        lines += [f"{_plural(c.bad_lines, 'unreadable line')} skipped.", ""]
    return lines


# ---------------------------------------------------------------- conclusion


def _verdict_groups(run: RunOutputs, arch: str, metric: str) -> list[str]:
    """'label: items' phrases sorting every strategy by the verdict of its difference."""
    groups: dict[str, list[str]] = {"better": [], "worse": [], "within noise": []}
    by_verdict: dict[
        str, list[str]
    ] = {}  # not estimable / undefined: grouped by the verbatim text
    for s in run.strategies():
        d = (run.comparison_entry(s, arch) or {}).get(metric)
        if not isinstance(d, dict):
            continue
        verdict = str(d.get("verdict") or "no verdict")
        text = f"{run.label(s)} ({interval(d.get('diff'), d.get('lo'), d.get('hi'), signed=True)})"
        if verdict in ("better", "worse"):
            groups[verdict].append(text)
        elif verdict == "not significant":
            groups["within noise"].append(text)
        else:
            by_verdict.setdefault(verdict, []).append(run.label(s))
    if not any(groups.values()) and not by_verdict:
        return []
    parts = [
        f"{label}: {'; '.join(items) if items else 'none'}" for label, items in groups.items()
    ]
    parts += [f"{verdict}: {', '.join(items)}" for verdict, items in by_verdict.items()]
    return parts


def _conclusion(run: RunOutputs, conclusion: Path | None) -> list[str]:
    lines = ["## Conclusion", ""]
    if conclusion is not None:
        if not conclusion.is_file():
            raise ReportError(f"conclusion file {conclusion} not found")
        lines += [conclusion.read_text().rstrip("\n"), ""]
    else:
        lines += ["_No written conclusion was supplied (`lusaug report --conclusion FILE`)._", ""]
    lines += ["### What the intervals say", ""]
    if run.comparison is None:
        return [*lines, "Not available: metrics/comparison.json is missing.", ""]
    baseline = run.params.evaluate.baseline
    lines.append(
        f"Generated from metrics/comparison.json: each strategy against `{baseline}` of the same "
        "architecture, in percentage points; 'better'/'worse' means the interval excludes 0, "
        "'within noise' that it spans 0; 'not estimable' verdicts are quoted as evaluate wrote "
        "them."
    )
    lines.append("")
    target = run.target
    for arch in run.architectures():
        for metric, name in (("f1_macro", "macro-F1"), (f"recall_{target}", f"{target} recall")):
            parts = _verdict_groups(run, arch, metric)
            if parts:
                lines.append(f"- **{arch}, {name}**: " + ". ".join(parts) + ".")
        flips = [
            run.label(s)
            for s in run.strategies()
            if (e := run.comparison_entry(s, arch))
            and len({math.copysign(1, d) for d in e.get("seed_diffs_f1_macro", []) if d}) > 1
        ]
        if flips:
            lines.append(
                f"- **{arch}, seeds**: the macro-F1 difference changes sign between training "
                f"seeds for {', '.join(flips)}: the seed matters as much as the strategy there."
            )
    return [*lines, ""]


# ---------------------------------------------------------------- entry point


def build_study_report(
    repo: Path,
    out_md: Path,
    figures_dir: Path,
    *,
    title: str,
    costs_log: Path | None,
    conclusion: Path | None,
    reference: dict | None,
) -> Path:
    """Write the study write-up for the finished run in ``repo``; returns ``out_md``.

    Args:
        repo: repository holding the run's outputs (params.yaml, metrics/, reports/, plots/...).
        out_md: markdown file to write (atomically).
        figures_dir: folder the selected figures are copied to (linked relative to ``out_md``).
        title: first heading ("" = derived from the profile).
        costs_log: $LUSAUG_STAGE_COSTS JSONL of the run (None or absent = section says so).
        conclusion: markdown file included verbatim under "Conclusion" (None = none).
        reference: the study's numbers (None = ``STUDY_REFERENCE``).

    Raises:
        ReportError: params.yaml or metrics/test.json missing or unreadable, or a given
            conclusion file missing.
    """
    repo, out_md, figures_dir = Path(repo), Path(out_md), Path(figures_dir)
    if conclusion is not None and not Path(conclusion).is_file():
        raise ReportError(f"conclusion file {conclusion} not found")
    run = RunOutputs.load(repo)
    figs = _Figures(repo, figures_dir, out_md)
    title = title or f"Results of the `{run.params.base.profile}` profile run"
    lines: list[str] = []
    lines += _header(run, title)
    lines += _table3(run)
    lines += _reference(run, STUDY_REFERENCE if reference is None else reference)
    lines += _evaluate_figures(run, figs)
    lines += _generators(run, figs)
    lines += _tuning(run, figs)
    lines += _split(run)
    lines += _validation(run)
    lines += _registry(run)
    lines += _costs(costs_log)
    lines += _conclusion(run, conclusion)
    text = "\n".join(lines).rstrip("\n") + "\n"
    with atomic_path(out_md) as tmp:
        tmp.write_text(text)
        tmp.chmod(0o644)
    if figs.missing:
        logger.warning("report: %d figure(s) missing: %s", len(figs.missing), figs.missing)
    logger.info("report: wrote %s with %d figures in %s", out_md, len(figs.copied), figures_dir)
    return out_md
