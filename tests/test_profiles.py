"""Every profile loads and its pipeline resolves; `paper` builds the study's models at 224 px.

`paper` cannot run on this machine (a GPU-scale study), so these checks are what keeps it honest:
its params type-check, its networks are the study's (ResNet50, ViT-B/16, 128 px DDPM) and
accept its inputs, and `dvc` expands every stage it names.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lusaug.core.config import PROJ_ROOT, load_params, parse_strategy
from lusaug.core.profiles import apply_profile, available_profiles
from lusaug.generators.ddpm import build_unet
from lusaug.models.classifier import ClassifierMeta, build_classifier
from tests.pipelines.helpers import copy_repo

DVC = Path(sys.executable).parent / "dvc"


def _profile_params(tmp_path: Path, name: str):
    params_file = tmp_path / "params.yaml"
    shutil.copy(PROJ_ROOT / "params.yaml", params_file)
    apply_profile(name, params_file)
    return load_params(params_file)


@pytest.mark.parametrize("name", available_profiles())
def test_profile_trains_only_on_generators_it_runs(tmp_path, name):
    """synthetic-<G> needs filter@G's kept images, so G must be among the enabled generators;
    the folds DVC runs are 0..k-1."""
    p = _profile_params(tmp_path, name)
    gens = {parse_strategy(s).generator for s in p.train.strategies} - {""}
    assert gens <= set(p.generate.enabled), name
    assert set(p.generate.enabled) <= set(p.generate.generators), name
    assert p.split.folds == list(range(len(p.split.folds))), name


def test_pocus_profile_runs_every_table3_strategy_on_every_fold(tmp_path):
    p = _profile_params(tmp_path, "pocus")
    strategies = p.train.strategies
    assert p.split.scheme == "cv" and p.split.folds == [0, 1, 2, 3]  # 4 viral patients
    for wanted in [
        "baseline",
        "class_weights",
        "class_weights_tuned",
        "oversample",
        "synthetic-ddpm_3mixed",
        "synthetic-ddpm_all",
        "synthetic-ti_object",
        "synthetic-ti_style",
        "synthetic-finetune",
        "synthetic_replace-finetune",
    ]:
        assert wanted in strategies
    assert len(p.train.seeds) >= 2
    assert not any(p.generate.generators[g].leaky for g in p.generate.enabled)


@pytest.mark.slow
def test_paper_profile_builds_the_study_classifiers_at_224(tmp_path):
    p = _profile_params(tmp_path, "paper")
    assert p.base.image_size == 224
    torch.manual_seed(0)
    sizes = {}
    for arch in p.train.architectures:
        meta = ClassifierMeta.for_architecture(
            p.train.architectures[arch], p.base.classes, p.base.image_size
        )
        net = build_classifier(meta).eval()
        with torch.no_grad():
            logits = net(torch.zeros(1, 1, p.base.image_size, p.base.image_size))
        assert logits.shape == (1, len(p.base.classes))
        sizes[meta.model] = sum(t.numel() for t in net.parameters())
    # timm's standard ResNet50 and ViT-B/16 with one input channel and four classes
    assert set(sizes) == {"resnet50", "vit_base_patch16_224"}
    assert 23e6 < sizes["resnet50"] < 24e6
    assert 85e6 < sizes["vit_base_patch16_224"] < 86.5e6


@pytest.mark.slow
def test_paper_profile_builds_a_128px_ddpm(tmp_path):
    p = _profile_params(tmp_path, "paper")
    unet = build_unet(p.generate.ddpm).eval()
    side = p.generate.ddpm.resolution
    assert side == 128
    with torch.no_grad():
        out = unet(torch.zeros(1, 1, side, side), torch.tensor([10])).sample
    assert out.shape == (1, 1, side, side)


def _expected_stage_items(p) -> dict[str, int]:
    """Items per stage: the per-fold stages run on every item (the folds and the final split),
    train on the test folds only."""
    items, folds = len(p.split.items), len(p.split.folds)
    generators = len(p.generate.enabled)
    return {"encoder": items, "base_model": items, "tune": items, "generate": generators * items,
            "filter": generators * items, "train": folds}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", ["pocus", "paper"])
def test_profile_stages_resolve_in_dvc(tmp_path, name):
    """`dvc stage list` in a repo copy on the profile expands every foreach/matrix item."""
    repo = copy_repo(tmp_path / "repo")
    p = _profile_params(tmp_path, name)
    shutil.copy(tmp_path / "params.yaml", repo / "params.yaml")
    listed = subprocess.run(
        [str(DVC), "stage", "list", "--name-only"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    counts: dict[str, int] = {}
    for stage in listed:
        base = stage.split("@")[0]
        counts[base] = counts.get(base, 0) + 1
    for base, n in _expected_stage_items(p).items():
        assert counts.get(base, 0) == n, (base, counts)
    for single in ["frames", "split", "validate", "evaluate", "final", "register", "export"]:
        assert counts.get(single) == 1, single
