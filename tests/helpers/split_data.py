"""Frame manifests and folders of real PNGs for the split and validation tests.

``make_manifest`` builds a manifest without pixels (the split's assignment only reads labels and
patients); ``with_pngs`` writes one PNG per row (a random texture per clip plus a little noise per
frame, like consecutive ultrasound frames) and sets ``sha1`` from the pixels; ``plant_copy``
re-files a frame (exact or slightly changed) so that two patients share it. ``run_stage`` runs a
real ``pipelines/<stage>.py`` in a folder with its own params file.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import yaml

from lusaug.core.config import FINAL_FOLD, PROJ_ROOT
from lusaug.data.linking import PatientLinks
from lusaug.data.manifest import MANIFEST_COLUMNS

SIZE = 32


def manifest_rows(label: str, patient: str, video: str, n_frames: int, size: int = SIZE):
    return [
        {
            "path": f"frames/{label}/{video}_{i:05d}.png",
            "label": label,
            "video_id": video,
            "patient_id": patient,
            "probe": "convex",
            "source": "test",
            "license": "CC BY 4.0",
            "width": size,
            "height": size,
            "sha1": hashlib.sha1(f"{video}/{i}".encode()).hexdigest(),
        }
        for i in range(n_frames)
    ]


def make_manifest(
    spec: dict[str, int],
    extra=(),
    videos: int = 2,
    frames: int = 3,
    size: int = SIZE,
) -> pd.DataFrame:
    """``spec`` = patients per class (``<class>-p<i>``); ``extra`` = (patient, class) clips added
    to existing patients (multi-class patients, like POCUS patient 7)."""
    rows: list[dict] = []
    for label, n in spec.items():
        for p in range(n):
            for v in range(videos):
                rows += manifest_rows(label, f"{label}-p{p}", f"{label}-p{p}-v{v}", frames, size)
    for k, (patient, label) in enumerate(extra):
        rows += manifest_rows(label, patient, f"{patient}-{label}-extra{k}", 2, size)
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def links_from_pairs(pairs, hash_size: int = 16, max_distance: int = 16) -> PatientLinks:
    """Linked patients as :func:`lusaug.data.linking.link_patients` would return them for these
    pairs (connected components, keyed by their smallest patient id), without any pixels."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in pairs:
        if a != b:
            ra, rb = find(a), find(b)
            parent[max(ra, rb)] = min(ra, rb)
    return PatientLinks(hash_size, max_distance, group_of={p: find(p) for p in sorted(parent)})


def write_png(root: Path, rel: str, img: np.ndarray) -> str:
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(root / rel), img)
    return hashlib.sha1(img.tobytes()).hexdigest()


def with_pngs(df: pd.DataFrame, root: Path, seed: int = 0) -> pd.DataFrame:
    """Write one PNG per row under ``root`` and set ``sha1`` from its pixels."""
    rng = np.random.default_rng(seed)
    out = df.copy()
    bases: dict[str, np.ndarray] = {}
    for i, row in out.iterrows():
        size = int(row["width"])
        if row["video_id"] not in bases:
            # texture at half the frame resolution, like speckle: a 16x16 pHash keeps DCT terms
            # up to that scale, so much smoother textures would hash as noise
            noise = rng.normal(0, 1, (size // 2, size // 2)).astype(np.float32)
            bases[row["video_id"]] = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
        img = 128 + 45 * bases[row["video_id"]] + rng.normal(0, 2.0, (size, size))
        out.at[i, "sha1"] = write_png(root, row["path"], np.clip(img, 0, 255).astype(np.uint8))
    return out


def plant_copy(df: pd.DataFrame, root: Path, src: str, dst: str, noisy: bool = True) -> str:
    """Overwrite the PNG at ``dst`` with (a slightly changed copy of) the PNG at ``src``."""
    img = cv2.imread(str(root / src), cv2.IMREAD_UNCHANGED).astype(np.int16)
    if noisy:  # brighter and slightly noisy: a re-encoded copy, not the same bytes
        img = img + 3 + np.random.default_rng(1).integers(-2, 3, img.shape)
    sha = write_png(root, dst, np.clip(img, 0, 255).astype(np.uint8))
    df.loc[df["path"] == dst, "sha1"] = sha
    return sha


def first_frame(df: pd.DataFrame, patient: str) -> str:
    return str(df.loc[df["patient_id"] == patient, "path"].min())


def roles(df: pd.DataFrame) -> dict[str, set[str]]:
    """Patient -> the set of splits its frames are in (one element when grouped)."""
    return {str(p): set(map(str, g)) for p, g in df.groupby("patient_id")["split"]}


def params_file(folder: Path, params_dict: dict, classes: list[str], **split) -> Path:
    """A params.yaml for a stage script run: ``classes`` (consistent phantom/import sections)
    and ``split`` keys overridden (``max_folds`` 5 unless given, whatever the default profile caps;
    ``items`` follows ``folds``)."""
    data = json.loads(json.dumps(params_dict))
    split = {"max_folds": 5, **split}
    if "folds" in split:
        split.setdefault("items", [*split["folds"], FINAL_FOLD])
    data["base"]["classes"] = classes
    data["base"]["target_class"] = classes[-1]
    data["phantom"]["patients"] = {c: 3 for c in classes}
    data["import"]["prefixes"] = {c[:3].title(): c for c in classes}
    data["split"].update(split)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def start_stage(stage: str, cwd: Path, params_path: Path, *args: str) -> subprocess.Popen:
    """Start the real ``pipelines/<stage>.py`` in ``cwd`` (several can run at once)."""
    env = dict(os.environ, LUSAUG_PARAMS=str(params_path), GX_ANALYTICS_ENABLED="false")
    cmd = [sys.executable, str(PROJ_ROOT / "pipelines" / f"{stage}.py"), *args]
    return subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err
