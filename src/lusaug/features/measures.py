"""The fidelity measures of one candidate set in a fold's feature space.

A :class:`Candidate` is a set of frames that claims a class ``label`` (synthetic rare-class
images, a control, or the frames of one real validation patient) with its ``source_patients``
(a generator's training patients; a real patient's own id). Every measure compares it with the
fold's real TRAINING frames of that class, ``T_c``, in the role "new patient vs the training
patients of its class"; the protocol (:mod:`lusaug.features.protocol`) scores real validation
patients in exactly that role to set each target.

| measure | value | better |
|---|---|---|
| ``kid_to_class`` | KID(candidate, T_c) | lower |
| ``class_margin`` | KID(cand, T_c) - min over other classes c' of KID(cand, T_c') | lower (< 0 = nearest to its class) |
| ``prdc_precision`` / ``prdc_coverage`` | PRDC of the candidate (fake) against T_c (real) | higher |
| ``c2st_auroc`` | out-of-fold AUROC of a logistic regression telling T_c from the candidate; T_c grouped by patient (by clip when it has one patient), the candidate split at random | lower (0.5 = indistinguishable) |
| ``tstr_auroc`` | k-nearest-neighbour classifier trained on the candidate (as class c) + the real training frames of the other classes; its class-c probability scores real class-c frames of patients outside the candidate's sources against real other-class validation frames | higher |
| ``copy_rate_pixel`` / ``copy_rate_ssl`` | share of candidate frames whose nearest frame of T_c is closer than ``copy_quantile`` of T_c's same-clip neighbour distances (pixels; SSL cosine) | lower |
| ``recognition`` | share the probe (fitted on all training frames) calls class c: resemblance to the training patients, NOT class membership | reported, never a target |
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from lusaug.core.config.features_sections import FidelityProtocolParams, ProbeParams
from lusaug.features.estimates import (
    Scaler,
    cosine_distances,
    kid,
    pixel_distances,
    prdc_scores,
    same_clip_nn,
)
from lusaug.features.frame_table import FeaturesError, FrameTable
from lusaug.features.probe import Extractor, fit_logistic

LOWER, HIGHER, REPORTED = "lower", "higher", "reported"
MEASURES: dict[str, str] = {
    "kid_to_class": LOWER,
    "class_margin": LOWER,
    "prdc_precision": HIGHER,
    "prdc_coverage": HIGHER,
    "c2st_auroc": LOWER,
    "tstr_auroc": HIGHER,
    "copy_rate_pixel": LOWER,
    "copy_rate_ssl": LOWER,
    "recognition": REPORTED,
}


@dataclass
class RealFrames:
    """Real frames with their features and ids (rows aligned)."""

    images: np.ndarray  # uint8 (N, H, W)
    feats: np.ndarray  # raw encoder features (N, F)
    labels: np.ndarray
    patients: np.ndarray
    clips: np.ndarray

    @classmethod
    def embed(cls, frames: FrameTable, extractor: Extractor) -> RealFrames:
        return cls(
            frames.images,
            np.asarray(extractor(frames.images), np.float64),
            frames.column("label"),
            frames.column("patient_id"),
            frames.column("video_id"),
        )

    def __len__(self) -> int:
        return len(self.labels)

    def where(self, mask: np.ndarray) -> RealFrames:
        m = np.asarray(mask, bool)
        return RealFrames(
            self.images[m], self.feats[m], self.labels[m], self.patients[m], self.clips[m]
        )

    def of_class(self, label: str) -> RealFrames:
        return self.where(self.labels == label)

    def keep_patients(self, label: str, patients: list[str]) -> RealFrames:
        """Class ``label`` reduced to ``patients``; the other classes untouched."""
        return self.where((self.labels != label) | np.isin(self.patients, patients))


@dataclass
class Candidate:
    """Frames claimed to be class ``label``; ``source_patients`` are the patients they come from."""

    name: str
    images: np.ndarray
    feats: np.ndarray
    label: str
    source_patients: frozenset[str]


@dataclass
class CopyThresholds:
    """Per class: the near-copy distance (same-clip neighbours) in pixels and in SSL space."""

    pixel: dict[str, float]
    ssl: dict[str, float]
    between_patients_pixel: dict[str, float]  # median NN distance of validation frames to T_c
    between_patients_ssl: dict[str, float]


@dataclass
class FidelityContext:
    """A fold's real frames in the feature space, and what every measure reuses."""

    train: RealFrames
    val: RealFrames
    classes: list[str]
    rare: str
    cfg: FidelityProtocolParams
    probe_cfg: ProbeParams
    scaler: Scaler
    probe: Any  # the logistic regression on all training frames (recognition)
    copy: CopyThresholds


@dataclass
class Evaluation:
    """Every measure of one candidate (None = not assessable) and what explains it."""

    name: str
    values: dict[str, float | None]
    details: dict[str, Any] = field(default_factory=dict)


def _copy_thresholds(train: RealFrames, val: RealFrames, classes: list[str], q: float):
    pixel, ssl, bp, bs = {}, {}, {}, {}
    all_pix = same_clip_nn(pixel_distances(train.images, train.images), train.clips)
    all_ssl = same_clip_nn(cosine_distances(train.feats, train.feats), train.clips)
    for c in classes:
        t, v = train.of_class(c), val.of_class(c)
        pix = same_clip_nn(pixel_distances(t.images, t.images), t.clips)
        cos = same_clip_nn(cosine_distances(t.feats, t.feats), t.clips)
        pixel[c] = float(np.quantile(pix if len(pix) else all_pix, q))
        ssl[c] = float(np.quantile(cos if len(cos) else all_ssl, q))
        if len(v) and len(t):
            bp[c] = float(np.median(pixel_distances(v.images, t.images).min(axis=1)))
            bs[c] = float(np.median(cosine_distances(v.feats, t.feats).min(axis=1)))
    return CopyThresholds(pixel, ssl, bp, bs)


def build_context(
    train: RealFrames,
    val: RealFrames,
    rare: str,
    cfg: FidelityProtocolParams,
    probe_cfg: ProbeParams,
) -> FidelityContext:
    """Fit what the measures share: the feature scaler, the probe, the copy thresholds."""
    classes = sorted(set(train.labels))
    if rare not in classes:
        raise FeaturesError(f"no training frame of the rare class {rare!r}")
    if len(val) == 0:
        raise FeaturesError("the protocol needs validation frames (patients nobody trained on)")
    return FidelityContext(
        train=train,
        val=val,
        classes=classes,
        rare=rare,
        cfg=cfg,
        probe_cfg=probe_cfg,
        scaler=Scaler.fit(train.feats),
        probe=fit_logistic(train.feats, train.labels, probe_cfg),
        copy=_copy_thresholds(train, val, classes, cfg.copy_quantile),
    )


def _kids(cand: Candidate, ctx: FidelityContext) -> dict[str, float | None]:
    z = ctx.scaler(cand.feats)
    return {c: kid(z, ctx.scaler(ctx.train.feats[ctx.train.labels == c])) for c in ctx.classes}


def _class_margin(kids: dict[str, float | None], label: str) -> float | None:
    others = [v for c, v in kids.items() if c != label and v is not None]
    own = kids.get(label)
    return None if own is None or not others else float(own - min(others))


def _prdc(cand: Candidate, ctx: FidelityContext) -> dict[str, float] | None:
    real = ctx.scaler(ctx.train.feats[ctx.train.labels == cand.label])
    return prdc_scores(real, ctx.scaler(cand.feats), ctx.cfg.prdc_k)


def _c2st_folds(real: RealFrames, n_cand: int, ctx: FidelityContext, seed: int):
    groups = real.patients if len(set(real.patients)) >= 2 else real.clips
    k = min(ctx.cfg.c2st_folds, len(set(groups)), n_cand)
    if k < 2:
        return None
    real_folds = np.empty(len(real.labels), int)
    for i, (_, test) in enumerate(GroupKFold(n_splits=k).split(real.feats, groups=groups)):
        real_folds[test] = i
    cand_folds = np.empty(n_cand, int)
    for i, part in enumerate(np.array_split(np.random.default_rng(seed).permutation(n_cand), k)):
        cand_folds[part] = i
    return k, real_folds, cand_folds


def c2st_auroc(cand: Candidate, ctx: FidelityContext) -> float | None:
    """Out-of-fold AUROC of real T_c (0) vs candidate (1); real folds grouped by patient."""
    real = ctx.train.of_class(cand.label)
    folds = _c2st_folds(real, len(cand.feats), ctx, ctx.cfg.seed)
    if folds is None:
        return None
    k, real_folds, cand_folds = folds
    x = np.concatenate([real.feats, cand.feats])
    y = np.r_[np.zeros(len(real.feats)), np.ones(len(cand.feats))]
    fold = np.r_[real_folds, cand_folds]
    score = np.empty(len(y))
    for i in range(k):
        test = fold == i
        model = fit_logistic(x[~test], y[~test], ctx.probe_cfg)
        score[test] = model.predict_proba(x[test])[:, 1]
    return float(roc_auc_score(y, score))


def _knn(feats: np.ndarray, labels: np.ndarray, ctx: FidelityContext) -> Pipeline:
    k = min(ctx.cfg.tstr_k, len(labels))
    model = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))
    return model.fit(np.asarray(feats, np.float64), np.asarray(labels, str))


def tstr_auroc(cand: Candidate, ctx: FidelityContext) -> float | None:
    """A k-nearest-neighbour classifier trained on the candidate (as class c) and the real
    training frames of the other classes (as theirs); its class-c probability scores real
    class-c frames of patients outside the candidate's sources against other-class validation
    frames. (A linear model extrapolates: on the constructed fold, other-class frames labelled
    as the rare class got an AUROC of 1.0 from a logistic regression, because frames unlike
    every training class fall into the "mixture" class. Neighbours only vote where they are.)"""
    if len(cand.feats) == 0:
        return None
    others = ctx.train.where(ctx.train.labels != cand.label)
    x = np.concatenate([cand.feats, others.feats])
    y = np.r_[np.full(len(cand.feats), cand.label), others.labels]
    return _score_class(_knn(x, y, ctx), cand.label, cand.source_patients, ctx)


def _score_class(model, label: str, exclude: frozenset[str], ctx: FidelityContext):
    pool = [ctx.train, ctx.val]
    pos = [r.feats[(r.labels == label) & ~np.isin(r.patients, list(exclude))] for r in pool]
    pos_feats = np.concatenate(pos)
    neg_feats = ctx.val.feats[ctx.val.labels != label]
    if len(pos_feats) == 0 or len(neg_feats) == 0:
        return None
    column = list(model.classes_).index(label)
    scores = model.predict_proba(np.concatenate([pos_feats, neg_feats]))[:, column]
    return float(roc_auc_score(np.r_[np.ones(len(pos_feats)), np.zeros(len(neg_feats))], scores))


def tstr_real_reference(ctx: FidelityContext) -> float | None:
    """The same classifier trained on the real training frames (the rare class's real frames
    in place of the candidate), scored on the rare-class validation patients: what real frames
    achieve."""
    model = _knn(ctx.train.feats, ctx.train.labels, ctx)
    rare_train = frozenset(ctx.train.patients[ctx.train.labels == ctx.rare])
    return _score_class(model, ctx.rare, rare_train, ctx)


def _copies(d: np.ndarray, threshold: float, patients: np.ndarray) -> tuple[float, dict]:
    nn = d.argmin(axis=1)
    flagged = d[np.arange(len(nn)), nn] <= threshold
    named = Counter(str(p) for p in patients[nn[flagged]])
    return float(flagged.mean()), {
        "copied_patients": dict(named.most_common()),
        "median_nn": float(np.median(d.min(axis=1))),
    }


def memorisation(cand: Candidate, ctx: FidelityContext) -> dict[str, Any]:
    """Copy rates in pixels and SSL space against T_c, naming the patients copied."""
    real = ctx.train.of_class(cand.label)
    if len(cand.images) == 0:
        return {"pixel": None, "ssl": None}
    pix_rate, pix = _copies(
        pixel_distances(cand.images, real.images), ctx.copy.pixel[cand.label], real.patients
    )
    ssl_rate, ssl = _copies(
        cosine_distances(cand.feats, real.feats), ctx.copy.ssl[cand.label], real.patients
    )
    return {"pixel": pix_rate, "ssl": ssl_rate, "pixel_detail": pix, "ssl_detail": ssl}


def recognition(cand: Candidate, ctx: FidelityContext) -> float | None:
    if len(cand.feats) == 0:
        return None
    return float((ctx.probe.predict(cand.feats) == cand.label).mean())


def evaluate(cand: Candidate, ctx: FidelityContext) -> Evaluation:
    """Every measure of :data:`MEASURES` for one candidate set."""
    if cand.label not in ctx.classes:
        raise FeaturesError(f"candidate {cand.name!r} claims unknown class {cand.label!r}")
    kids = _kids(cand, ctx)
    prdc = _prdc(cand, ctx) or {}
    mem = memorisation(cand, ctx)
    values = {
        "kid_to_class": kids[cand.label],
        "class_margin": _class_margin(kids, cand.label),
        "prdc_precision": prdc.get("precision"),
        "prdc_coverage": prdc.get("coverage"),
        "c2st_auroc": c2st_auroc(cand, ctx),
        "tstr_auroc": tstr_auroc(cand, ctx),
        "copy_rate_pixel": mem["pixel"],
        "copy_rate_ssl": mem["ssl"],
        "recognition": recognition(cand, ctx),
    }
    details = {
        "frames": len(cand.images),
        "kid_per_class": kids,
        "prdc": prdc,
        "memorisation": {k: v for k, v in mem.items() if k.endswith("detail")},
    }
    return Evaluation(cand.name, values, details)
