"""DVC stage `export`: verify the registered candidate's ONNX and write models/onnx/.

Usage:
    python pipelines/export.py REGISTERED_JSON SPLITS_CSV ONNX_DIR PARITY_REPORT

Downloads the registered version's ONNX (sha256-checked), runs onnx.checker (full check),
compares logits with the PyTorch checkpoint on the test frames (export.parity_atol, identical
argmax), writes the int8 variant (export.int8) with its test accuracy delta, writes the report,
and tags the version `onnx_parity=passed|failed` (a promotion gate). Exits non-zero on a
parity failure, after writing the report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.config import load_params
from lusaug.core.errors import stage_errors
from lusaug.core.utils import setup_logging
from lusaug.stages import export


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("registered", type=Path, help="models/registered.json (register's output)")
    ap.add_argument("splits_csv", type=Path, help="data/splits.csv (test frames; train for int8)")
    ap.add_argument(
        "onnx_dir", type=Path, help="models/onnx (classifier.onnx, classifier.int8.onnx)"
    )
    ap.add_argument("report", type=Path, help="reports/onnx_parity.json")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    with stage_errors("export"):  # ParityFailed included: report written, version tagged
        params = load_params()
        paths = export.ExportPaths(args.registered, args.splits_csv, args.onnx_dir, args.report)
        rep = export.run(paths, params.export, params.mlflow, seed=params.base.seed)
    par, q = rep["parity"], rep["int8"]
    print(
        f"{args.onnx_dir}/classifier.onnx: parity passed on {par['frames']} test frames "
        f"(max |diff| {par['max_abs_diff']:.2e}, accuracy {par['accuracy_onnx']:.3f})"
    )
    if q["mode"] != "none":
        print(
            f"int8 ({q['mode']}): accuracy {q['accuracy_int8']:.3f} "
            f"(delta {q['accuracy_delta']:+.3f}, agreement {q['argmax_agreement_with_fp32']:.3f})"
        )


if __name__ == "__main__":
    main()
