"""DVC stage `register`: the best run by a VALIDATION metric -> a new `lus-classifier` version.

Usage:
    python pipelines/register.py VALIDATION_RUNS_JSON SPLITS_CSV REGISTERED_JSON

Picks the winner of metrics/validation_runs.json by register.metric (lusaug.tracking.selection),
converts it to ONNX and logs it as an MLflow pyfunc (lusaug.export.publish), registers it with
alias `candidate`, version tags and a model card (lusaug.tracking.registration; the alias move
is recorded in the model's history), and writes what it registered to REGISTERED_JSON for
`export`. Re-running with the same winning checkpoint reuses its version.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lusaug.config import load_params
from lusaug.errors import stage_errors
from lusaug.export.publish import register_winner
from lusaug.mlflow_store import setup_experiment
from lusaug.utils import setup_logging, write_json


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("validation_runs", type=Path, help="metrics/validation_runs.json")
    ap.add_argument("splits_csv", type=Path, help="data/splits.csv (for the model card)")
    ap.add_argument("registered", type=Path, help="models/registered.json (output)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    setup_logging()
    params = load_params()
    setup_experiment("classifiers", params.mlflow.tracking_uri)
    with stage_errors("register"):
        reg = register_winner(
            args.validation_runs,
            params.register,
            params.export,
            splits_csv=args.splits_csv,
            classes=params.base.classes,
            frame_geometry={
                "auto_crop_black": params.frames.auto_crop_black,
                "black_threshold": params.frames.black_threshold,
            },
        )
    write_json(args.registered, reg)
    lo, hi = reg["interval"]
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    state = "reused" if reg["reused"] else "new"
    print(
        f"{reg['name']} v{reg['version']} ({state}) @{reg['alias']}: {reg['run_name']}, "
        f"{reg['metric']} {reg['value']:.3f}{ci}"
    )


if __name__ == "__main__":
    main()
