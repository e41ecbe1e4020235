"""encoder -> base_model -> generate@G -> filter@G as library calls on a tiny fixture (MLflow)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lusaug.core.utils import read_execution
from lusaug.generators.fidelity import FeatureSpace, recognition
from lusaug.generators.filters import kept_files, load_thresholds
from lusaug.generators.frame_io import GeneratorDataError, load_folder, load_frames, read_splits
from lusaug.generators.text_base import CAPTIONS_FILE
from lusaug.generators.text_to_image import BaseModelError, LusTextToImagePipeline
from lusaug.stages import base_model, encoder, generate
from lusaug.stages import filter as filter_stage
from tests.helpers.outputs import hashed_bytes

GENERATORS = ["ddpm_3mixed", "ddpm_all_leaky", "ti_object", "finetune"]
BASE_RUNS = "tags.mlflow.runName = 'base_model'"
FOLD = 0


def _generate(paths, g, params, **options):
    return generate.run(paths, g, params.base, params.generate, params.mlflow, **options)


def _generate_and_filter(root, g, params, splits, val, base_dir="models/base_model"):
    paths = generate.GeneratePaths(
        splits,
        root / base_dir,
        root / f"models/generators/{g}",
        root / f"data/synthetic/{g}/candidates",
        root / f"models/checkpoints/{g}",
        val,
    )
    _generate(paths, g, params, resume=True, fold=FOLD, progress=False)
    return _filter(root, g, params, splits)


def _filter_paths(root, g, splits, **overrides) -> filter_stage.FilterPaths:
    paths = filter_stage.FilterPaths(
        splits=splits,
        model=root / f"models/generators/{g}",
        candidates=root / f"data/synthetic/{g}/candidates",
        encoder=root / "models/encoder",
        kept=root / f"data/synthetic/{g}/kept",
        table=root / f"data/synthetic/{g}/filter.csv",
        metrics=root / f"metrics/synthetic_{g}.json",
        plots=root / f"plots/synthetic/{g}",
    )
    return dataclasses.replace(paths, **overrides)


def _filter(root, g, params, splits, candidates=None, cfg=None, **overrides):
    if candidates is not None:
        overrides["candidates"] = candidates
    paths = _filter_paths(root, g, splits, **overrides)
    p = params
    return filter_stage.run(paths, g, p.base, cfg or p.filter, p.generate, p.mlflow, fold=FOLD)


@pytest.fixture(scope="module")
def ws(tmp_path_factory, frames_root, gen_params, tiny_sd_dir):
    """Run the stages for four generators once (plus TI on a user-supplied tiny SD)."""
    root = tmp_path_factory.mktemp("ws")
    splits = frames_root / "data" / "splits.csv"
    val = frames_root / "metrics" / "validation.json"
    params = dataclasses.replace(
        gen_params, generate=dataclasses.replace(gen_params.generate, enabled=GENERATORS)
    )
    sd_params = dataclasses.replace(
        params, generate=dataclasses.replace(params.generate, base=str(tiny_sd_dir))
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.chdir(root)
        enc_paths = encoder.EncoderPaths(
            splits, root / "models/encoder", root / "metrics/encoder.json", val
        )
        enc = encoder.run(
            enc_paths,
            params.base,
            params.train,
            params.filter.encoder,
            params.mlflow,
            enabled=params.generate.enabled,
            fold=FOLD,
            progress=False,
        )
        base_paths = base_model.BaseModelPaths(
            splits, root / "models/base_model", root / "models/checkpoints/base_model", val
        )
        base = base_model.run(
            base_paths,
            params.base,
            params.base_model,
            params.generate,
            params.mlflow,
            resume=True,
            fold=FOLD,
            progress=False,
        )
        filt = {g: _generate_and_filter(root, g, params, splits, val) for g in GENERATORS}
        sd = _generate_and_filter(root, "ti_style", sd_params, splits, val, "models/sd_unused")
        yield {
            "root": root,
            "params": params,
            "enc": enc,
            "base": base,
            "filt": filt,
            "sd": sd,
            "uri": f"sqlite:///{root / 'mlflow.db'}",
            "splits": splits,
            "val": val,
        }


def test_encoder_is_the_folds_classifier_with_its_quality(ws):
    saved = json.loads((ws["root"] / "metrics/encoder.json").read_text())
    assert saved["num_features"] == ws["enc"]["num_features"] > 0
    assert saved["strategy"] == ws["params"].filter.encoder.strategy
    run = json.loads((ws["root"] / "models/encoder/val_metrics.json").read_text())
    assert saved["val_balanced_accuracy"] == run["val"]["balanced_accuracy"]  # its own run's
    assert (ws["root"] / "models/encoder/model.pt").exists()


def test_base_model_is_a_loadable_pipeline_that_never_saw_the_rare_class(ws):
    import mlflow

    folder = ws["root"] / "models/base_model"
    pipe = LusTextToImagePipeline.from_pretrained(folder)
    assert pipe.unet.config.sample_size == ws["params"].base_model.resolution
    given = pd.read_csv(folder / CAPTIONS_FILE)
    assert "viral" not in set(given["label"])
    assert not given["caption"].str.contains("viral").any()
    splits = read_splits(ws["splits"])
    assert set(given["path"]) == set(
        splits.loc[(splits.split == "train") & (splits.label != "viral"), "path"]
    )
    assert (folder / "samples.png").stat().st_size > 0
    mlflow.set_tracking_uri(ws["uri"])
    run = mlflow.get_run(ws["base"]["mlflow_run_id"])
    assert run.data.tags["fold"] == str(FOLD)
    mv = mlflow.MlflowClient().get_model_version("lus-base", ws["base"]["registry"]["version"])
    assert mv.tags["fold"] == str(FOLD)


def test_generate_writes_a_loadable_model_and_candidates(ws):
    from diffusers import DDPMPipeline

    root, params = ws["root"], ws["params"]
    model = root / "models/generators/ddpm_3mixed"
    pipe = DDPMPipeline.from_pretrained(model)
    assert pipe.unet.config.sample_size == params.generate.ddpm.resolution
    meta = json.loads((model / "generator.json").read_text())
    assert meta["train_set"] == "3mixed" and meta["leaky"] is False and meta["fold"] == FOLD
    train = pd.read_csv(model / "train_set.csv")
    assert set(train["split"]) == {"train"} and train["patient_id"].nunique() == len(train) == 3
    cands, paths = load_folder(root / "data/synthetic/ddpm_3mixed/candidates")
    assert len(paths) == params.generate.sampling.candidates
    assert cands.shape[1:] == (params.base.image_size,) * 2
    assert not (root / "models/checkpoints/ddpm_3mixed").exists()  # finished: no resume state


def test_filter_outputs_agree_with_each_other_and_carry_real_references(ws):
    root = ws["root"]
    for g in GENERATORS:
        m = json.loads((root / f"metrics/synthetic_{g}.json").read_text())
        table = pd.read_csv(root / f"data/synthetic/{g}/filter.csv")
        kept = sorted(p.name for p in (root / f"data/synthetic/{g}/kept").glob("*.png"))
        assert m["candidates"] == len(table) == ws["params"].generate.sampling.candidates
        assert m["kept"] == len(kept) == int(table["kept"].sum())
        assert kept == sorted(table.loc[table["kept"], "file"])
        assert kept == sorted(
            kept_files(table, load_thresholds(root / f"metrics/synthetic_{g}.json"))
        )
        assert {"std", "entropy", "sharpness", "memorised", "kept", "nn_train_patient"} <= set(
            table.columns
        )
        assert m["memorisation"]["rate"] == pytest.approx(table["memorised"].mean())
        for key in ("candidates", "real_train", "real_val"):
            assert key in m["study_filter_pass_rate"]
        assert m["sharpness"]["pass_rate"]["real_train_blurred"] is not None
        assert m["recognition_real_val"]["n"] > 0 and m["kid_real_reference"] is not None
        assert isinstance(m["blocked"], bool) and "fold" in m
        for fig in ("filter_scatter.png", "kept_grid.png", "beside_real.png", "sharpness.png"):
            assert (root / f"plots/synthetic/{g}/{fig}").stat().st_size > 0


def test_recognition_rate_uses_the_folds_own_classifier(ws):
    root, params = ws["root"], ws["params"]
    m = ws["filt"]["ddpm_3mixed"]
    space = FeatureSpace.load(root / "models/encoder/model.pt")
    splits = read_splits(ws["splits"])
    val = splits[(splits.split == "val") & (splits.label == "viral")].sort_values("path")
    frames = load_frames(val, ws["splits"], params.base.image_size)
    expected = recognition(space.predict(frames), params.base.classes.index("viral"), 0.95)
    assert m["recognition_real_val"] == pytest.approx(expected)
    enc = json.loads((root / "models/encoder/val_metrics.json").read_text())["val"]
    assert m["feature_space"]["val_balanced_accuracy"] == enc["balanced_accuracy"]


def test_leaky_generator_is_marked_everywhere(ws):
    import mlflow

    root = ws["root"]
    m = json.loads((root / "metrics/synthetic_ddpm_all_leaky.json").read_text())
    assert m["leaky"] is True and "LEAKY" in m["leakage"]
    train = pd.read_csv(root / "models/generators/ddpm_all_leaky/train_set.csv")
    assert {"val", "test"} <= set(train["split"])
    mlflow.set_tracking_uri(ws["uri"])
    execution = read_execution(root / "metrics/synthetic_ddpm_all_leaky.json")
    run = mlflow.get_run(execution["mlflow_run_id"])
    assert run.data.tags["leaky"] == "true" and "LEAKY" in run.data.tags["warning"]


def test_mlflow_run_has_fold_tag_params_grids_and_scatter(ws):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(ws["uri"])
    m = ws["filt"]["ddpm_3mixed"]
    run = mlflow.get_run(m["mlflow_run_id"])
    tags = run.data.tags
    for k, v in {
        "generator": "ddpm_3mixed",
        "target_class": "viral",
        "fold": str(FOLD),
        "leaky": "false",
    }.items():
        assert tags[k] == v
    assert tags["git_commit"] and tags["data_hash"]
    assert run.data.params["ddpm.train_steps"] == str(ws["params"].generate.ddpm.train_steps)
    client = MlflowClient()
    hist = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(hist) == ws["params"].generate.ddpm.train_steps_3mixed
    assert "filter.kept" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert any(p.startswith("samples/step_") for p in arts)
    children = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'",
        output_format="list",
    )
    assert children and "filter.min_std" in children[0].data.params
    # lineage: the generator run names the split file it trained from, by content hash
    from lusaug.core.mlflow_store import file_md5

    inputs = {d.dataset.name: d.dataset for d in run.inputs.dataset_inputs}
    split = [d for d in inputs.values() if d.digest == file_md5(ws["splits"])[: len(d.digest)]]
    assert split, inputs
    assert tags["split_hash"] == file_md5(ws["splits"])


def test_best_non_leaky_generator_is_registered_for_the_fold_and_samples(ws):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(ws["uri"])
    root = ws["root"]
    metrics = [json.loads((root / f"metrics/synthetic_{g}.json").read_text()) for g in GENERATORS]
    eligible = [m for m in metrics if not m["leaky"] and not m["blocked"] and m["kid"]]
    assert eligible, metrics
    best = min(eligible, key=lambda m: m["kid"]["mean"])
    mv = MlflowClient().get_model_version_by_alias("lus-generator-viral", f"champion-fold-{FOLD}")
    assert mv.tags["generator"] == best["generator"] and mv.tags["fold"] == str(FOLD)
    model = mlflow.pyfunc.load_model(f"models:/lus-generator-viral@champion-fold-{FOLD}")
    imgs = model.predict(pd.DataFrame({"n": [2], "seed": [0]}))
    size = ws["params"].base.image_size
    assert np.asarray(imgs).shape == (2, size, size)


@pytest.mark.parametrize("name", ["ti_object", "ti_style"])
def test_textual_inversion_outputs_on_our_base_and_on_a_user_supplied_sd(ws, name):
    root = ws["root"]
    model = root / f"models/generators/{name}"
    emb = model / "learned_embeds.safetensors"
    assert emb.exists() and emb.stat().st_size < 1024 * 1024
    assert (model / "with_without_token.png").stat().st_size > 0
    meta = json.loads((model / "generator.json").read_text())
    assert meta["placeholder_token"] == "<viral-pneumonia-ultrasound>"
    assert meta["latent"] is (name == "ti_style")  # ti_style ran on the tiny SD (generate.base)
    cands = list((root / f"data/synthetic/{name}/candidates").glob("*.png"))
    assert len(cands) == ws["params"].generate.sampling.candidates


def test_a_generator_that_copies_is_blocked_from_training_and_the_registry(ws, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    root, params = ws["root"], ws["params"]
    g = "finetune"
    train = pd.read_csv(root / f"models/generators/{g}/train_set.csv")
    copies = tmp_path / "copies"
    copies.mkdir()
    for i, p in enumerate(train["path"]):  # candidates that ARE the training frames
        shutil.copy(ws["splits"].parent / p, copies / f"cand_{i:05d}.png")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", ws["uri"])
        mp.chdir(root)
        m = _filter(root, g, params, ws["splits"], candidates=copies)
        mlflow.set_tracking_uri(ws["uri"])
        champion = MlflowClient().get_model_version_by_alias(
            "lus-generator-viral", f"champion-fold-{FOLD}"
        )
    assert m["blocked"] is True and "memorisation rate" in m["blocked_reason"]
    assert m["memorisation"]["rate"] == 1.0
    assert set(m["memorisation"]["copied_patients"]) == set(train["patient_id"])
    assert m["kept"] == 0 and not list((root / f"data/synthetic/{g}/kept").glob("*.png"))
    table = pd.read_csv(root / f"data/synthetic/{g}/filter.csv")
    relaxed = load_thresholds(root / f"metrics/synthetic_{g}.json", min_std=0.0, min_entropy=0.0)
    assert kept_files(table, relaxed) == []  # tuning cannot bring it back
    assert champion.tags["generator"] != g
    assert "blocked" in m["registry"]["not_chosen"][g]


def test_two_runs_of_the_filter_stage_write_the_same_bytes(ws, tmp_path):
    """Identical inputs give identical outputs (kept PNGs, table, metrics, figures), so DVC's
    hashes do not change on a re-run; the registry outcome and MLflow ids are execution only."""
    root, params, g = ws["root"], ws["params"], "ddpm_3mixed"
    again = {
        "kept": tmp_path / "kept",
        "table": tmp_path / "filter.csv",
        "metrics": tmp_path / f"synthetic_{g}.json",
        "plots": tmp_path / "plots",
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", ws["uri"])
        mp.chdir(root)
        _filter(root, g, ws["params"], ws["splits"], **again)
    first = _filter_paths(root, g, ws["splits"])
    for field, output in again.items():
        before = hashed_bytes(getattr(first, field))
        assert before and hashed_bytes(output) == before, field
    assert "registry" in read_execution(again["metrics"]) and params.filter.register


def test_too_few_real_frames_skip_the_sharpness_band_and_say_so(ws, tmp_path):
    """A quantile band from a handful of real frames excludes the frames themselves: below
    filter.sharpness.min_real_frames the criterion is skipped, recorded, and nothing is
    rejected as blurred or noisy."""
    root, params = ws["root"], ws["params"]
    g = "ddpm_3mixed"
    few = dataclasses.replace(
        params.filter,
        sharpness=dataclasses.replace(params.filter.sharpness, min_real_frames=10**6),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", ws["uri"])
        mp.chdir(root)
        m = _filter(
            root,
            g,
            params,
            ws["splits"],
            cfg=few,
            kept=tmp_path / "kept",
            table=tmp_path / "filter.csv",
            metrics=tmp_path / "synthetic.json",
            plots=tmp_path / "plots",
        )
    assert "min_real_frames" in m["sharpness"]["skipped"]
    assert m["thresholds"]["min_sharpness"] is None and m["thresholds"]["max_sharpness"] is None
    assert m["rejected_by_reason"]["blurred"] == m["rejected_by_reason"]["noisy"] == 0
    assert ws["filt"][g]["sharpness"]["skipped"] is None  # the fixture's real band applied


def test_encoder_and_base_skip_when_no_stage_reads_them(
    frames_root, gen_params, tmp_path, mlflow_uri
):
    """No enabled generator: nothing reads the encoder. Only DDPMs: nothing reads a base. Each
    writes why instead of a model, without training (no MLflow run is even opened)."""
    splits, val = frames_root / "data/splits.csv", frames_root / "metrics/validation.json"
    p = gen_params
    enc_paths = encoder.EncoderPaths(splits, tmp_path / "encoder", tmp_path / "encoder.json", val)
    enc = encoder.run(enc_paths, p.base, p.train, p.filter.encoder, p.mlflow, enabled=[], fold=1)
    assert enc == {"fold": 1, "trained": False, "skipped": encoder.skip_reason([])}
    assert "generate.enabled is empty" in enc["skipped"]
    assert [f.name for f in enc_paths.out.iterdir()] == ["skipped.json"]
    assert json.loads((enc_paths.out / "skipped.json").read_text()) == enc
    assert json.loads(enc_paths.metrics.read_text()) == enc
    ddpm_only = dataclasses.replace(p.generate, enabled=["ddpm_all", "ddpm_3mixed"])
    base_paths = base_model.BaseModelPaths(splits, tmp_path / "base", None, val)
    base = base_model.run(base_paths, p.base, p.base_model, ddpm_only, p.mlflow, fold=1)
    assert base["trained"] is False and "builds on a base" in base["skipped"]
    assert [f.name for f in base_paths.out.iterdir()] == ["skipped.json"]
    assert not (tmp_path / "mlflow.db").exists()  # the tracking store was never opened


def test_a_base_trained_on_the_same_settings_and_frames_is_kept(ws):
    """base_model@k's folder persists: a re-run (e.g. generate.enabled changed) with the same
    base settings, seed and frames keeps it as it is, in seconds, without a new MLflow run."""
    import mlflow

    root, params = ws["root"], ws["params"]
    paths = base_model.BaseModelPaths(ws["splits"], root / "models/base_model", None, ws["val"])
    before = hashed_bytes(paths.out)
    mlflow.set_tracking_uri(ws["uri"])
    runs = mlflow.search_runs(search_all_experiments=True, filter_string=BASE_RUNS)
    fewer = dataclasses.replace(params.generate, enabled=["ti_object"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", ws["uri"])
        mp.chdir(root)
        kept = base_model.run(paths, params.base, params.base_model, fewer, params.mlflow)
    assert kept == json.loads((paths.out / base_model.SUMMARY_FILE).read_text())
    assert kept["trained"] and hashed_bytes(paths.out) == before
    after = mlflow.search_runs(
        search_all_experiments=True, filter_string="run_name = 'base_model'"
    )
    assert len(after) == len(runs)


def test_text_generators_fail_before_any_work_without_a_base(ws, tmp_path):
    with pytest.raises(BaseModelError, match="generate.base"):
        paths = generate.GeneratePaths(
            ws["splits"], tmp_path / "no_base", tmp_path / "m", tmp_path / "c", None, ws["val"]
        )
        _generate(paths, "ti_object", ws["params"])
    assert not (tmp_path / "m").exists()


def test_nothing_runs_on_a_split_that_failed_validation(ws, tmp_path):
    bad = tmp_path / "validation.json"
    bad.write_text('{"success": false}')
    with pytest.raises(GeneratorDataError, match="failed validation"):
        paths = generate.GeneratePaths(
            ws["splits"], None, tmp_path / "m", tmp_path / "c", None, bad
        )
        _generate(paths, "ddpm_3mixed", ws["params"])
    assert not Path(tmp_path / "m").exists()


def test_a_conditional_generator_samples_and_screens_every_class(ws, tmp_path):
    """ddpm_conditional writes candidates/<class>/ for the other classes; the filter screens them
    into kept/<class>/ and counts them (what synthetic_only-<G> trains on)."""
    from lusaug.generators.generator import Generator

    g, params, root = "ddpm_conditional", ws["params"], ws["root"]
    params = dataclasses.replace(
        params, generate=dataclasses.replace(params.generate, enabled=[*GENERATORS, g])
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", ws["uri"])
        mp.chdir(root)
        metrics = _generate_and_filter(root, g, params, ws["splits"], ws["val"])
    classes, target = params.base.classes, params.base.target_class
    others = [c for c in classes if c != target]
    cand_dir, kept_dir = root / f"data/synthetic/{g}/candidates", root / f"data/synthetic/{g}/kept"
    assert sorted(p.name for p in cand_dir.iterdir() if p.is_dir()) == sorted(others)
    assert len(load_folder(cand_dir)[1]) == params.generate.sampling.candidates  # the rare class
    for c in others:
        cands = {p.name for p in load_folder(cand_dir / c)[1]}
        kept = {p.name for p in load_folder(kept_dir / c)[1]}
        assert len(cands) == params.generate.sampling.candidates and kept <= cands
        assert metrics["other_classes"][c]["kept"] == len(kept)
        assert metrics["other_classes"][c]["candidates"] == len(cands)
    assert metrics["kept"] == len(load_folder(kept_dir)[1])  # top level: the rare class only
    generator = Generator.load(root / f"models/generators/{g}")
    a, b = generator.sample(2, 0, label=others[0]), generator.sample(2, 0)
    assert a.shape == b.shape and not np.array_equal(a, b)  # the label conditions the sample
    with pytest.raises(ValueError, match="samples one class only"):
        Generator.load(root / "models/generators/ddpm_3mixed").sample(1, 0, label=others[0])
