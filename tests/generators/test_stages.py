"""encoder -> generate@G -> filter@G as library calls on a tiny fixture, with a real MLflow."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lusaug.generators.data import GeneratorDataError, load_folder
from lusaug.generators.stages import run_encoder, run_filter, run_generate
from lusaug.generators.textual_inversion import TextualInversionError

GENERATORS = ["ddpm_3mixed", "ddpm_all_leaky", "ti_object"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory, frames_root, gen_params, tiny_sd_dir):
    """Run the three stages for three generators once; tests inspect the outputs."""
    root = tmp_path_factory.mktemp("ws")
    splits = frames_root / "data" / "splits.csv"
    val = frames_root / "metrics" / "validation.json"
    ti_cfg = dataclasses.replace(
        gen_params.generate.ti,
        checkpoint=str(tiny_sd_dir),
        resolution=32,
        train_steps=2,
        inference_steps=2,
        guidance_scale=1.0,
        num_vectors=2,
        initializer="lung",
    )
    params = dataclasses.replace(
        gen_params,
        generate=dataclasses.replace(gen_params.generate, enabled=GENERATORS, ti=ti_cfg),
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.chdir(root)
        enc = run_encoder(
            splits,
            root / "models/encoder",
            root / "metrics/encoder.json",
            params,
            val,
            progress=False,
        )
        gens, filt = {}, {}
        for g in GENERATORS:
            gens[g] = run_generate(
                g,
                splits,
                root / f"models/generators/{g}",
                root / f"data/synthetic/{g}/candidates",
                params,
                checkpoint_dir=root / f"models/checkpoints/{g}",
                resume=True,
                validation_json=val,
                progress=False,
            )
            filt[g] = run_filter(
                g,
                splits,
                root / f"models/generators/{g}",
                root / f"data/synthetic/{g}/candidates",
                root / "models/encoder",
                root / f"data/synthetic/{g}/kept",
                root / f"data/synthetic/{g}/filter.csv",
                root / f"metrics/synthetic_{g}.json",
                root / f"plots/synthetic/{g}",
                params,
                val,
            )
        yield {
            "root": root,
            "params": params,
            "enc": enc,
            "gens": gens,
            "filt": filt,
            "uri": f"sqlite:///{root / 'mlflow.db'}",
            "splits": splits,
            "val": val,
        }


def test_encoder_outputs(ws):
    assert (ws["root"] / "models/encoder/encoder.pt").exists()
    saved = json.loads((ws["root"] / "metrics/encoder.json").read_text())
    assert saved["num_features"] == ws["enc"]["num_features"] > 0


def test_generate_writes_a_loadable_model_and_candidates(ws):
    from diffusers import DDPMPipeline

    root, params = ws["root"], ws["params"]
    model = root / "models/generators/ddpm_3mixed"
    pipe = DDPMPipeline.from_pretrained(model)
    assert pipe.unet.config.sample_size == params.generate.ddpm.resolution
    meta = json.loads((model / "generator.json").read_text())
    assert meta["train_set"] == "3mixed" and meta["leaky"] is False
    train = pd.read_csv(model / "train_set.csv")
    assert set(train["split"]) == {"train"} and train["patient_id"].nunique() == len(train) == 3
    cands, paths = load_folder(root / "data/synthetic/ddpm_3mixed/candidates")
    assert len(paths) == params.generate.sampling.candidates
    assert cands.shape[1:] == (params.base.image_size,) * 2
    assert not (root / "models/checkpoints/ddpm_3mixed").exists()  # finished: no resume state


def test_filter_outputs_agree_with_each_other(ws):
    root = ws["root"]
    for g in GENERATORS:
        m = json.loads((root / f"metrics/synthetic_{g}.json").read_text())
        table = pd.read_csv(root / f"data/synthetic/{g}/filter.csv")
        kept = sorted(p.name for p in (root / f"data/synthetic/{g}/kept").glob("*.png"))
        assert m["candidates"] == len(table) == ws["params"].generate.sampling.candidates
        assert m["kept"] == len(kept) == int(table["kept"].sum())
        assert kept == sorted(table.loc[table["kept"], "file"])
        assert m["kept"] + m["rejected"] == m["candidates"]
        assert m["memorisation"]["rate"] == pytest.approx(table["memorised"].mean())
        low_std = int((table["std"] <= m["thresholds"]["min_std"]).sum())
        assert m["rejected_by_reason"]["low_std"] == low_std
        if m["kept"] >= 2:
            assert m["kid"]["low"] <= m["kid"]["mean"] <= m["kid"]["high"]
            assert "FID" in m["fid_caveat"]
        for fig in ("filter_scatter.png", "kept_grid.png", "closest_pairs.png"):
            assert (root / f"plots/synthetic/{g}/{fig}").stat().st_size > 0


def test_leaky_generator_is_marked_everywhere(ws):
    import mlflow

    root = ws["root"]
    m = json.loads((root / "metrics/synthetic_ddpm_all_leaky.json").read_text())
    assert m["leaky"] is True and "LEAKY" in m["leakage"]
    train = pd.read_csv(root / "models/generators/ddpm_all_leaky/train_set.csv")
    assert {"val", "test"} <= set(train["split"])
    mlflow.set_tracking_uri(ws["uri"])
    run = mlflow.get_run(m["mlflow_run_id"])
    assert run.data.tags["leaky"] == "true" and "LEAKY" in run.data.tags["warning"]


def test_mlflow_run_has_tags_params_curve_grids_and_scatter(ws):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(ws["uri"])
    m = ws["filt"]["ddpm_3mixed"]
    run = mlflow.get_run(m["mlflow_run_id"])
    tags = run.data.tags
    for k, v in {
        "generator": "ddpm_3mixed",
        "target_class": "viral",
        "train_set": "3mixed",
        "leaky": "false",
    }.items():
        assert tags[k] == v
    assert tags["git_commit"] and tags["data_hash"]
    assert run.data.params["ddpm.train_steps"] == str(ws["params"].generate.ddpm.train_steps)
    client = MlflowClient()
    hist = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(hist) == ws["params"].generate.ddpm.train_steps
    assert "filter.kept" in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert any(p.startswith("samples/step_") for p in arts)
    assert "filter/filter_scatter.png" in {
        a.path for a in client.list_artifacts(run.info.run_id, "filter")
    }
    children = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id],
        filter_string=(f"tags.mlflow.parentRunId = '{run.info.run_id}'"),
        output_format="list",
    )
    assert children and "filter.min_std" in children[0].data.params


def test_best_non_leaky_generator_is_registered_and_samples(ws):
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(ws["uri"])
    root = ws["root"]
    metrics = [json.loads((root / f"metrics/synthetic_{g}.json").read_text()) for g in GENERATORS]
    bound = ws["params"].filter.max_memorisation_rate
    eligible = [
        m for m in metrics if not m["leaky"] and m["kid"] and m["memorisation"]["rate"] <= bound
    ]
    mv = MlflowClient().get_model_version_by_alias("lus-generator-viral", "champion")
    if not eligible:
        pytest.fail(f"no eligible generator in the fixture run: {metrics}")
    best = min(eligible, key=lambda m: m["kid"]["mean"])
    assert mv.tags["generator"] == best["generator"] and mv.tags["leaky"] == "false"
    model = mlflow.pyfunc.load_model("models:/lus-generator-viral@champion")
    imgs = model.predict(pd.DataFrame({"n": [2], "seed": [0]}))
    size = ws["params"].base.image_size
    assert np.asarray(imgs).shape == (2, size, size)


def test_textual_inversion_generator_outputs(ws):
    root = ws["root"]
    model = root / "models/generators/ti_object"
    emb = model / "learned_embeds.safetensors"
    assert emb.exists() and emb.stat().st_size < 1024 * 1024
    assert (model / "with_without_token.png").exists()
    meta = json.loads((model / "generator.json").read_text())
    assert meta["template"] == "object" and meta["placeholder_token"] == (
        "<viral-pneumonia-ultrasound>"
    )
    assert (
        len(list((root / "data/synthetic/ti_object/candidates").glob("*.png")))
        == ws["params"].generate.sampling.candidates
    )


def test_ti_without_checkpoint_fails_before_any_work(ws, tmp_path):
    params = ws["params"]
    no_ckpt = dataclasses.replace(
        params,
        generate=dataclasses.replace(
            params.generate, ti=dataclasses.replace(params.generate.ti, checkpoint="")
        ),
    )
    with pytest.raises(TextualInversionError, match="generate.ti.checkpoint"):
        run_generate(
            "ti_style",
            ws["splits"],
            tmp_path / "m",
            tmp_path / "c",
            no_ckpt,
            validation_json=ws["val"],
        )
    assert not (tmp_path / "m").exists()


def test_nothing_runs_on_a_split_that_failed_validation(ws, tmp_path):
    bad = tmp_path / "validation.json"
    bad.write_text('{"success": false}')
    with pytest.raises(GeneratorDataError, match="failed validation"):
        run_generate(
            "ddpm_3mixed",
            ws["splits"],
            tmp_path / "m",
            tmp_path / "c",
            ws["params"],
            validation_json=bad,
        )
    assert not Path(tmp_path / "m").exists()


def test_stale_metrics_of_other_generators_are_never_registered(ws, tmp_path):
    """A metrics file from git or another run (other split, or a run this store lacks) with a
    better KID must neither win the registry nor crash the filter."""
    import mlflow

    root, params = ws["root"], ws["params"]
    mine = json.loads((root / "metrics/synthetic_ddpm_3mixed.json").read_text())
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    better = {"mean": -1.0, "std": 0.0, "low": -1.0, "high": -1.0}
    other_split = {
        **mine,
        "generator": "ti_object",
        "kid": better,
        "scored_against": {**mine["scored_against"], "splits_sha256": "0" * 64},
    }
    other_store = {
        **mine,
        "generator": "ddpm_all_leaky",
        "leaky": False,
        "kid": better,
        "mlflow_run_id": "f" * 32,
        "model_uri": "models:/m-" + "f" * 32,
    }
    (metrics_dir / "synthetic_ti_object.json").write_text(json.dumps(other_split))
    (metrics_dir / "synthetic_ddpm_all_leaky.json").write_text(json.dumps(other_store))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", ws["uri"])
        mp.chdir(root)
        out = run_filter(
            "ddpm_3mixed",
            ws["splits"],
            root / "models/generators/ddpm_3mixed",
            root / "data/synthetic/ddpm_3mixed/candidates",
            root / "models/encoder",
            tmp_path / "kept",
            tmp_path / "filter.csv",
            metrics_dir / "synthetic_ddpm_3mixed.json",
            tmp_path / "plots",
            params,
            ws["val"],
        )
        mlflow.set_tracking_uri(ws["uri"])
        champion = mlflow.MlflowClient().get_model_version_by_alias(
            "lus-generator-viral", "champion"
        )
    not_comparable = out["registry"]["not_comparable"]
    assert "other data" in not_comparable["ti_object"]
    assert "not in this tracking store" in not_comparable["ddpm_all_leaky"]
    assert champion.tags["generator"] == "ddpm_3mixed"
