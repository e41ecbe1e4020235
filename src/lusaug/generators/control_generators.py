"""Control generators: images whose value as rare-class data is known in advance.

They calibrate the whole method (issue: calibrate on the phantom). Both write candidate PNGs as
a trained generator does, so the filter, the strategies and the report treat them alike:

- ``phantom_oracle`` (:func:`oracle_candidates`): frames of *new* rare-class patients rendered by
  the phantom that wrote ``data/raw``, sampled as the frames stage samples the data. As good as
  more real patients: what a perfect generator could give. Refused on any data/raw but that
  phantom (:func:`lusaug.data.phantom.source.read_phantom_source`).
- ``relabel`` (:func:`relabel_candidates`, the ``null_other`` generator): real frames of the
  fold's *other* classes, from its training patients only, presented as rare-class images. They
  carry no rare-class signal (and the wrong label), so a verdict of "helps" on them is a false
  positive.

Each returns a table with one row per candidate file saying where it came from (written as
``sources.csv`` beside the generator's ``generator.json``). Neither trains anything; the
generator's ``train_set.csv`` for the filter's memorisation check is the fold's real rare-class
training frames (:func:`rare_training_rows`): a near-copy of those is what the filter guards.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from lusaug.core.config import Params
from lusaug.data.phantom.fresh import check_disjoint, render_fresh_frames
from lusaug.data.phantom.source import read_phantom_source
from lusaug.generators import frame_io
from lusaug.generators.frame_io import GeneratorDataError

logger = logging.getLogger(__name__)

ORACLE_KIND = "phantom_oracle"
RELABEL_KIND = "relabel"
CONTROL_KINDS = (ORACLE_KIND, RELABEL_KIND)
CANDIDATE_PREFIX = "cand"  # as a trained generator's candidates (the filter reads any *.png)
SOURCES_FILE = "sources.csv"  # one row per candidate: where its pixels came from


def rare_training_rows(splits: pd.DataFrame, target: str) -> pd.DataFrame:
    """The fold's real rare-class training frames, sorted by path."""
    rows = frame_io.class_frames(splits, target, "train")
    if rows.empty:
        raise GeneratorDataError(f"no frames of class {target!r} in the train split")
    return rows


def oracle_candidates(
    raw_dir: Path | str,
    params: Params,
    n_images: int,
    stream: int,
    candidates_dir: Path | str,
    progress: bool = False,
) -> pd.DataFrame:
    """Write ``n_images`` frames of new rare-class phantom patients as candidate PNGs.

    Args:
        raw_dir: data/raw; must be the phantom ``params.phantom`` writes (else
            :class:`~lusaug.data.phantom.source.PhantomSourceError` naming the file and key).
        params: reads base (classes, target class, image size), phantom, import (prefixes)
            and frames (the sampling that made the data's frames).
        n_images: candidates to write (e.g. generate.sampling.candidates).
        stream: which draw of new patients (the fold): folds get independent patients.
        candidates_dir: replaced atomically with ``cand_<i>.png``.
        progress: show a progress bar.

    Returns:
        One row per candidate: file, patient_id, video_id, frame_index, probe, label, sha1.
    """
    source = read_phantom_source(raw_dir, params)
    target = params.base.target_class
    got = render_fresh_frames(source.seed, params, target, "oracle", stream, n_images, progress)
    check_disjoint(source, got.patients)  # by construction; checked all the same
    paths = frame_io.write_pngs(got.images, candidates_dir, CANDIDATE_PREFIX)
    table = got.table.assign(file=[p.name for p in paths])
    logger.info(
        "oracle: %d frames of %d new %s patients (stream %d)",
        len(paths),
        len(got.patients),
        target,
        stream,
    )
    return table[["file", *got.table.columns]]


def relabel_candidates(
    splits: pd.DataFrame,
    splits_csv: Path | str,
    target: str,
    image_size: int,
    n_images: int,
    seed: int,
    candidates_dir: Path | str,
) -> pd.DataFrame:
    """Write real frames of the fold's other classes, training patients only, as candidates.

    Args:
        splits: the fold's split table (path, label, patient_id, split, ...).
        splits_csv: its file (frame paths are relative to its folder).
        target: the rare class they pose as.
        image_size: px of the written PNGs.
        n_images: how many; 0 = as many as the fold's real rare-class training frames (what a
            generator that doubles the rare class would add). Drawn without replacement while
            the pool lasts, with replacement beyond it (logged).
        seed: the draw's seed (e.g. derive_seed(base.seed, name) + fold).
        candidates_dir: replaced atomically with ``cand_<i>.png``.

    Returns:
        One row per candidate: file, source_path, source_label, patient_id, video_id.
    """
    if n_images < 0:
        raise GeneratorDataError(f"relabel: n_images must be >= 0, got {n_images}")
    train = splits[splits["split"] == "train"]
    pool = train[train["label"] != target].sort_values("path").reset_index(drop=True)
    if pool.empty:
        raise GeneratorDataError(f"relabel: no training frame of a class other than {target!r}")
    n = n_images or len(rare_training_rows(splits, target))
    replace = n > len(pool)
    if replace:
        logger.warning("relabel: %d images asked, %d in the pool: with replacement", n, len(pool))
    rng = np.random.default_rng(seed)
    chosen = pool.iloc[np.sort(rng.choice(len(pool), size=n, replace=replace))]
    images = frame_io.load_frames(chosen, splits_csv, image_size)
    paths = frame_io.write_pngs(images, candidates_dir, CANDIDATE_PREFIX)
    return pd.DataFrame(
        {
            "file": [p.name for p in paths],
            "source_path": chosen["path"].to_list(),
            "source_label": chosen["label"].to_list(),
            "patient_id": chosen["patient_id"].to_list(),
            "video_id": chosen["video_id"].to_list(),
        }
    )
