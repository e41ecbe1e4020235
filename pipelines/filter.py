"""DVC stage `filter@G`: quality filter, memorisation check, KID/FID, registry of the best.

Usage: python pipelines/filter.py G data/splits.csv metrics/validation.json models/generators/G \
    data/synthetic/G/candidates models/encoder data/synthetic/G/kept data/synthetic/G/filter.csv \
    metrics/synthetic_G.json plots/synthetic/G
"""

from __future__ import annotations

import sys
from pathlib import Path

from lusaug.config import load_params
from lusaug.generators.data import GeneratorDataError
from lusaug.generators.stages import run_filter
from lusaug.utils import seed_everything, setup_logging

USAGE = (
    "usage: filter.py G SPLITS_CSV VALIDATION_JSON MODEL_DIR CANDIDATES_DIR ENCODER_DIR "
    "KEPT_DIR TABLE_CSV METRICS_JSON PLOTS_DIR"
)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 10:
        raise SystemExit(USAGE)
    name = argv[0]
    (
        splits_csv,
        validation_json,
        model_dir,
        candidates_dir,
        encoder_dir,
        kept_dir,
        table_csv,
        metrics_json,
        plots_dir,
    ) = map(Path, argv[1:])
    setup_logging()
    params = load_params()
    seed_everything(params.base.seed)
    try:
        m = run_filter(
            name,
            splits_csv,
            model_dir,
            candidates_dir,
            encoder_dir,
            kept_dir,
            table_csv,
            metrics_json,
            plots_dir,
            params,
            validation_json,
        )
    except (GeneratorDataError, FileNotFoundError) as err:
        raise SystemExit(f"filter@{name} failed: {err}") from err
    kid = "n/a" if m["kid"] is None else f"{m['kid']['mean']:.4f} ± {m['kid']['std']:.4f}"
    leaky = " [LEAKY]" if m["leaky"] else ""
    print(
        f"filter@{name}{leaky}: kept {m['kept']}/{m['candidates']}, memorisation rate "
        f"{m['memorisation']['rate']:.3f}, KID {kid}; registry: {m.get('registry', {})}"
    )


if __name__ == "__main__":
    main()
