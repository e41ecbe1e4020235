"""End to end on real data: the `pocus` profile, shrunk, through the real `dvc repro`.

A copy of the repository gets ``lusaug profile pocus``, then the micro profile's model, epoch and
generator sizes on top (one seed, two folds; of the pocus generators one of each kind, with the
pocus strategies that use them),
and ``lusaug import`` of a small POCUS-shaped folder: a few real files per class with the real
folder layout and ``dataset_metadata.csv``, so patients still come from the metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from lusaug.core.config import PROJ_ROOT, load_params, parse_strategy
from lusaug.core.profiles import apply_profile
from tests.pipelines.helpers import (
    assert_every_stage_wrote_its_outputs,
    copy_repo,
    run,
)

pytestmark = [pytest.mark.slow, pytest.mark.pocus]

# A few small files per class, several patients each (metadata patient ids in comments), so the
# class-stratified patient split can put every class in every split. Viral is the whole class.
SUBSET = {
    "viral": [
        "pocus_videos/linear/Vir_prospective_file1.mp4",  # 114
        "pocus_videos/linear/Vir_prospective_file2.mp4",  # 115
        "pocus_videos/convex/Vir_liftl_H1N1_case2_clip1.mp4",  # 5 (convex) ...
        "pocus_videos/linear/Vir_liftl_H1N1_case2_clip2.mp4",  # ... and 5 (linear)
        "pocus_videos/convex/Vir_whitelung_h1n1.mp4",  # 99
    ],
    "covid": [
        "pocus_videos/linear/Cov-Atlas-pleural.mp4",  # 42
        "pocus_videos/convex/Cov_combatting_Image1.mp4",  # 80
        "pocus_videos/convex/Cov_recommendations_likebutterfly_mov5.mov",  # 119
        "pocus_images/convex/Cov_Oliviera_2020_Fig4A.jpg",  # 220, a still image
    ],
    "pneumonia": [
        "pocus_videos/convex/Pneu_Basal-pneumonia-RUQ_crop.mp4",  # 6
        "pocus_videos/convex/Pneu_Pneumonia-LITFL-Ultrasound_crop.mp4",  # 8
        "pocus_videos/convex/Pneu_from_article_rippey.mp4",  # 9
        "pocus_videos/convex/Pneu_northumbria_0409_set1_vid1.avi",  # 184
    ],
    "regular": [
        "pocus_videos/convex/Reg_Image_181739_trimmed_crop.mp4",  # 10
        "pocus_videos/convex/Reg_Avi_lung-sliding.MP4",  # 140
        "pocus_videos/convex/Reg_northumbria_0409_set3_vid1.avi",  # 206
        "pocus_videos/convex/Reg_pat3Image_134811.mpeg",  # 2
    ],
}
UNCERTAIN = "pocus_videos/linear/label_uncertain/Vir_or_Pneu_prospective_file4.mp4"
SIDE_FILES = ["dataset_metadata.csv", "crop.json"]
# Patients per class the metadata gives the subset (viral: 5 files, 4 patients).
PATIENTS = {"viral": 4, "covid": 4, "pneumonia": 4, "regular": 4}
# The micro overlay minus what the study compares (strategy lists), which `pocus` decides.
KEEP_FROM_POCUS = ("strategies", "tuned_strategies", "generators", "overrides")
# Left out to keep CI short (each costs 2 generator and 2 filter items per split item, and 2
# settings): the same kinds as ddpm_all and ti_object on another training set or template,
# tested stage by stage in tests/generators (test_stages.py, test_pipelines.py).
SAME_KIND_GENERATORS = ("ddpm_3mixed", "ti_style")


def _pocus() -> dict:
    return yaml.safe_load((PROJ_ROOT / "profiles" / "pocus.yaml").read_text())


def shrunk_generators() -> list[str]:
    return [g for g in _pocus()["generate"]["enabled"] if g not in SAME_KIND_GENERATORS]


def shrunk_strategies() -> list[str]:
    keep = set(shrunk_generators())
    strategies = _pocus()["train"]["strategies"]
    return [
        s
        for s in strategies
        if not parse_strategy(s).generator or parse_strategy(s).generator in keep
    ]


def small_pocus(src: Path, dest: Path) -> Path:
    """Symlinks to a few real files of ``src`` in its own layout, plus its metadata and crops."""
    wanted = [f for files in SUBSET.values() for f in files] + [UNCERTAIN] + SIDE_FILES
    missing = [f for f in wanted if not (src / f).is_file()]
    if missing:
        pytest.skip(f"{src} lacks files of the test's subset (another data version?): {missing}")
    for rel in wanted:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).symlink_to((src / rel).resolve())
    return dest


def shrink_overlay() -> dict:
    """The micro profile's sizes (images, frames, nets, DDPM, tuning, bootstrap) without its
    strategy lists and with every candidate kept; seeds stay micro's single seed. Two folds: the subset's 4 viral patients are
    tested 2 + 2 (the full run has one fold per viral patient)."""
    overlay = yaml.safe_load((PROJ_ROOT / "profiles" / "micro.yaml").read_text())
    overlay.pop("phantom", None)
    overlay["generate"]["enabled"] = shrunk_generators()
    for key in KEEP_FROM_POCUS:
        overlay["train"].pop(key, None)
    overlay["train"]["strategies"] = shrunk_strategies()
    overlay["split"] = {"folds": [0, 1], "items": [0, 1, "final"], "max_folds": 2}
    overlay["evaluate"].pop("primary", None)  # pocus's pre-registered primary stays
    # micro-sized generators make noise that a quality filter may reject entirely in a fold, which
    # skips that strategy's runs (the setting is then unavailable); the filter is tested on its own
    overlay["filter"].update(min_std=0.0, min_entropy=0.0, use_sharpness=False)
    return overlay


@pytest.fixture(scope="module")
def pocus_repo(tmp_path_factory, pocus_dir) -> Path:
    work = tmp_path_factory.mktemp("pocus")
    src = small_pocus(pocus_dir, work / "pocus_small")
    repo = copy_repo(work / "repo")
    run(["lusaug", "profile", "pocus"], repo)
    overlays = work / "profiles"
    overlays.mkdir()
    (overlays / "pocus_shrunk.yaml").write_text(yaml.safe_dump(shrink_overlay()))
    apply_profile("pocus_shrunk", repo / "params.yaml", profiles_dir=overlays)
    run(["lusaug", "import", str(src), "--force"], repo)
    run(["dvc", "repro"], repo, timeout=3600)
    return repo


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def test_shrunk_profile_keeps_the_pocus_study(pocus_repo):
    """The study's strategies and one generator of each kind it uses, on one seed, at micro
    sizes; its primary comparison among them."""
    params = load_params(pocus_repo / "params.yaml")
    pocus = _pocus()
    for key in KEEP_FROM_POCUS:
        if key in pocus["train"] and key != "strategies":
            assert getattr(params.train, key) == pocus["train"][key], key
    assert params.train.strategies == shrunk_strategies()
    assert params.generate.enabled == shrunk_generators()
    kinds = {params.generate.generators[g].kind for g in params.generate.enabled}
    every_kind = {params.generate.generators[g].kind for g in pocus["generate"]["enabled"]}
    assert kinds == every_kind  # one generator of each kind the study uses
    primary = pocus["evaluate"]["primary"]
    assert {primary["strategy"], primary["control"]} <= set(params.train.strategies)
    assert params.split.scheme == "cv" and params.split.folds == [0, 1]
    assert params.train.seeds == [0] and params.train.overrides == []
    assert params.evaluate.primary.architecture == pocus["evaluate"]["primary"]["architecture"]
    assert params.base.image_size == 32 and params.train.epochs == 1


def test_import_took_patients_from_the_metadata(pocus_repo):
    meta = pd.read_csv(pocus_repo / "data/raw/metadata.csv", dtype=str)
    imported = set(meta["file"])
    assert imported == {f for files in SUBSET.values() for f in files}
    assert UNCERTAIN not in imported  # label_uncertain/ stays out by default
    assert meta.groupby("label")["patient_id"].nunique().to_dict() == PATIENTS
    viral = meta[meta["file"].str.contains("H1N1_case2")]
    assert viral["patient_id"].nunique() == 1  # the convex and linear clip of one patient


def test_every_stage_ran_and_wrote_its_outputs(pocus_repo):
    assert_every_stage_wrote_its_outputs(pocus_repo)


def test_every_patient_is_tested_once_and_every_viral_patient_is_tested(pocus_repo):
    """Cross-validation on real metadata: a patient (both clips of patient 5 too) sits in one
    split per fold, is tested in exactly one fold, and every viral patient has a verdict."""
    params = load_params(pocus_repo / "params.yaml")
    frames = pd.read_csv(pocus_repo / "data/frames.csv", dtype=str)
    tested: dict[str, int] = {}
    for k in params.split.folds:
        fold = pd.read_csv(pocus_repo / f"data/splits/fold-{k}.csv", dtype=str)
        per_patient = fold.groupby("patient_id")["split"].nunique()
        assert (per_patient == 1).all(), per_patient[per_patient > 1]
        assert set(fold["split"]) == {"train", "val", "test"}
        train_labels = set(fold.loc[fold["split"] == "train", "label"])
        assert train_labels == set(PATIENTS), (k, train_labels)
        for pid in fold.loc[fold["split"] == "test", "patient_id"].unique():
            assert pid not in tested, f"patient {pid} tested in folds {tested[pid]} and {k}"
            tested[pid] = k
    assert set(tested) == set(frames["patient_id"])
    viral = frames.loc[frames["label"] == "viral", "patient_id"].unique()
    rare = _json(pocus_repo / "metrics/rare_patients.json")["patients"]
    assert len(rare) == len(viral) == PATIENTS["viral"]
    assert _json(pocus_repo / "metrics/validation.json")["success"] is True


def test_every_strategy_trained_in_every_fold_and_was_pooled(pocus_repo):
    params = load_params(pocus_repo / "params.yaml")
    t = params.train
    expected = {f"{s}-{a}" for s in t.strategies for a in t.architectures}
    assert len(expected) == 2 * len(t.strategies)
    assert set(_json(pocus_repo / "metrics/test.json")["settings"]) == expected
    for k in params.split.folds:
        for strategy in t.strategies:
            gen = parse_strategy(strategy).generator
            for arch in t.architectures:
                summary = _json(
                    pocus_repo
                    / f"models/classifiers/fold-{k}/{strategy}-{arch}-0/val_metrics.json"
                )
                if strategy.startswith("synthetic-"):
                    kept = list((pocus_repo / f"data/synthetic/fold-{k}/{gen}/kept").glob("*.png"))
                    assert summary["synthetic_frames"] == len(kept), (k, strategy, arch)
        tuned = yaml.safe_load((pocus_repo / f"params/tuned/fold-{k}.yaml").read_text())
        for arch in t.architectures:
            run_dir = pocus_repo / f"models/classifiers/fold-{k}/class_weights_tuned-{arch}-0"
            weights = _json(run_dir / "val_metrics.json")["loss_weights"]
            expected_w = [
                tuned["class_weights_tuned"]["class_weights"][c] for c in params.base.classes
            ]
            assert weights == pytest.approx(expected_w)


def test_every_generator_ran_per_fold_on_that_folds_training_patients(pocus_repo):
    params = load_params(pocus_repo / "params.yaml")
    for k in params.split.folds:
        fold = pd.read_csv(pocus_repo / f"data/splits/fold-{k}.csv", dtype=str)
        train = fold[(fold["split"] == "train") & (fold["label"] == params.base.target_class)]
        for gen in params.generate.enabled:
            report = _json(pocus_repo / f"metrics/fold-{k}/synthetic_{gen}.json")
            assert report["fold"] == k and report["leaky"] is False, (k, gen)
            assert report["train_splits"] == ["train"], (k, gen, report["train_splits"])
            assert report["train_patients"] <= train["patient_id"].nunique(), (k, gen)
            kept = list((pocus_repo / f"data/synthetic/fold-{k}/{gen}/kept").glob("*.png"))
            assert report["kept"] == len(kept), (k, gen)


def test_final_model_registered_and_exported(pocus_repo):
    """The refit final model is registered with its CV estimate; export verified that file."""
    final = _json(pocus_repo / "metrics/final.json")
    registered = _json(pocus_repo / "models/registered.json")
    assert registered["name"] == "lus-classifier" and registered["version"]
    assert (pocus_repo / registered["checkpoint"]).is_file()
    assert final["setting"] in _json(pocus_repo / "metrics/selection.json")["settings"]
    onnx = pocus_repo / "models/onnx/classifier.onnx"
    assert onnx.is_file()
    report = _json(pocus_repo / "reports/onnx_parity.json")
    assert report["onnx"]["checker"] == "passed"
    assert report["onnx"]["sha256"] == registered["onnx_sha256"]
    assert report["parity"]["passed"] is True, report["parity"]
