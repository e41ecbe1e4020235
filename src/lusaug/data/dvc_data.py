"""Keep the top-level ``data.dvc`` in step with ``data/raw`` (the real DVC CLI, via subprocess).

``data.dvc`` sits at the repository root and tracks ``data/raw`` only (``path: data/raw``): derived
data (``data/frames``, ``data/splits.csv``) are stage outputs beside it, and a ``.dvc`` file over all
of ``data/`` would overlap them. DVC 3 has no ``dvc add --file``, so the file is written once from
``dvc add data/raw`` (moved up, ``path: raw`` -> ``path: data/raw``) and refreshed afterwards with
``dvc commit data.dvc``.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from lusaug.core.errors import LusaugError

logger = logging.getLogger(__name__)

DVC_FILE = "data.dvc"


class DvcError(LusaugError, RuntimeError):
    """DVC is missing, the folder is not a DVC repository, or a dvc command failed."""


def dvc_command() -> list[str]:
    """How to call the dvc CLI: the dvc installed beside this Python, else ``dvc`` on PATH."""
    if importlib.util.find_spec("dvc") is not None:
        return [sys.executable, "-m", "dvc"]
    exe = shutil.which("dvc")
    if exe is None:
        raise DvcError("dvc is not installed (pip install dvc, or run `make install`)")
    return [exe]


def run_dvc(root: Path, *args: str) -> str:
    """Run ``dvc ARGS`` in ``root``; raise :class:`DvcError` with dvc's own message on failure."""
    cmd = [*dvc_command(), *args]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip()
        raise DvcError(f"`dvc {' '.join(args)}` failed in {root} (exit {proc.returncode}): {msg}")
    return proc.stdout


def tracked_path(dvc_file: Path) -> str:
    """The ``path:`` of the single output a ``.dvc`` file tracks."""
    with dvc_file.open() as fh:
        data = yaml.safe_load(fh) or {}
    outs = data.get("outs") or []
    if len(outs) != 1 or "path" not in outs[0]:
        raise DvcError(f"{dvc_file} should track exactly one path, found {outs!r}")
    return str(outs[0]["path"])


def _drop_own_gitignore(gitignore: Path, entry: str) -> None:
    # `dvc add data/raw` writes data/.gitignore holding `/raw`; the root .gitignore already
    # ignores /data/raw, so a file holding nothing else is noise. Anything more is left alone.
    if not gitignore.is_file():
        return
    lines = [ln.strip() for ln in gitignore.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if lines == [entry]:
        gitignore.unlink()


def commit_raw(root: Path, raw: str = "data/raw") -> str:
    """Create or refresh ``<root>/data.dvc`` so it records the current content of ``raw``.

    Args:
        root: Repository root (holds ``.dvc/``).
        raw: The tracked folder, relative to ``root``.

    Returns:
        What was done: ``"created data.dvc"`` or ``"committed data.dvc"``.

    Raises:
        DvcError: dvc missing, ``root`` not a DVC repository, ``raw`` missing, or dvc failed.
    """
    root = Path(root).resolve()
    if not (root / ".dvc").is_dir():
        raise DvcError(f"{root} is not a DVC repository (no .dvc/); run `dvc init` first")
    raw_path = root / raw
    if not raw_path.is_dir():
        raise DvcError(f"{raw_path} does not exist; nothing to track")
    raw = Path(raw).as_posix()
    dvc_file = root / DVC_FILE
    if dvc_file.exists():
        current = tracked_path(dvc_file)
        if current != raw:
            raise DvcError(f"{dvc_file} tracks {current!r}, not {raw!r}; fix or remove it first")
        run_dvc(root, "commit", "-f", "-q", DVC_FILE)
        logger.info("refreshed %s for %s", DVC_FILE, raw)
        return f"committed {DVC_FILE}"

    run_dvc(root, "add", "-q", raw)
    name = raw_path.name
    added = raw_path.with_name(f"{name}.dvc")
    if not added.is_file():
        raise DvcError(f"`dvc add {raw}` did not write {added}")
    text = re.sub(
        rf"^([ \t]*-?[ \t]*path:[ \t]*){re.escape(name)}[ \t]*$",
        rf"\g<1>{raw}",
        added.read_text(),
        flags=re.MULTILINE,
    )
    dvc_file.write_text(text)
    added.unlink()
    # core.autostage has git-added the intermediate data/raw.dvc: unstage it (no-op outside git).
    subprocess.run(
        ["git", "rm", "-q", "--cached", "--ignore-unmatch", str(added.relative_to(root))],
        cwd=root,
        capture_output=True,
        check=False,
    )
    if tracked_path(dvc_file) != raw:
        raise DvcError(f"could not rewrite the path in {dvc_file}; check it by hand")
    if raw_path.parent != root:
        _drop_own_gitignore(raw_path.parent / ".gitignore", f"/{name}")
    logger.info("created %s tracking %s", DVC_FILE, raw)
    return f"created {DVC_FILE}"
