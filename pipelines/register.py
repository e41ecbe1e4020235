"""DVC stage `register`: the final model -> a new `lus-classifier` version (alias `candidate`).

Usage:
    python pipelines/register.py models/final/candidate.json data/splits/fold-final.csv \
        models/registered.json --test metrics/test.json --comparison metrics/comparison.json

Converts the final model (the setting chosen on pooled validation, refit on every patient) to
ONNX and logs it as an MLflow pyfunc, registers it with alias `candidate`, version tags and a
model card carrying its cross-validated estimate and decision record (the alias move is
recorded in the model's history), and writes what it registered to REGISTERED_JSON for
`export` (lusaug.stages.register). Re-running with the same checkpoint reuses its version and
brings its card up to date (the verdicts may have changed, e.g. with evaluate.primary).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params
from lusaug.core.errors import stage_errors
from lusaug.core.utils import setup_logging
from lusaug.stages import register


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidate", type=Path, help="models/final/candidate.json")
    ap.add_argument(
        "splits_csv", type=Path, help="data/splits/fold-final.csv (for the model card)"
    )
    ap.add_argument("registered", type=Path, help="models/registered.json (output)")
    ap.add_argument("--test", type=Path, help="metrics/test.json (the card's CV estimate)")
    ap.add_argument("--comparison", type=Path, help="metrics/comparison.json (its verdicts)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("register"):
        params = load_params()
        paths = register.RegisterPaths(
            args.candidate, args.splits_csv, args.registered, args.test, args.comparison
        )
        reg = register.run(
            paths, params.base, params.frames, params.register, params.export, params.mlflow
        )
    lo, hi = reg["interval"]
    ci = f" [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else ""
    state = "reused" if reg["reused"] else "new"
    print(
        f"{reg['name']} v{reg['version']} ({state}) @{reg['alias']}: {reg['run_name']}, "
        f"{reg['metric']} {reg['value']:.3f}{ci}"
    )


if __name__ == "__main__":
    main()
