"""One fold's feature-space report: probe, references, targets, controls, and generator verdicts.

:func:`fold_protocol` takes :class:`FoldInputs` (the fold's training and validation
:class:`FrameTable`, the rare class, a feature extractor, the ``features`` params) and returns a
:class:`FoldProtocol` holding everything a later generator needs: the context, the targets and
the controls table. :func:`judge_synthetic` then scores a generator's images against it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from lusaug.core.config.features_sections import FeaturesParams
from lusaug.features.controls import negative_controls, positive_control
from lusaug.features.frame_table import FeaturesError, FrameTable
from lusaug.features.measures import (
    Candidate,
    FidelityContext,
    RealFrames,
    build_context,
    evaluate,
    tstr_real_reference,
)
from lusaug.features.probe import Extractor, LabelledFeatures, ProbeResult, probe_features
from lusaug.features.protocol import Calibration, ControlsTable, calibrate, controls_table, judge
from lusaug.features.references import references

logger = logging.getLogger(__name__)

RECOGNITION_NOTE = (
    "recognition = share of frames the probe (fitted on the training patients) calls the class: "
    "resemblance to those patients, not class membership; never a target"
)


@dataclass
class FoldInputs:
    train: FrameTable  # the fold's training frames (every class)
    val: FrameTable  # its validation frames (patients nobody trained on)
    rare: str  # the class the generators synthesise
    extractor: Extractor  # uint8 (N, H, W) -> features (N, F)
    cfg: FeaturesParams


@dataclass
class FoldProtocol:
    ctx: FidelityContext
    probe: ProbeResult
    calibration: Calibration
    references: dict[str, Any]
    controls: ControlsTable
    control_evaluations: dict[str, Any]
    tstr_real: float | None  # the rare-vs-rest classifier trained on real rare frames

    def summary(self) -> dict[str, Any]:
        """JSON-ready: everything but the frames."""
        targets = {
            m: {
                "threshold": t.threshold,
                "direction": t.direction,
                "interval": t.interval.as_dict(),
                "patients": t.patients,
            }
            for m, t in self.calibration.targets.items()
        }
        return {
            "probe": self.probe.as_dict(),
            "targets": targets,
            "calibration_patients": self.calibration.per_patient,
            "references": self.references,
            "controls": self.controls.as_dict(),
            "controls_details": self.control_evaluations,
            "tstr_real_reference": self.tstr_real,
            "memorisation_reference": {
                "same_clip_copy_distance": {
                    "pixel": self.ctx.copy.pixel,
                    "ssl": self.ctx.copy.ssl,
                },
                "val_to_train_nn_median": {
                    "pixel": self.ctx.copy.between_patients_pixel,
                    "ssl": self.ctx.copy.between_patients_ssl,
                },
            },
            "recognition_note": RECOGNITION_NOTE,
        }


def fold_protocol(inputs: FoldInputs) -> FoldProtocol:
    """Embed the fold's frames and run probe, references, calibration and controls."""
    if set(inputs.train.column("patient_id")) & set(inputs.val.column("patient_id")):
        raise FeaturesError("a patient is in both the training and the validation frames")
    cfg = inputs.cfg
    train = RealFrames.embed(inputs.train, inputs.extractor)
    val = RealFrames.embed(inputs.val, inputs.extractor)
    ctx = build_context(train, val, inputs.rare, cfg.fidelity, cfg.probe)
    probe = probe_features(
        LabelledFeatures(train.feats, train.labels, train.patients),
        LabelledFeatures(val.feats, val.labels, val.patients),
        inputs.rare,
        cfg.probe,
        cfg.fidelity.seed,
    )
    calibration = calibrate(ctx)
    controls = negative_controls(ctx, inputs.extractor, cfg.controls)
    held = positive_control(ctx)
    evaluations = {c.name: evaluate(c, ctx) for c in [*controls, *([held] if held else [])]}
    table = controls_table(evaluations, calibration)
    logger.info("features: usable targets %s", [m for m, ok in table.usable.items() if ok])
    return FoldProtocol(
        ctx=ctx,
        probe=probe,
        calibration=calibration,
        references=references(ctx),
        controls=table,
        control_evaluations={
            k: {"values": v.values, "details": v.details} for k, v in evaluations.items()
        },
        tstr_real=tstr_real_reference(ctx),
    )


def judge_synthetic(
    name: str, images: np.ndarray, fold: FoldProtocol, extractor: Extractor, sources: frozenset
) -> dict[str, Any]:
    """A generator's images (claimed rare) against the fold's targets.

    ``sources`` are the patients the generator trained on (its ``train_set.csv``)."""
    feats = np.asarray(extractor(images), np.float64)
    cand = Candidate(name, images, feats, fold.ctx.rare, frozenset(sources))
    out = judge(evaluate(cand, fold.ctx), fold.calibration, fold.controls)
    out["tstr_real_reference"] = fold.tstr_real
    return out
