"""DVC stage `filter@k-G`: filter, memorisation, fidelity against real patients, blocking, registry.

Usage: python pipelines/filter.py G data/splits/fold-<k>.csv models/fold-<k>/generators/G \
    data/synthetic/fold-<k>/G/candidates models/fold-<k>/encoder \
    data/synthetic/fold-<k>/G/kept data/synthetic/fold-<k>/G/filter.csv \
    metrics/fold-<k>/synthetic_G.json plots/fold-<k>/synthetic/G [--fold K]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params, parse_fold
from lusaug.core.errors import stage_errors
from lusaug.core.utils import seed_everything, setup_logging
from lusaug.stages import filter as filter_stage


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("generator", help="a key of generate.generators")
    for name, what in (
        ("splits_csv", "the fold's splits CSV"),
        ("model_dir", "models/fold-<k>/generators/G"),
        ("candidates_dir", "data/synthetic/fold-<k>/G/candidates"),
        ("encoder_dir", "models/fold-<k>/encoder"),
        ("kept_dir", "data/synthetic/fold-<k>/G/kept"),
        ("table_csv", "data/synthetic/fold-<k>/G/filter.csv"),
        ("metrics_json", "metrics/fold-<k>/synthetic_G.json"),
        ("plots_dir", "plots/fold-<k>/synthetic/G"),
    ):
        ap.add_argument(name, type=Path, help=what)
    ap.add_argument(
        "--fold", type=parse_fold, default=None, help="fold index or final (MLflow tag, alias)"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors(f"filter@{args.generator}"):
        params = load_params()
        seed_everything(params.base.seed)
        paths = filter_stage.FilterPaths(
            args.splits_csv,
            args.model_dir,
            args.candidates_dir,
            args.encoder_dir,
            args.kept_dir,
            args.table_csv,
            args.metrics_json,
            args.plots_dir,
        )
        m = filter_stage.run(
            paths,
            args.generator,
            params.base,
            params.filter,
            params.generate,
            params.mlflow,
            fold=args.fold,
        )
    kid = "n/a" if m["kid"] is None else f"{m['kid']['mean']:.4f}"
    rec = m["recognition"]["rate"]
    state = f" BLOCKED ({m['blocked_reason']})" if m["blocked"] else ""
    print(
        f"filter@{args.generator}: kept {m['kept']}/{m['candidates']}, memorisation "
        f"{m['memorisation']['rate']:.3f}, recognition {rec}, KID to val {kid}{state}"
    )


if __name__ == "__main__":
    main()
