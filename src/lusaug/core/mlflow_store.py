"""Where runs go, what every run is tagged with, and which data it read (lineage).

Default store: ``sqlite:///<repo>/mlflow.db`` with artifacts in ``<repo>/mlartifacts``; any
``MLFLOW_TRACKING_URI`` (a server, another database) wins.

Lineage: :func:`log_data_inputs` records on a run, as MLflow dataset inputs, the DVC-tracked
data it read: ``data/raw`` (digest = its DVC hash from ``data.dvc``) and its split file (digest
= the file's DVC hash, the md5 DVC records for it inside ``data/splits``), each with a ``dvc``
source (repository, git revision, path, DVC remote): the digest is the content address of those
bytes in the DVC cache and remote. A run that trains on synthetic images also logs them
(:func:`synthetic_input`, context ``synthetic``).
"""

from __future__ import annotations

import configparser
import csv
import hashlib
import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lusaug.core.utils import file_hash

EXPERIMENTS = {
    "classifiers": "lusaug-classifiers",
    "generators": "lusaug-generators",
    "tuning": "lusaug-tuning",
}
# MLflow 3's UI opens an experiment by its kind: without this tag it guesses "GenAI" and shows
# a traces overview; with it, the experiment opens on its training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def tracking_uri(configured: str = "", root: Path | str = ".") -> str:
    """Resolve the tracking URI: env var, then params, then the local SQLite file (absolute)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if configured:
        return configured
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def setup_experiment(kind: str, configured_uri: str = "", root: Path | str = ".") -> str:
    """Point MLflow at the store and select (creating if needed) the experiment for ``kind``."""
    import mlflow

    uri = tracking_uri(configured_uri, root)
    mlflow.set_tracking_uri(uri)
    name = EXPERIMENTS[kind]
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        artifact_location = None
        if uri.startswith("sqlite:///"):
            # Keep artifacts beside the database rather than in ./mlruns of whatever cwd.
            db_path = Path(uri.removeprefix("sqlite:///"))
            artifact_location = (db_path.parent / "mlartifacts").resolve().as_uri()
        exp_id = mlflow.create_experiment(
            name, artifact_location=artifact_location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
        )
    else:
        exp_id = exp.experiment_id
        if exp.tags.get(EXPERIMENT_KIND_TAG) != EXPERIMENT_KIND:  # made before the tag existed
            mlflow.MlflowClient().set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    mlflow.set_experiment(experiment_id=exp_id)
    return exp_id


def git_commit(root: Path | str = ".") -> str:
    """Current commit (with ``-dirty`` when the tree has changes), or ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return f"{sha}-dirty" if dirty else sha
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def data_hash(root: Path | str = ".") -> str:
    """The DVC hash of data/raw from ``data.dvc`` (what the run's data version is)."""
    dvc_file = Path(root) / "data.dvc"
    if not dvc_file.exists():
        return "unknown"
    with dvc_file.open() as fh:
        outs = (yaml.safe_load(fh) or {}).get("outs") or [{}]
    return str(outs[0].get("md5", "unknown"))


def standard_tags(root: Path | str = ".", **extra: object) -> dict[str, str]:
    """Tags every lusaug run carries (git commit, data hash, DVC stage) plus ``extra``."""
    tags = {
        "git_commit": git_commit(root),
        "data_hash": data_hash(root),
        "dvc_stage": os.environ.get("LUSAUG_DVC_STAGE", ""),
    }
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


# --- lineage: the DVC-tracked data a run read, as MLflow dataset inputs -----------------------

DATASET_SOURCE_TYPE = "dvc"
CONTEXT_TAG = "mlflow.data.context"  # the tag MLflow's UI shows beside a run's dataset
RAW_PATH = "data/raw"
MAX_DIGEST = 36  # MLflow's dataset digest column; a DVC directory hash (md5 + ".dir") fits


@dataclass(frozen=True)
class DataInput:
    """One DVC-tracked input of a run: where it lives and its DVC hash."""

    path: str  # relative to the repository root: data/raw, data/splits/fold-0.csv
    md5: str  # the DVC hash (a directory's ends in .dir)
    context: str  # MLflow input context: raw | training
    source: dict[str, str]  # repo, rev (the code's commit), path, remote (DVC default)
    profile: dict[str, Any] = field(default_factory=dict)
    columns: tuple[str, ...] = ()  # a CSV's header (shown as the dataset schema)

    def to_mlflow(self) -> Any:
        """The ``mlflow.entities.DatasetInput`` (digest = the DVC hash, source type ``dvc``)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        schema = None
        if self.columns:
            cols = [{"type": "string", "name": c, "required": True} for c in self.columns]
            schema = json.dumps({"mlflow_colspec": cols})
        dataset = Dataset(
            name=self.path,
            digest=self.md5[:MAX_DIGEST],
            source_type=DATASET_SOURCE_TYPE,
            source=json.dumps(self.source, sort_keys=True),
            schema=schema,
            profile=json.dumps(self.profile, sort_keys=True),
        )
        return DatasetInput(dataset, tags=[InputTag(CONTEXT_TAG, self.context)])


def file_md5(path: Path | str) -> str:
    """The hash DVC 3 records for a file: the md5 of its bytes."""
    return file_hash(path, "md5")


def _git(root: Path | str, *args: str) -> str:
    try:
        out = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return ""
    return out.strip()


def repo_url(root: Path | str = ".") -> str:
    """The repository a run's data can be fetched from: git ``origin`` or the local path."""
    return _git(root, "remote", "get-url", "origin") or str(Path(root).resolve())


def dvc_remote_url(root: Path | str = ".") -> str:
    """URL of the default DVC remote (``.dvc/config`` then ``config.local``), "" if none."""
    cfg = configparser.ConfigParser()
    cfg.read([Path(root) / ".dvc" / "config", Path(root) / ".dvc" / "config.local"])
    name = cfg.get("core", "remote", fallback="")
    if not name:
        return ""
    for section in (f"'remote \"{name}\"'", f'remote "{name}"'):  # DVC writes the quoted form
        if cfg.has_section(section):
            return cfg.get(section, "url", fallback="")
    return ""


def _source(root: Path) -> dict[str, str]:
    """Where a run's data can be fetched again: repository, the code's commit, DVC remote."""
    return {
        "repo": repo_url(root),
        "rev": git_commit(root).removesuffix("-dirty"),
        "remote": dvc_remote_url(root),
    }


def _raw_input(root: Path, source: dict[str, str]) -> DataInput:
    with (root / "data.dvc").open() as fh:
        out = ((yaml.safe_load(fh) or {}).get("outs") or [{}])[0]
    path = str(out.get("path", RAW_PATH))
    profile = {k: out[k] for k in ("nfiles", "size") if k in out}
    return DataInput(
        path, str(out.get("md5", "unknown")), "raw", {**source, "path": path}, profile
    )


def _split_input(root: Path, splits_csv: Path, source: dict[str, str]) -> DataInput:
    path = splits_csv if splits_csv.is_absolute() else root / splits_csv
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:  # a split file outside the repository: name it by its absolute path
        rel = path.resolve().as_posix()
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
        columns = tuple(reader.fieldnames or ())
    profile: dict[str, Any] = {"frames": len(rows)}
    if "patient_id" in columns:
        profile["patients"] = len({r["patient_id"] for r in rows})
    if "split" in columns:
        for split in sorted({r["split"] for r in rows}):
            part = [r for r in rows if r["split"] == split]
            profile[f"{split}_frames"] = len(part)
            if "patient_id" in columns:
                profile[f"{split}_patients"] = len({r["patient_id"] for r in part})
    return DataInput(rel, file_md5(path), "training", {**source, "path": rel}, profile, columns)


def data_inputs(root: Path | str = ".", splits_csv: Path | str | None = None) -> list[DataInput]:
    """``data/raw`` (when ``data.dvc`` exists) and ``splits_csv`` (when given) as inputs.

    Args:
        root: The repository root (``data.dvc``, git, ``.dvc/config``).
        splits_csv: The run's split file, relative to ``root`` or absolute inside it.
    """
    root = Path(root)
    source = _source(root)
    found = []
    if (root / "data.dvc").exists():
        found.append(_raw_input(root, source))
    if splits_csv is not None:
        found.append(_split_input(root, Path(splits_csv), source))
    return found


def synthetic_input(
    root: Path | str, files: list[Path | str], generator: str, labels: list[str] | None = None
) -> DataInput:
    """The synthetic images a run trained on, as one dataset named by their folder.

    The digest is the md5 of every file's name and DVC hash (the run's exact subset, which can be
    smaller than the kept folder: ``train.synthetic_per_class``, tuned thresholds); the profile
    counts the images (per class with ``labels``).
    """
    root = Path(root).resolve()
    paths = sorted(Path(f).resolve() for f in files)
    if not paths:
        raise ValueError("a synthetic dataset input needs at least one file")
    folder = Path(os.path.commonpath([p.parent for p in paths]))
    try:
        rel = folder.relative_to(root).as_posix()
    except ValueError:  # a synthetic set outside the repository: name it by its absolute path
        rel = folder.as_posix()
    listing = "".join(f"{p.relative_to(folder).as_posix()} {file_md5(p)}\n" for p in paths)
    profile: dict[str, Any] = {"images": len(paths), "generator": generator}
    if labels is not None:
        profile.update({f"{c}_images": labels.count(c) for c in sorted(set(labels))})
    source = {**_source(root), "path": rel}
    digest = hashlib.md5(listing.encode()).hexdigest()
    return DataInput(rel, digest, "synthetic", source, profile)


def lineage_tags(inputs: list[DataInput]) -> dict[str, str]:
    """Run/version tags naming the data: ``data_hash`` (data/raw), ``split_file``/``split_hash``."""
    tags = {}
    for item in inputs:
        if item.context == "raw":
            tags["data_hash"] = item.md5
        elif item.context == "training":
            tags.update(split_file=item.path, split_hash=item.md5)
    return tags


def log_data_inputs(
    run_id: str, root: Path | str = ".", splits_csv: Path | str | None = None
) -> dict[str, str]:
    """Log the run's DVC-tracked data as MLflow dataset inputs; returns :func:`lineage_tags`.

    Every classifier run calls it (``TrainTracker``); a generator run should too, with its
    fold's split file. Logging the same inputs again (a resumed run) adds nothing.
    """
    from mlflow import MlflowClient

    inputs = data_inputs(root, splits_csv)
    client = MlflowClient()
    if inputs:
        client.log_inputs(run_id, datasets=[i.to_mlflow() for i in inputs])
    tags = lineage_tags(inputs)
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    return tags
