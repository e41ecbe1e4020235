"""What DVC hashes of a stage output: every file but the execution records (.dvcignore)."""

from __future__ import annotations

from pathlib import Path

from lusaug.core.utils import EXECUTION_FILE


def hashed_bytes(output: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file of ``output`` (a folder or one file) that DVC
    hashes: execution records (wall times, MLflow ids) are left out, as .dvcignore does."""
    files = sorted(output.rglob("*")) if output.is_dir() else [output]
    return {
        (f.relative_to(output) if output.is_dir() else Path(f.name)).as_posix(): f.read_bytes()
        for f in files
        if f.is_file() and not f.name.endswith(EXECUTION_FILE)
    }
