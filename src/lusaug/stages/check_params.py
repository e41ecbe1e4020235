"""Stage ``check_params``: the whole ``params.yaml`` checked strictly before anything runs.

DVC removes a stage's outputs before it runs the stage's command, so a params.yaml that only the
stage itself rejects would cost that stage's previous outputs. This stage depends on the whole
file (not on keys), every other stage depends on its marker, so ``dvc repro`` runs it first
whenever params.yaml or the config code changed: a misspelt section (``trian:``), an unknown or
missing key, a wrong type or a value the typed config refuses stops the run here, in seconds,
before any output is touched. The marker's bytes never change for a valid file, so nothing
downstream re-runs because of it: a valid change re-runs only the stages whose own ``params:``
list it changed. ``dvc.yaml`` declares the marker ``persist`` (DVC leaves it in place while the
check runs) and ``cache: false`` (it is a constant, kept in git).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lusaug.core.config import Params, load_params
from lusaug.core.utils import write_text

MARKER_TEXT = (
    "params.yaml passed the strict check of lusaug.core.config.load_params "
    "(stage check_params; this text never changes).\n"
)


@dataclass(frozen=True)
class CheckParamsPaths:
    params: Path  # params.yaml (a dependency as a whole file, so any edit re-runs the check)
    marker: Path  # reports/params_check.txt (every other stage depends on it)


def run(paths: CheckParamsPaths) -> Params:
    """Load ``paths.params`` through the typed config (raises :class:`ConfigError` naming the
    key and value) and write the constant marker; returns the parsed params."""
    params = load_params(paths.params)
    marker = Path(paths.marker)
    if not marker.is_file() or marker.read_text() != MARKER_TEXT:
        write_text(marker, MARKER_TEXT)
    return params
