"""DVC stage `split`: frames.csv (+ its PNGs) -> splits.csv (patient-grouped, class-stratified).

Patients that share an identical or near-identical frame are kept in one split; split.json lists
them with the frame pair that links them.

Usage: python pipelines/split.py data/frames.csv data/splits.csv reports/split.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lusaug.config import load_params
from lusaug.data.manifest import SPLITS, read_manifest, write_manifest
from lusaug.data.split import SplitError, split_frames
from lusaug.utils import setup_logging, write_json

SHOW = 5  # links printed per linked group (split.json holds them all)


def _table(summary: dict) -> Table:
    table = Table(title="split: patients / videos / frames per class")
    table.add_column("class")
    for s in SPLITS:
        table.add_column(s, justify="right")
    rows = list(summary["classes"].items()) + [("all", summary["totals"])]
    for name, per_split in rows:
        cells = [f"{v['patients']} / {v['videos']} / {v['frames']}" for v in per_split.values()]
        table.add_row(name, *cells)
    return table


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        raise SystemExit("usage: split.py FRAMES_CSV SPLITS_CSV SPLIT_JSON")
    frames_csv, splits_csv, report = map(Path, argv)
    setup_logging()
    params = load_params()
    manifest = read_manifest(frames_csv)
    try:
        splits, summary = split_frames(manifest, frames_csv.resolve().parent, params)
    except SplitError as err:
        raise SystemExit(f"split failed: {err}") from err
    write_manifest(splits, splits_csv)
    write_json(report, summary)
    console = Console()
    console.print(_table(summary))
    for group in summary["linked_patients"]["groups"]:
        console.print(f"kept together in {'+'.join(group['split'])}:", highlight=False)
        for link in group["links"][:SHOW]:
            console.print(f"  {link['reason']}", highlight=False)
        if len(group["links"]) > SHOW:
            console.print(f"  ... {len(group['links']) - SHOW} more in {report}", highlight=False)


if __name__ == "__main__":
    main()
