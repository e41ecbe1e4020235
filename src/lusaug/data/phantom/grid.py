"""The phantom preview grid: one frame per patient and class, saved as a small grey PNG."""

from __future__ import annotations

from pathlib import Path

from lusaug.core.config import Params
from lusaug.core.utils import atomic_path
from lusaug.data.phantom.dataset import _gen, _mode, patient_of, plan_phantom
from lusaug.data.phantom.render import render_clip


def phantom_grid(
    params: Params, out_png: Path, per_class: int = 4, seed: int | None = None
) -> Path:
    """Save a grid of phantom frames (rows = classes, columns = patients) as a small grey PNG.

    Frames come from the same plan as :func:`write_phantom` (first clip of each class's first
    ``per_class`` patients, middle frame), so the grid shows what the data set holds.
    """
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    ph = params.phantom
    plan = plan_phantom(params, seed)
    classes = params.base.classes
    fig, axes = plt.subplots(
        len(classes), per_class, figsize=(1.6 * per_class + 0.6, 1.7 * len(classes)), squeeze=False
    )
    for r, label in enumerate(classes):
        pats = [pp for pp in plan if pp.label == label][:per_class]
        for c in range(per_class):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
            if c >= len(pats):
                continue
            pp = pats[c]
            pat = patient_of(pp, params)
            n = min(ph.frames_per_clip, 13)
            frames = render_clip(pat, _gen(pp.clip_seeds[0]), n, ph.height, ph.width, ph.fps)
            ax.imshow(frames[n // 2], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(f"{pp.patient_id} ({pp.probe})", fontsize=6)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(
        f"lusaug phantom (difficulty {ph.difficulty}), middle frame of clip 1", fontsize=8
    )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    buf.seek(0)
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp, Image.open(buf) as im:
        im.convert("L").save(tmp, format="PNG", optimize=True)
        tmp.chmod(_mode(0o666))
    return out_png
