"""Negative and positive controls: candidate sets whose verdict is known before any measure runs.

| control | frames | claims | must FAIL |
|---|---|---|---|
| ``blur`` | rare-class training frames, Gaussian-blurred | rare | the distance references and C2ST |
| ``speckle`` | pure speckle: a smoothed Gamma field at the real frames' grey levels, no anatomy | rare | the distance references and C2ST |
| ``other_class`` | training frames of the other classes | rare | TSTR and the class-distance reference |
| ``copies`` | exact copies of rare-class training frames | rare | memorisation |
| ``held_out_patient`` | the rare-class VALIDATION patient(s): real, nobody trained on them | rare | nothing: must PASS every target |

The negative controls stand for a generator trained on the rare class's training patients, so
their ``source_patients`` are those patients (as a real generator's would be).
"""

from __future__ import annotations

import cv2
import numpy as np

from lusaug.core.config.features_sections import ControlParams
from lusaug.features.frame_table import FeaturesError
from lusaug.features.measures import Candidate, FidelityContext
from lusaug.features.probe import Extractor

POSITIVE = "held_out_patient"
NEGATIVE = ("blur", "speckle", "other_class", "copies")
CONTROLS = (*NEGATIVE, POSITIVE)
# The measures each negative control exists to test (the list).
DISTANCE_MEASURES = ("kid_to_class", "prdc_precision", "prdc_coverage", "c2st_auroc")
MEANT_TO_CATCH: dict[str, tuple[str, ...]] = {
    "blur": DISTANCE_MEASURES,
    "speckle": DISTANCE_MEASURES,
    "other_class": ("tstr_auroc", "class_margin"),
    "copies": ("copy_rate_pixel", "copy_rate_ssl"),
}


def _pick(n_frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` indices: without replacement when there are enough frames."""
    if n_frames == 0:
        raise FeaturesError("a control needs at least one source frame")
    return np.sort(rng.choice(n_frames, size=size, replace=size > n_frames))


def blurred(images: np.ndarray, sigma: float) -> np.ndarray:
    return np.stack([cv2.GaussianBlur(im, (0, 0), sigma) for im in images])


def speckle_noise(like: np.ndarray, n: int, cfg: ControlParams, rng: np.random.Generator):
    """``n`` frames of fully developed speckle: Gamma(looks) intensity, correlated over
    ``speckle_smooth`` px, matched to the mean and std of ``like``'s grey levels."""
    h, w = like.shape[1:]
    field = rng.gamma(cfg.speckle_looks, 1.0 / cfg.speckle_looks, size=(n, h, w))
    if cfg.speckle_smooth > 0:
        field = np.stack([cv2.GaussianBlur(f, (0, 0), cfg.speckle_smooth) for f in field])
    field = (field - field.mean()) / max(field.std(), 1e-12)
    target = like.astype(np.float64)
    out = field * target.std() + target.mean()
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def negative_controls(
    ctx: FidelityContext, extractor: Extractor, cfg: ControlParams
) -> list[Candidate]:
    """The four negative controls, built from the fold's training frames."""
    rng = np.random.default_rng(cfg.seed)
    rare = ctx.train.of_class(ctx.rare)
    others = ctx.train.where(ctx.train.labels != ctx.rare)
    sources = frozenset(rare.patients)
    copies = rare.images[_pick(len(rare.images), min(cfg.size, len(rare.images)), rng)]
    images = {
        "blur": blurred(rare.images[_pick(len(rare.images), cfg.size, rng)], cfg.blur_sigma),
        "speckle": speckle_noise(rare.images, cfg.size, cfg, rng),
        "other_class": others.images[_pick(len(others.images), cfg.size, rng)],
        "copies": copies,
    }
    return [
        Candidate(name, imgs, np.asarray(extractor(imgs), np.float64), ctx.rare, sources)
        for name, imgs in images.items()
    ]


def positive_control(ctx: FidelityContext) -> Candidate | None:
    """The rare-class validation patient(s), or None when the fold has none (val_missing)."""
    held = ctx.val.of_class(ctx.rare)
    if len(held.images) == 0:
        return None
    return Candidate(POSITIVE, held.images, held.feats, ctx.rare, frozenset(held.patients))
