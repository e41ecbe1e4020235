"""Stage ``final``: it only trains, on what the final split's items of the per-fold stages made.

A toy final split (no test patients), the kept images and verdicts that ``filter@final-<G>``
would have written, and a selection whose chosen setting's generator is blocked on that split:
the next setting by pooled validation is trained instead, with its generator's kept images, and
nothing but the classifier and its candidate record is written.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from lusaug.core.config import Params
from lusaug.core.utils import write_json
from lusaug.models.strategies import GENERATOR_METRICS
from lusaug.stages import final
from tests.helpers.toy import write_toy_dataset, write_toy_synthetic

BLOCKED, KEPT = "ddpm_all", "ddpm_conditional"  # generators of the micro profile
N_KEPT = 5


@pytest.fixture(scope="module")
def params(micro_params: Params) -> Params:
    train = dataclasses.replace(
        micro_params.train,
        strategies=["baseline", f"synthetic-{BLOCKED}", f"synthetic-{KEPT}"],
        architectures={"resnet": micro_params.train.architectures["resnet"]},
        overrides=[],
        threads=1,
        epochs=1,
        patience=0,
    )
    return dataclasses.replace(micro_params, train=train)


@pytest.fixture(scope="module")
def stage(tmp_path_factory, params: Params) -> dict:
    root = tmp_path_factory.mktemp("final")
    toy = pd.read_csv(write_toy_dataset(root / "data", params.base.classes, size=32))
    splits = root / "data" / "splits"
    splits.mkdir()
    fin = toy.assign(split=toy["split"].replace({"test": "train"}))  # nobody is held out
    fin.assign(path="../" + fin["path"]).to_csv(splits / "fold-final.csv", index=False)
    synthetic, verdicts = root / "data/synthetic/fold-final", root / "metrics/fold-final"
    write_toy_synthetic(synthetic / KEPT / "kept", N_KEPT, 32)
    write_toy_synthetic(synthetic / BLOCKED / "kept", 3, 32)
    for gen, blocked in ((BLOCKED, True), (KEPT, False)):
        verdict = {"blocked": blocked, "blocked_reason": "memorises" if blocked else None}
        write_json(verdicts / GENERATOR_METRICS.format(generator=gen), verdict)
    selection = root / "metrics" / "selection.json"
    values = {f"synthetic-{BLOCKED}-resnet": 0.9, f"synthetic-{KEPT}-resnet": 0.8}
    write_json(
        selection,
        {
            "metric": "val_f1_macro",
            "chosen": {"setting": f"synthetic-{BLOCKED}-resnet"},
            "settings": {**values, "baseline-resnet": 0.85},
        },
    )
    paths = final.FinalPaths(
        splits / "fold-final.csv",
        selection,
        root / "models" / "final",
        root / "metrics" / "final.json",
        synthetic=synthetic,
        generator_metrics=verdicts,
    )
    summary = final.run(paths, params)
    return {"paths": paths, "summary": summary, "frames": fin}


def test_a_generator_blocked_on_the_final_split_passes_to_the_next_setting(stage):
    summary = json.loads(stage["paths"].metrics.read_text())
    assert list(summary["passed_over"]) == [f"synthetic-{BLOCKED}-resnet"]
    assert "memorises" in summary["passed_over"][f"synthetic-{BLOCKED}-resnet"]
    # the next by pooled validation is the baseline (0.85), not the other generator (0.8)
    assert summary["setting"] == "baseline-resnet" and summary["synthetic_frames"] == 0
    assert summary["train_frames"] == (stage["frames"]["split"] == "train").sum()


def test_final_only_trains_no_refit_of_the_per_fold_stages(stage):
    out: Path = stage["paths"].out
    written = sorted(p.name for p in out.iterdir())
    assert written == ["candidate.execution.json", "candidate.json", final.CLASSIFIER], written
    (name,) = json.loads((out / final.CANDIDATE).read_text())
    assert name == "final-baseline-resnet-0"


def test_a_synthetic_setting_trains_on_the_final_splits_kept_images(stage, params, tmp_path):
    """With the baseline below the kept generator, the final model adds its N_KEPT images."""
    paths = stage["paths"]
    selection = json.loads(paths.selection.read_text())
    selection["settings"]["baseline-resnet"] = 0.1
    again = dataclasses.replace(
        paths, selection=tmp_path / "selection.json", out=tmp_path / "final",
        metrics=tmp_path / "final.json",
    )  # fmt: skip
    write_json(again.selection, selection)
    summary = final.run(again, params)
    assert summary["setting"] == f"synthetic-{KEPT}-resnet"
    assert summary["synthetic_frames"] == N_KEPT
    assert summary["train_frames"] == (stage["frames"]["split"] == "train").sum() + N_KEPT
