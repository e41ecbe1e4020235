"""The plan comes from DVC: the items `dvc repro` visits, in its order, with their upstream."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lusaug.cluster.plan import read_plan
from lusaug.core.config import PROJ_ROOT


@pytest.fixture(scope="module")
def plan():
    return read_plan(PROJ_ROOT)


def _dvc_stage_names() -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "dvc", "stage", "list", "--name-only"],
        cwd=PROJ_ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return set(out.stdout.split())


def test_the_plan_is_every_item_dvc_lists_each_after_its_upstream(plan):
    names = [i.name for i in plan.items]
    assert set(names) == _dvc_stage_names()
    position = {n: k for k, n in enumerate(names)}
    for item in plan.items:
        assert item.index == position[item.name]
        assert all(position[u] < item.index for u in item.upstream), item
    assert plan.sources == ("data.dvc",)
    assert plan["frames"].sources == ("data.dvc",) and plan["frames"].upstream == ("check_params",)
    assert plan["check_params"].upstream == ()  # the params check comes before everything


def test_checkpoints_are_persist_outputs_and_checkpoint_folders_of_the_command(plan):
    trains = [i for i in plan.items if i.stage == "train"]
    assert trains and all(
        i.checkpoints == (f"models/classifiers/fold-{i.name[-1]}",) for i in trains
    )
    for item in plan.items:
        fold = item.name.split("@")[-1].split("-")[0]
        if item.stage == "generate":
            (folder,) = item.checkpoints
            assert folder.startswith(f"models/checkpoints/fold-{fold}/"), item
        elif item.stage == "base_model":  # the base's folder persists (kept when unchanged)
            assert item.checkpoints == (
                f"models/fold-{fold}/base_model",
                f"models/checkpoints/fold-{fold}/base_model",
            ), item
        elif item.stage == "check_params":  # its marker persists (never deleted before the check)
            assert item.checkpoints == ("reports/params_check.txt",), item
        elif item.stage != "train":
            assert item.checkpoints == (), item


def test_a_target_plans_its_upstream_only_and_the_critical_chain_comes_first():
    plan = read_plan(PROJ_ROOT, ["train@0"])
    names = {i.name for i in plan.items}
    assert "train@0" in names and "tune@0" in names and "frames" in names
    assert not any(n.endswith("@1") or "@1-" in n for n in names), names
    assert "evaluate" not in names
    depth = plan.downstream_depth()
    assert depth["train@0"] == 1 and depth["check_params"] == max(depth.values())
    assert depth["frames"] == depth["check_params"] - 1
    # the workspace a local repro would have: outputs of everything before the item ignored
    ignored = plan.ignores_before(plan["train@0"])
    assert "data/frames" in ignored and "models/classifiers/fold-0" not in ignored
