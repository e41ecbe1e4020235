"""The study's own Table 3 numbers beside ours, with the caveats that keep the comparison honest."""

from __future__ import annotations

from typing import Any

from lusaug.core.config import SYNTHETIC_PREFIX
from lusaug.core.markdown import NA, Doc, pct
from lusaug.reporting.outputs import RunOutputs

TITLE = "The study's numbers beside ours"
# The seed study's own numbers, from its Table 3 (test split of 444 frames: 195 regular, 112 covid,
# 121 pneumonia, 16 viral). Percentages; the study gives no intervals and
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
                "included; our ddpm_all sees the fold's training frames only"
            ),
        },
    ],
}
COMPARED = ("accuracy", "f1_macro", "precision_macro")
STUDY_DIGITS = 2  # the study prints two decimals


def _our_test_frames(run: RunOutputs) -> str:
    """Pooled test frames per class (every fold's test split), from reports/split.json."""
    folds = (run.get("split") or {}).get("folds") or {}
    if not folds:
        return ""
    totals = {
        c: sum(
            f.get("classes", {}).get(c, {}).get("test", {}).get("frames", 0)
            for f in folds.values()
        )
        for c in run.params.base.classes
    }
    return " (" + ", ".join(f"{c} {n}" for c, n in totals.items()) + ")"


def reference_section(run: RunOutputs, doc: Doc, reference: dict[str, Any]) -> None:
    doc.h(3, TITLE)
    settings, archs = run.settings(), run.architectures()
    models = reference.get("models", {})
    frames = reference.get("test_frames", {})
    p = run.params
    doc.p(
        f"Reference values from {reference.get('source', 'the study')}: "
        f"{sum(frames.values())} test frames ("
        + ", ".join(f"{c} {n}" for c, n in frames.items())
        + f") of one hold-out split. Ours: {run.info.get('frames', NA)} pooled out-of-fold test "
        f"frames{_our_test_frames(run)} over {run.info.get('folds', NA)} folds, point estimates "
        "(mean over seeds). The data version, the frames and the scale differ (the study: 224 "
        "px, "
        + " and ".join(models.values())
        + f" on a GPU; ours: {p.base.image_size} px, "
        + " and ".join(f"`{a.model}`" for a in p.train.architectures.values())
        + " on CPU), so read the two side by side for direction, not as a replication. The "
        "study reports F1 and precision without naming the average and without intervals; ours "
        "are macro averages."
    )
    header = ["Study setting", "Our strategy", "Family"]
    header += [f"{lab} {who}" for lab in ("Acc", "F1", "Prec") for who in ("study", "ours")]
    rows, notes = [], []
    for ref in reference.get("settings", []):
        s = ref["strategy"]
        if ref.get("note"):
            notes.append(f"{ref['label']}: {ref['note']}.")
        for fam, values in ref.get("values", {}).items():
            ours = settings.get((s, fam)) if fam in archs else None
            row: list[Any] = [f"{ref['label']} ({models.get(fam, fam)})", run.label(s), fam]
            for m in COMPARED:
                study = values.get(m)
                row.append(f"{study:.{STUDY_DIGITS}f}" if study is not None else "-")
                row.append(pct(ours.get(m)) if ours else "not run")
            rows.append(row)
    doc.table(header, rows)
    if notes:
        doc.bullets(notes)
