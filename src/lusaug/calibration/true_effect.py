"""The oracle's true effect, measured where patients are cheap: many new phantom patients.

Coverage needs the number the pipeline's intervals estimate. For one replicate the pipeline
compares, per rare-class test patient, a classifier trained with the oracle's images
(``synthetic-oracle``) and one trained without them (its control), averaged over seeds; over
replicates the training data, the oracle's images and the seeds all vary. So the true effect is
the expectation of that per-patient difference over

- independent training sets: a phantom of the pipeline's patient counts per fold (its own seed),
  the fold's training and validation patients (:class:`TrueEffectDesign`);
- the oracle's images for that training set (fresh patients of that phantom, as the generator
  draws them; the filter is not applied: pass as ``oracle_images`` what the filter keeps);
- classifier seeds;
- a large test set of new patients of every class, shared by all training sets (fresh patients
  of their own stream, disjoint from every training and oracle patient).

:func:`estimate_true_effect` trains both strategies through the training stage's own
``prepare_run``/``train_classifier`` (the strategy code decides what they train on), scores them
on the test set and returns, per endpoint, the mean difference and its standard error over the
independent training sets (the unit that is independent; seeds and test patients are averaged
within it).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from sklearn.metrics import f1_score, roc_auc_score
from tqdm import tqdm

from lusaug.core.config import Params
from lusaug.data.phantom import plan_phantom
from lusaug.data.phantom.fresh import PatientFrames, fresh_patient, render_fresh_frames
from lusaug.data.phantom.fresh import render_patients as render
from lusaug.models.classifier import load_classifier
from lusaug.models.frame_sets import predict_proba
from lusaug.models.run_setup import FoldData, RunSpec, prepare_run
from lusaug.models.strategies import KEPT_DIR, FoldInputs
from lusaug.models.train_loop import train_classifier

logger = logging.getLogger(__name__)

ENDPOINTS = ("rare_recall_patient_mean", "rare_recall_pooled", "f1_macro", "rare_auroc")
SPLITS_FILE = "splits.csv"


@dataclass(frozen=True)
class TrueEffectDesign:
    """What one fold of the pipeline trains on, and how many times to redraw it."""

    train_patients: Mapping[str, int]  # per class: the fold's training patients
    val_patients: Mapping[str, int]  # per class: its validation patients (early stopping)
    test_patients: Mapping[str, int]  # per class: new patients of the large test set
    training_sets: int  # independent training sets (phantom seeds)
    oracle_images: int  # oracle images per training set (what the filter keeps in a fold)
    seeds: tuple[int, ...]  # classifier seeds per training set
    architecture: str  # a key of train.architectures
    treatment: str = "synthetic-oracle"
    control: str = "baseline"  # oversample_matched-oracle once that strategy exists


def design_from_split(split: pd.DataFrame, **kwargs: Any) -> TrueEffectDesign:
    """A design whose training and validation patients per class are those of a fold file."""
    counts = split.groupby(["split", "label"])["patient_id"].nunique()

    def per_class(name: str) -> dict[str, int]:
        part = counts[name] if name in counts.index.get_level_values(0) else pd.Series(dtype=int)
        return {str(k): int(v) for k, v in part.items()}

    return TrueEffectDesign(
        train_patients=per_class("train"), val_patients=per_class("val"), **kwargs
    )


def _write(frames: PatientFrames, root: Path, split: str, rel_dir: str) -> list[dict]:
    rows = []
    for img, rec in zip(frames.images, frames.table.to_dict("records"), strict=True):
        rel = f"{rel_dir}/{rec['label']}/{rec['video_id']}_{rec['frame_index']:05d}.png"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / rel)
        rows.append({**rec, "path": rel, "split": split})
    return rows


def _training_set(params: Params, design: TrueEffectDesign, seed: int, root: Path) -> Path:
    """Render one training set (train + val patients of a phantom with ``seed``) into
    ``root``; returns its splits.csv."""
    classes = params.base.classes
    counts = {c: design.train_patients.get(c, 0) + design.val_patients.get(c, 0) for c in classes}
    ph = dataclasses.replace(params.phantom, seed=seed, patients=counts)
    plan = plan_phantom(dataclasses.replace(params, phantom=ph))
    rows = []
    for label in classes:
        mine = [pp for pp in plan if pp.label == label]
        n_train = design.train_patients.get(label, 0)
        rows += _write(render(mine[:n_train], params), root, "train", "frames")
        rows += _write(render(mine[n_train:], params), root, "val", "frames")
    path = root / SPLITS_FILE
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _test_set(params: Params, design: TrueEffectDesign, seed: int) -> PatientFrames:
    patients = [
        fresh_patient(seed, params, label, "test", 0, i)
        for label in params.base.classes
        for i in range(design.test_patients.get(label, 0))
    ]
    return render(patients, params)


def _scores(probs: np.ndarray, test: PatientFrames, classes: list[str], target: str) -> dict:
    labels = np.array([classes.index(c) for c in test.table["label"]])
    pred = probs.argmax(1)
    rare = classes.index(target)
    is_rare = labels == rare
    hit = pd.Series(pred[is_rare] == rare).groupby(test.table["patient_id"][is_rare].to_numpy())
    both = len(set(is_rare)) == 2
    return {
        "rare_recall_patient_mean": float(hit.mean().mean()),
        "rare_recall_pooled": float((pred[is_rare] == rare).mean()),
        "f1_macro": float(f1_score(labels, pred, average="macro", labels=range(len(classes)))),
        "rare_auroc": float(roc_auc_score(is_rare, probs[:, rare])) if both else math.nan,
    }


def _run(
    spec: RunSpec, data: FoldData, inputs: FoldInputs, params: Params, out: Path, test: Any
) -> tuple[np.ndarray, dict[str, int]]:
    """Train one run with the training stage's code; its test-set probabilities and what it
    trained on (rare-class frames, synthetic frames)."""
    setup = prepare_run(spec, data, params.train, params.base, inputs)
    result = train_classifier(setup, out, params.train, params.base.classes, progress=False)
    model, meta = load_classifier(result.checkpoint)
    probs = predict_proba(model, test, meta.mean, meta.std, params.train.eval_batch_size)
    rare = params.base.classes.index(params.base.target_class)
    return probs, {"train_rare": int(setup.counts[rare]), "synthetic": setup.n_synthetic}


def estimate_true_effect(
    params: Params,
    design: TrueEffectDesign,
    seed: int,
    work_dir: Path | str,
    progress: bool = True,
) -> dict[str, Any]:
    """Mean difference treatment - control on new patients, per endpoint, with its SE.

    Args:
        params: base, phantom, import, frames (to render like the data) and train (to train).
        design: the fold's sizes, the test set, the repetitions and the two strategies.
        seed: derives every training set's phantom seed and the test patients.
        work_dir: scratch folder for frames and runs.
        progress: show a progress bar over training sets.

    Returns:
        ``effects`` (endpoint -> {mean, se, n_training_sets}), ``runs`` (one row per training
        set x seed: both strategies' scores and their training counts), the design and seed.
    """
    work = Path(work_dir)
    classes, target = params.base.classes, params.base.target_class
    test = _test_set(params, design, seed)
    test_images = torch.from_numpy(test.images[:, None])
    root_ss = np.random.SeedSequence(seed)
    set_seeds = [int(s.generate_state(1)[0] % 2**31) for s in root_ss.spawn(design.training_sets)]
    rows = []
    for t, set_seed in enumerate(tqdm(set_seeds, desc="true effect", disable=not progress)):
        root = work / f"set-{t:03d}"
        splits_csv = _training_set(params, design, set_seed, root)
        oracle = render_fresh_frames(set_seed, params, target, "oracle", 0, design.oracle_images)
        kept = root / "synthetic" / "oracle" / KEPT_DIR
        kept.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(oracle.images):
            Image.fromarray(img).save(kept / f"cand_{i:05d}.png")
        data = FoldData.load(splits_csv, params.base)
        inputs = FoldInputs(synthetic_dir=root / "synthetic")
        for s in design.seeds:
            row: dict[str, Any] = {"training_set": t, "phantom_seed": set_seed, "seed": s}
            for role, strategy in (("treatment", design.treatment), ("control", design.control)):
                spec = RunSpec(strategy, design.architecture, s)
                out = root / "runs" / f"{role}-{spec.name}"
                probs, info = _run(spec, data, inputs, params, out, test_images)
                scores = _scores(probs, test, classes, target)
                row.update({f"{role}_{k}": v for k, v in {**scores, **info}.items()})
            rows.append(row)
    runs = pd.DataFrame(rows)
    effects = {}
    for ep in ENDPOINTS:
        diff = (runs[f"treatment_{ep}"] - runs[f"control_{ep}"]).groupby(runs["training_set"])
        per_set = diff.mean().to_numpy()
        n = len(per_set)
        se = float(per_set.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        effects[ep] = {"mean": float(per_set.mean()), "se": se, "n_training_sets": n}
    return {
        "effects": effects,
        "runs": runs,
        "design": dataclasses.asdict(design),
        "seed": seed,
        "test_patients": sorted(set(test.table["patient_id"])),
        "test_frames": len(test.images),
    }
