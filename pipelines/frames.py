"""DVC stage `frames`: data/raw -> grey square PNGs, data/frames.csv manifest, reports/ingest.json.

Usage: python pipelines/frames.py data/raw data/frames data/frames.csv reports/ingest.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params
from lusaug.core.errors import stage_errors
from lusaug.core.utils import setup_logging
from lusaug.stages import frames


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("raw_dir", type=Path, help="data/raw (clips, images, metadata.csv)")
    ap.add_argument("frames_dir", type=Path, help="data/frames (PNGs per class)")
    ap.add_argument("manifest", type=Path, help="data/frames.csv")
    ap.add_argument("report", type=Path, help="reports/ingest.json (skipped files, reasons)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("frames"):
        params = load_params()
        paths = frames.FramesPaths(args.raw_dir, args.frames_dir, args.manifest, args.report)
        summary = frames.run(paths, params.base, params.import_, params.frames)
    totals = summary["totals"]
    print(
        f"frames: {totals['frames']} frames from {totals['files_processed']} files "
        f"({totals['files_skipped']} skipped, see {args.report}); per class "
        f"{totals['frames_per_class']}"
    )


if __name__ == "__main__":
    main()
