"""Intra-clip positive pairs: two frames of the SAME clip, never of two clips or two patients.

Each step draws ``batch_size`` DISTINCT clips (weighted by their frame counts, so every frame is
about equally likely) and two different frames of each clip (the same frame twice when the clip
is a single image; its two augmented views then differ). Distinct clips per batch mean no other
frame of a positive's clip sits among its negatives. Frames of other clips of the same patient
may be negatives; nothing from another patient is ever a positive. The draws depend only on
``(seed, epoch)``, so a resumed run draws what an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lusaug.features.frame_table import FeaturesError


@dataclass(frozen=True)
class ClipIndex:
    """Frame indices grouped by clip; ``patient_of_clip`` names each clip's patient."""

    clips: list[np.ndarray]  # frame indices of each clip
    patient_of_clip: list[str]

    @classmethod
    def build(cls, video_ids: np.ndarray, patient_ids: np.ndarray) -> ClipIndex:
        video_ids, patient_ids = np.asarray(video_ids, str), np.asarray(patient_ids, str)
        names = sorted(set(video_ids))
        clips, owners = [], []
        for name in names:
            idx = np.flatnonzero(video_ids == name)
            patients = set(patient_ids[idx])
            if len(patients) != 1:
                raise FeaturesError(f"clip {name!r} belongs to patients {sorted(patients)}")
            clips.append(idx)
            owners.append(str(patients.pop()))
        return cls(clips, owners)

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(c) for c in self.clips])


def epoch_pairs(index: ClipIndex, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The epoch's batches, each an int array (B, 2) of (anchor, partner) frame indices.

    ``ceil(frames / batch)`` steps; ``B = min(batch_size, number of clips)``.
    """
    n_clips = len(index.clips)
    if n_clips < 2:
        raise FeaturesError(f"contrastive training needs at least 2 clips, got {n_clips}")
    sizes = index.sizes
    rng = np.random.default_rng([seed, epoch])
    per_batch = min(batch_size, n_clips)
    steps = int(np.ceil(sizes.sum() / per_batch))
    p = sizes / sizes.sum()
    batches = []
    for _ in range(steps):
        chosen = rng.choice(n_clips, size=per_batch, replace=False, p=p)
        pairs = np.empty((per_batch, 2), dtype=np.int64)
        for row, c in enumerate(chosen):
            frames = index.clips[c]
            if len(frames) == 1:
                pairs[row] = frames[0], frames[0]
            else:
                pairs[row] = frames[rng.choice(len(frames), size=2, replace=False)]
        batches.append(pairs)
    return batches
