"""DVC stage `split`: frames.csv (+ PNGs) -> data/splits/{fold-<k>,final}.csv, reports/split.json.

Patient-grouped and class-stratified: cross-validation in which every patient group of the rarest
class is tested exactly once (split.scheme cv), or one hold-out split (fold 0). Patients that
share an identical or near-identical frame stay together; split.json lists them with the frame
pair that links them. fold-final.csv is the final model's split: every patient trains or validates.

Usage: python pipelines/split.py data/frames.csv data/splits reports/split.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from lusaug.core.config import load_params
from lusaug.core.errors import stage_errors
from lusaug.core.utils import setup_logging
from lusaug.data.manifest import SPLITS
from lusaug.stages import split

SHOW = 5  # links printed per linked group (split.json holds them all)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("frames_csv", type=Path, help="data/frames.csv (the manifest)")
    ap.add_argument("splits_dir", type=Path, help="data/splits (one fold-<k>.csv per fold)")
    ap.add_argument("report", type=Path, help="reports/split.json")
    return ap.parse_args(argv)


def _table(fold: str, entry: dict) -> Table:
    name = "final model's split" if fold == "final" else f"fold {fold}"
    table = Table(title=f"{name}: patients / videos / frames per class")
    table.add_column("class")
    for s in SPLITS:
        table.add_column(s, justify="right")
    for name, per_split in [*entry["classes"].items(), ("all", entry["totals"])]:
        cells = [f"{v['patients']} / {v['videos']} / {v['frames']}" for v in per_split.values()]
        table.add_row(name, *cells)
    return table


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("split"):
        params = load_params()
        paths = split.SplitPaths(args.frames_csv, args.splits_dir, args.report)
        summary = split.run(paths, params.base, params.split, params.validate)
    console = Console()
    for name, entry in [*summary["folds"].items(), ("final", summary["final"])]:
        console.print(_table(name, entry))
        if entry["val_missing"]:
            console.print(f"  fold {name}: validation has no {entry['val_missing']} (too few)")
    for group in summary.get("linked_patients", {}).get("groups", []):
        console.print(f"kept together: {', '.join(group['patients'])}", highlight=False)
        for link in group["links"][:SHOW]:
            console.print(f"  {link['reason']}", highlight=False)
        if len(group["links"]) > SHOW:
            console.print(f"  ... {len(group['links']) - SHOW} more in {args.report}")


if __name__ == "__main__":
    main()
