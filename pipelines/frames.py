"""DVC stage `frames`: data/raw -> grey square PNGs, data/frames.csv manifest, reports/ingest.json.

Usage: python pipelines/frames.py data/raw data/frames data/frames.csv reports/ingest.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from lusaug.config import ConfigError, load_params
from lusaug.data.frames import FramesError, extract_frames
from lusaug.utils import setup_logging


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4:
        raise SystemExit("usage: frames.py RAW_DIR FRAMES_DIR FRAMES_CSV INGEST_JSON")
    raw_dir, frames_dir, manifest, report = map(Path, argv)
    setup_logging()
    try:
        params = load_params()
        summary = extract_frames(raw_dir, frames_dir, manifest, report, params)
    except (FramesError, ConfigError) as err:
        raise SystemExit(f"frames failed: {err}") from None
    totals = summary["totals"]
    print(
        f"frames: {totals['frames']} frames from {totals['files_processed']} files "
        f"({totals['files_skipped']} skipped, see {report}); per class {totals['frames_per_class']}"
    )


if __name__ == "__main__":
    main()
