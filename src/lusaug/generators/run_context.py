"""What the generator stages share: seeds, threads, MLflow set-up and tags, resume state."""

from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import torch

from lusaug.core.config import GenerateParams, GeneratorSpec, MlflowParams
from lusaug.core.mlflow_store import setup_experiment, standard_tags
from lusaug.core.utils import EXECUTION_FILE, sha256_file, write_json
from lusaug.generators.frame_io import GeneratorDataError
from lusaug.generators.mlflow_runs import fold_tags, run_exists

RUN_STATE = "run.json"  # in a checkpoint folder: the MLflow run an interrupted training resumes


def derive_seed(base_seed: int, name: str) -> int:
    """A per-generator seed that does not change when other generators are added."""
    return (base_seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31


def set_threads(threads: int) -> None:
    """Apply ``generate.threads``: small models on shared cores run faster on few threads."""
    if threads > 0:
        torch.set_num_threads(threads)


def get_spec(generate: GenerateParams, name: str) -> GeneratorSpec:
    try:
        return generate.generators[name]
    except KeyError:
        known = ", ".join(sorted(generate.generators))
        raise GeneratorDataError(f"unknown generator {name!r}; known: {known}") from None


def label_of(name: str, spec: GeneratorSpec) -> str:
    return f"{name} [LEAKY]" if spec.leaky else name


def setup_mlflow(mlflow_cfg: MlflowParams) -> str:
    return setup_experiment("generators", mlflow_cfg.tracking_uri)


def tags(fold: int | str | None, **extra: Any) -> dict[str, str]:
    """Standard tags (git commit, data hash, DVC stage) + the fold + ``extra``."""
    return standard_tags(".", **fold_tags(fold), **extra)


def generator_tags(
    name: str, spec: GeneratorSpec, target_class: str, fold: int | str | None
) -> dict[str, str]:
    return tags(
        fold,
        generator=name,
        kind=spec.kind,
        target_class=target_class,
        train_set=spec.train_set,
        leaky=str(spec.leaky).lower(),
        strategy=name,
    )


def prepare_checkpoints(ckpt_dir: Path | None, resume: bool, fp: str) -> str | None:
    """Make the checkpoint folder; the MLflow run id to resume, or None for a fresh start.

    A fresh start (no --resume, or the interrupted run had another fingerprint) drops another
    run's checkpoints.
    """
    if ckpt_dir is None:
        return None
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    gitignore = ckpt_dir.parent / ".gitignore"
    if not gitignore.exists():  # scratch space for --resume, never versioned
        gitignore.write_text("*\n")
    state_file = ckpt_dir / RUN_STATE
    prev = json.loads(state_file.read_text()) if resume and state_file.exists() else {}
    run_id = prev.get("run_id") if prev.get("fingerprint") == fp else None
    if run_id is None:
        shutil.rmtree(ckpt_dir)
        ckpt_dir.mkdir(parents=True)
    return run_id if run_exists(run_id) else None


def remember_run(ckpt_dir: Path | None, run_id: str, fp: str) -> None:
    if ckpt_dir is not None:
        write_json(ckpt_dir / RUN_STATE, {"run_id": run_id, "fingerprint": fp})


def finish_checkpoints(ckpt_dir: Path | None) -> None:
    """Finished: nothing to resume."""
    if ckpt_dir is not None and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)


def folder_sha256(folder: Path | str) -> str:
    """One hash of every file in a folder (names and contents) but its execution records."""
    h = hashlib.sha256()
    for f in sorted(Path(folder).rglob("*")):
        if f.is_file() and not f.name.endswith(EXECUTION_FILE):
            h.update(f"{f.relative_to(folder)}:{sha256_file(f)}".encode())
    return h.hexdigest()


def score_basis(splits_csv: Path | str, encoder_dir: Path | str) -> dict[str, str]:
    """What a generator was scored against: the split and the feature space (sha256s)."""
    return {"splits_sha256": sha256_file(splits_csv), "encoder_sha256": folder_sha256(encoder_dir)}
