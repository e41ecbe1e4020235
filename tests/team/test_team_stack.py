"""For a team: one `micro` `dvc repro` against a shared MLflow server (PostgreSQL + S3), then
everything a team does with it: lineage and the model card, the MLflow UI in a real Chromium,
`dvc plots` offline, Optuna with two workers on PostgreSQL, `lusaug promote` + `lusaug serve`
with hot reload, and DVC remotes (S3 stand-in and a local folder) feeding a fresh clone.

All real services started by the tests (tests/team/services.py); no mocks. One session-wide
repro (tests/team/stack.py: one hold-out fold, one generator, four strategies) serves every
test here and is the reference of tests/cluster. Skips with the reason when PostgreSQL,
moto, Chromium or Playwright cannot run here.
"""

from __future__ import annotations

import filecmp
import itertools
import json
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from mlflow import MlflowClient

from lusaug.core.config import parse_strategy
from lusaug.core.mlflow_store import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, EXPERIMENTS
from tests.helpers.matrix import set_strategies
from tests.team import browser
from tests.team.helpers import git_commit_all, run
from tests.team.services import free_port, start_mlflow, stop_group, wait_http
from tests.team.stack import DVC_BUCKET, TeamRepro, TrackingServer

pytestmark = pytest.mark.slow

NAME = "lus-classifier"
SERVE_RELOAD_S = 90  # serve.reload_poll_s is 10 s; the poll then downloads the new version


@dataclass
class Team:
    repo: Path
    env: dict[str, str]
    server: TrackingServer
    local_remote: Path
    root: Path

    @property
    def client(self) -> MlflowClient:
        return MlflowClient(tracking_uri=self.server.url)

    def experiment_id(self, kind: str) -> str:
        return self.client.get_experiment_by_name(EXPERIMENTS[kind]).experiment_id


@pytest.fixture(scope="module")
def team(team_repro: TeamRepro) -> Team:
    """The session's team micro repro (tests/team/stack.py; tests/cluster compares with it)."""
    t = team_repro
    return Team(t.repo, t.env, t.server, t.local_remote, t.root)


def _json(path: Path):
    return json.loads(path.read_text())


def _raw_md5(repo: Path) -> str:
    return yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]


def _split_md5s(repo: Path) -> dict[str, str]:
    """DVC's own record of every split file: the .dir manifest of data/splits in the cache."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["split"]["outs"]
    dir_md5 = next(o["md5"] for o in lock if o["path"] == "data/splits")
    manifest = repo / ".dvc" / "cache" / "files" / "md5" / dir_md5[:2] / dir_md5[2:]
    return {e["relpath"]: e["md5"] for e in json.loads(manifest.read_text())}


def _inputs(run) -> dict[str, tuple[str, str, dict]]:
    """name -> (digest, context, source) of a run's dataset inputs."""
    out = {}
    for di in run.inputs.dataset_inputs:
        context = {t.key: t.value for t in di.tags}.get("mlflow.data.context", "")
        out[di.dataset.name] = (di.dataset.digest, context, json.loads(di.dataset.source))
    return out


def _head(repo: Path) -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.strip()


# --- the shared stores ----------------------------------------------------------------------


def test_the_repro_is_tracked_in_postgresql_and_s3(team):
    client = team.client
    experiments = {k: client.get_experiment_by_name(n) for k, n in EXPERIMENTS.items()}
    assert all(experiments.values()), experiments
    for exp in experiments.values():  # so MLflow's UI treats them as model training
        assert exp.tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND, exp.name
    runs = client.search_runs([e.experiment_id for e in experiments.values()], max_results=5000)
    pg = team.server.postgres
    ids = ",".join(f"'{e.experiment_id}'" for e in experiments.values())
    ((in_pg,),) = pg.query("mlflow", f"select count(*) from runs where experiment_id in ({ids})")
    assert in_pg == len(runs) > 0
    keys = team.server.s3.keys("mlflow", "artifacts/")
    names = {Path(k).name for k in keys}
    assert {"val_confusion.png", "classifier.onnx", "model_card.md"} <= names, sorted(names)[:20]
    assert not (team.repo / "mlflow.db").exists() and not (team.repo / "mlartifacts").exists()
    registered = _json(team.repo / "models/registered.json")
    mv = client.get_model_version_by_alias(NAME, "candidate")
    assert str(mv.version) == registered["version"] == "1"
    assert mv.tags["onnx_parity"] == "passed"


def test_every_classifier_run_logs_its_dvc_hashed_data(team):
    raw, splits = _raw_md5(team.repo), _split_md5s(team.repo)
    runs = [  # the fold runs and the final model's run (role final, outside the fold groups)
        r
        for r in team.client.search_runs([team.experiment_id("classifiers")], max_results=1000)
        if r.data.tags.get("lusaug.role") in ("train", "final")
    ]
    params = yaml.safe_load((team.repo / "params.yaml").read_text())
    train = params["train"]
    per_fold = len(train["strategies"]) * len(train["architectures"]) * len(train["seeds"])
    assert len(runs) >= per_fold * len(params["split"]["folds"]) + 1  # + the final model's
    for r in runs:
        fold = r.data.tags["fold"]
        split = f"fold-{fold}.csv" if fold else "fold-final.csv"
        inputs = _inputs(r)
        synthetic = {n for n, (_, context, _) in inputs.items() if context == "synthetic"}
        gen = parse_strategy(r.data.tags["strategy"]).generator
        assert len(synthetic) == (1 if gen else 0), (r.info.run_name, inputs)  # what it used
        assert all(n.endswith(f"/{gen}/kept") for n in synthetic), (r.info.run_name, synthetic)
        assert set(inputs) - synthetic == {"data/raw", f"data/splits/{split}"}, (
            r.info.run_name, inputs,
        )  # fmt: skip
        digest, context, source = inputs["data/raw"]
        assert (digest, context) == (raw, "raw")
        digest, context, source = inputs[f"data/splits/{split}"]
        assert (digest, context) == (splits[split], "training"), r.info.run_name
        assert source["path"] == f"data/splits/{split}"
        assert source["remote"] == f"s3://{DVC_BUCKET}/store"
        assert r.data.tags["split_hash"] == splits[split] and r.data.tags["data_hash"] == raw


def test_the_registered_version_links_run_data_commit_and_carries_its_card(team):
    import mlflow

    client = team.client
    mv = client.get_model_version(NAME, "1")
    raw, splits = _raw_md5(team.repo), _split_md5s(team.repo)
    reg_run = client.get_run(mv.run_id)  # the version's run: the register run
    assert reg_run.info.run_name == "register"
    inputs = _inputs(reg_run)
    assert inputs["data/raw"][0] == raw
    assert inputs["data/splits/fold-final.csv"][0] == splits["fold-final.csv"]
    t = mv.tags
    assert (t["data_hash"], t["split_hash"], t["register_run_id"]) == (
        raw, splits["fold-final.csv"], mv.run_id,
    )  # fmt: skip
    head = _head(team.repo)
    assert t["git_commit"].removesuffix("-dirty") == head
    train_run = client.get_run(t["train_run_id"])  # the final refit's training run
    assert train_run.data.tags["lusaug.role"] == "final" and train_run.data.tags["fold"] == ""
    assert train_run.info.run_name.startswith("final-")

    card = mv.description
    model_id = mv.source.removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location
    mlflow.set_tracking_uri(team.server.url)
    dst = team.root / "card"
    as_artifact = Path(
        mlflow.artifacts.download_artifacts(f"{location}/model_card.md", dst_path=str(dst))
    ).read_text()
    assert as_artifact == card
    for text in (
        "## Data", "## Cross-validated estimate", "## Decision record", "## Lineage",
        "## Intended use", "research tool; not for clinical use", "## Limitations",
        raw, splits["fold-final.csv"], head, mv.run_id, t["train_run_id"], "data/splits/fold-final.csv",
    ):  # fmt: skip
        assert text in card, text
    primary = _json(team.repo / "metrics/comparison.json")["primary"]
    assert f"primary comparison `{primary['name']}`" in card
    assert (primary["decision"] or {}).get("verdict", "not evaluated") in card
    # one hold-out fold tests one patient per class: no patient spread for the verdict intervals
    # (the value alone), while the descriptive bootstrap still gives one
    assert re.search(r"^- f1_macro: \d+\.\d$", card, re.MULTILINE), card
    assert re.search(r"^- precision_macro: \d+\.\d \[\d+\.\d, \d+\.\d\]$", card, re.MULTILINE), (
        card
    )


# --- in a real browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_ui(team):
    """`mlflow ui` on the team's store (PostgreSQL runs, S3 artifacts)."""
    browser.chromium_path()  # skip before starting anything when there is no browser
    srv = team.server
    ui = start_mlflow(
        srv.backend_uri, srv.artifacts, srv.s3.env, team.root / "ui.log", command="ui"
    )
    try:
        yield ui.url
    finally:
        ui.stop()


def test_mlflow_ui_shows_strategies_datasets_confusion_matrix_and_compare(team, mlflow_ui):
    exp_id = team.experiment_id("classifiers")
    search = "tags.architecture = 'resnet' and tags.fold = '0'"
    runs = team.client.search_runs([exp_id], search, max_results=100)
    by_name = {r.info.run_name: r for r in runs}
    assert {"baseline-resnet-0", "class_weights-resnet-0"} <= set(by_name)
    with browser.browser_page() as page:
        # A new user: experiments list, the "Model training" switch, the experiment -> its runs.
        page.goto(f"{mlflow_ui}/#/experiments")
        page.get_by_text("Model training", exact=True).first.click()
        page.get_by_text(EXPERIMENTS["classifiers"], exact=True).first.click()
        page.get_by_text("matching runs").wait_for()
        assert f"#/experiments/{exp_id}/runs" in page.url, page.url
        # A link can carry the view as well.
        page.goto(f"{mlflow_ui}/#/experiments/{exp_id}?{browser.ML_WORKFLOW}")
        page.wait_for_url(f"**/#/experiments/{exp_id}/runs**")

    with browser.browser_page() as page:
        browser.open_runs(page, mlflow_ui, exp_id, search)
        page.get_by_text(f"{len(runs) + 1} matching runs").wait_for()  # + their parent
        browser.show_tag_column(page, "strategy")
        browser.expand_parents(page)
        page.get_by_text("baseline-resnet-0", exact=True).first.wait_for()
        for name, r in by_name.items():
            assert browser.cell(page, name, "tags.`strategy`") == r.data.tags["strategy"]
            dataset = browser.cell(page, name, "attributes.`Dataset`")
            assert re.search(r"(data/raw|data/splits/fold-0\.csv) \(", dataset), (name, dataset)
            synthetic = parse_strategy(r.data.tags["strategy"]).generator
            assert ("+2" if synthetic else "+1") in dataset, (name, dataset)  # every input
        browser.screenshot(page, "mlflow_runs_strategies.png")

        # Compare two strategies.
        for name in ("baseline-resnet-0", "class_weights-resnet-0"):
            browser.row(page, name).locator("input.ag-checkbox-input").first.check()
        page.get_by_role("button", name="Compare").click()
        page.get_by_text("Comparing 2 Runs").wait_for()
        for name in ("baseline-resnet-0", "class_weights-resnet-0"):
            page.get_by_text(name, exact=True).first.wait_for()

    with browser.browser_page() as page:
        # The chart view: one bar per strategy for a validation metric.
        browser.open_runs(page, mlflow_ui, exp_id, search, charts=True)
        browser.expand_parents(page)
        page.get_by_text("baseline-resnet-0", exact=True).first.wait_for()
        (parent,) = {r.data.tags["mlflow.parentRunId"] for r in runs}
        browser.hide_run(page, team.client.get_run(parent).info.run_name)
        page.get_by_placeholder("Search metric charts").fill("best_val_f1_macro")
        bars = page.locator(".js-plotly-plot g.point")
        page.wait_for_function(
            f"() => document.querySelectorAll('.js-plotly-plot g.point').length == {len(runs)}"
        )
        assert bars.count() == len(runs)  # one bar per strategy, the parent hidden
        browser.screenshot(page, "mlflow_compare_strategies.png")

    with browser.browser_page() as page:
        # A run's artifacts show its confusion matrix.
        run_id = by_name["baseline-resnet-0"].info.run_id
        page.goto(
            f"{mlflow_ui}/#/experiments/{exp_id}/runs/{run_id}/artifacts?{browser.ML_WORKFLOW}"
        )
        browser.close_assistant(page)
        page.get_by_text("validation", exact=True).first.click()
        page.get_by_text("val_confusion.png", exact=True).click()
        shown = page.wait_for_function(  # the figure decoded and laid out at a readable size
            """() => { const big = [...document.images].filter(i => i.complete
                && i.naturalWidth > 100 && i.getBoundingClientRect().width > 100);
                return big.length ? big.map(i => i.naturalWidth) : null; }"""
        ).json_value()
        assert shown, browser.images_loaded(page)
        browser.screenshot(page, "mlflow_run_confusion.png")


def test_dvc_plots_html_renders_its_figures_offline(team):
    browser.chromium_path()
    out = team.root / "plots_html"
    run(["dvc", "plots", "show", "-o", str(out)], team.repo, team.env)
    pngs = sorted((team.repo / "plots/evaluate/figures").glob("*.png"))
    assert pngs
    with browser.browser_page(offline=True) as page:
        page.goto((out / "index.html").as_uri())
        page.wait_for_load_state("load")
        images = browser.images_loaded(page)
        assert len(images) == len(pngs), images
        assert all(i["loaded"] and i["width"] > 50 and i["height"] > 50 for i in images), images
        # the offline template (.dvc/plots_offline.html) carries vega: nothing is fetched
        assert page.blocked == [], page.blocked


# --- Optuna on PostgreSQL -------------------------------------------------------------------


def test_two_tuning_workers_finish_one_study_on_postgresql(team):
    """tune.storage = postgresql://..., tune.workers = 2: the stage's process and one worker."""
    import optuna

    url = team.server.postgres.create_database("optuna")
    params = yaml.safe_load((team.repo / "params.yaml").read_text())
    params["tune"].update(storage=url, workers=2, n_trials=10)
    set_strategies(params, ["baseline", "class_weights_tuned"])  # one tuned study
    params_file = team.root / "params-tune-pg.yaml"
    params_file.write_text(yaml.safe_dump(params))
    out = team.root / "tune-pg"
    run(
        ["python", "pipelines/tune.py", "data/splits/fold-0.csv", str(out / "tuned.yaml"),
         str(out / "plots"), "--fold", "0", "--synthetic", "data/synthetic/fold-0",
         "--no-tracking"],
        team.repo, {**team.env, "LUSAUG_PARAMS": str(params_file)},
    )  # fmt: skip
    (summary,) = optuna.get_all_study_summaries(url)
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    done = [t for t in study.trials if t.state.is_finished()]
    assert len([t for t in done if t.state != optuna.trial.TrialState.FAIL]) >= 10
    spans = sorted((t.datetime_start, t.datetime_complete) for t in done)
    overlaps = any(b[0] < a[1] for a, b in itertools.pairwise(spans))
    assert overlaps, "no two trials ran at once: the second worker did not take part"
    tuned = yaml.safe_load((out / "tuned.yaml").read_text())
    assert tuned["class_weights_tuned"]["study"]["finished_trials"] >= 10


# --- promote, serve, hot reload ---------------------------------------------------------------


def _predict(url: str, frame: bytes) -> dict:
    r = httpx.post(f"{url}/predict", files=[("files", ("f.png", frame, "image/png"))], timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def test_promote_then_serve_production_and_hot_reload_a_second_promotion(team):
    repo, env = team.repo, team.env
    for to in ("staging", "production"):
        out = run(["lusaug", "promote", "1", "--to", to], repo, env).stdout
        assert f"{NAME}@{to}: unset -> v1" in out, out

    port = free_port()
    log = team.root / "serve.log"
    with log.open("w") as fh:
        proc = subprocess.Popen(
            ["lusaug", "serve", "--model", f"models:/{NAME}@production", "--port", str(port)],
            cwd=repo, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    frame = next(iter(sorted((repo / "data/frames").rglob("*.png")))).read_bytes()
    try:
        wait_http(f"{url}/health", proc, 120, log)
        first = _predict(url, frame)
        assert first["model"]["version"] == "1" and first["model"]["alias"] == "production"

        # A second version: re-export at another opset (a param change), repro, promote it.
        params = yaml.safe_load((repo / "params.yaml").read_text())
        text = (repo / "params.yaml").read_text()
        opset = params["export"]["opset"]
        (repo / "params.yaml").write_text(
            re.sub(rf"(\n  opset: ){opset}\b", rf"\g<1>{opset + 1}", text, count=1)
        )
        assert yaml.safe_load((repo / "params.yaml").read_text())["export"]["opset"] == opset + 1
        out = run(["dvc", "repro"], repo, env).stdout
        assert "Running stage 'register'" in out and "Running stage 'train" not in out, out
        assert _json(repo / "models/registered.json")["version"] == "2"
        git_commit_all(repo, f"export at opset {opset + 1}")
        for to in ("staging", "production"):
            out = run(["lusaug", "promote", "2", "--to", to], repo, env).stdout
            assert f"{NAME}@{to}: v1 -> v2" in out, out

        deadline = time.monotonic() + SERVE_RELOAD_S
        while httpx.get(f"{url}/metadata", timeout=10).json()["version"] != "2":
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not follow @production to v2"
            time.sleep(1)
        second = _predict(url, frame)
        assert second["model"]["version"] == "2"
        meta = httpx.get(f"{url}/metadata", timeout=10).json()
        assert meta["reloads"] >= 1
        assert meta["onnx_sha256"] == team.client.get_model_version(NAME, "2").tags["onnx_sha256"]
    finally:
        stop_group(proc)


# --- DVC remotes ----------------------------------------------------------------------------


def _metrics_identical(a: Path, b: Path) -> None:
    cmp = filecmp.dircmp(a, b)
    # execution records (timings) are git-ignored by design: a clone never has them
    files = [
        p.relative_to(a)
        for p in a.rglob("*")
        if p.is_file() and not p.name.endswith("execution.json")
    ]
    assert files
    for rel in files:
        assert (b / rel).is_file(), f"{rel} missing in the clone"
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), f"{rel} differs"
    assert not [n for n in cmp.right_only if not n.endswith("execution.json")], cmp.right_only


def test_dvc_push_to_both_remotes_then_a_fresh_clone_pulls_and_repro_is_a_noop(team):
    repo, env = team.repo, team.env
    git_commit_all(repo, "pipeline outputs (dvc.lock, metrics)")
    run(["dvc", "push"], repo, env)  # the default remote: S3
    run(["dvc", "push", "-r", "local"], repo, env)
    assert team.server.s3.keys(DVC_BUCKET, "store/files/md5/")
    assert any((team.local_remote / "files" / "md5").rglob("*"))

    for remote in ("s3", "local"):
        clone = team.root / f"clone-{remote}"
        subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
        run(["dvc", "pull", "-r", remote], clone, env)
        status = run(["dvc", "status", "--json"], clone, env).stdout
        assert json.loads(status) == {}, status
        out = run(["dvc", "repro"], clone, env).stdout
        assert "Running stage" not in out, out
        _metrics_identical(repo / "metrics", clone / "metrics")
        assert (clone / "models/final/classifier/model.pt").read_bytes() == (
            repo / "models/final/classifier/model.pt"
        ).read_bytes()
