"""DVC stage `check_params`: params.yaml checked strictly (unknown sections too) before any stage.

Usage: python pipelines/check_params.py params.yaml reports/params_check.txt
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lusaug.core.errors import stage_errors
from lusaug.stages import check_params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("params_file", type=Path, help="params.yaml")
    ap.add_argument("marker", type=Path, help="reports/params_check.txt (constant text)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with stage_errors("check_params"):
        params = check_params.run(check_params.CheckParamsPaths(args.params_file, args.marker))
    print(f"check_params: {args.params_file} is valid (profile {params.base.profile!r})")


if __name__ == "__main__":
    main()
