"""Build timm classifiers from config and save/load self-describing checkpoints.

A checkpoint is a dict saved with ``torch.save`` holding only tensors and plain Python values, so
it loads with ``torch.load(weights_only=True)``: ``state_dict`` plus ``meta`` (timm model name,
kwargs, classes, image size, normalisation), which is everything export and serving need.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lusaug.core.config import ArchitectureParams
from lusaug.core.utils import atomic_path

# Grey-level normalisation applied to frames in [0, 1] before the network: x' = (x - mean) / std.
# Fixed (not ImageNet's RGB values, which timm would return for in_chans=1 too).
DEFAULT_MEAN = 0.5
DEFAULT_STD = 0.25


@dataclass
class ClassifierMeta:
    model: str  # timm model name
    kwargs: dict[str, Any]  # extra timm kwargs (img_size, patch_size, depth, ...)
    classes: list[str]
    image_size: int
    mean: float = DEFAULT_MEAN
    std: float = DEFAULT_STD
    extra: dict[str, Any] = field(default_factory=dict)  # strategy, architecture family, seed, ...

    @classmethod
    def for_architecture(
        cls, arch: ArchitectureParams, classes: list[str], image_size: int, **extra: Any
    ) -> ClassifierMeta:
        """The meta of one ``train.architectures`` family (null kwargs = timm's defaults)."""
        return cls(
            model=arch.model,
            kwargs={k: v for k, v in arch.kwargs.items() if v is not None},
            classes=list(classes),
            image_size=image_size,
            extra=dict(extra),
        )


def build_classifier(meta: ClassifierMeta) -> torch.nn.Module:
    """A timm model from scratch with one input channel; never downloads weights."""
    import timm

    kwargs = dict(meta.kwargs)
    if meta.model.startswith(("vit", "deit")):
        kwargs.setdefault("img_size", meta.image_size)
    return timm.create_model(
        meta.model, pretrained=False, in_chans=1, num_classes=len(meta.classes), **kwargs
    )


def save_checkpoint(
    path: Path | str, model: torch.nn.Module, meta: ClassifierMeta, **state: Any
) -> None:
    """Atomically write weights + meta (+ optional optimiser/epoch state for resuming)."""
    payload = {"state_dict": model.state_dict(), "meta": asdict(meta), **state}
    # torch.save names the zip archive's folder after the file it writes to, and the temporary
    # file's name is random: saving to memory gives the fixed name "archive", so the same
    # tensors always give the same bytes (and the same DVC hash).
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load a checkpoint dict safely (``weights_only=True``: no pickled code runs)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


def load_classifier(path: Path | str) -> tuple[torch.nn.Module, ClassifierMeta]:
    """Rebuild the model from a checkpoint and put it in eval mode."""
    ckpt = load_checkpoint(path)
    meta = ClassifierMeta(**ckpt["meta"])
    model = build_classifier(meta)
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, meta
