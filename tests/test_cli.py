"""The command line's front door: every --help works, and bad input is one line, not a traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lusaug.cli import app
from lusaug.core.config import PROJ_ROOT

LUSAUG = shutil.which("lusaug") or str(Path(sys.executable).with_name("lusaug"))


def _command_paths(command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the app, as the words that name it (root: ())."""
    paths = [prefix]
    if hasattr(command, "commands"):  # a group (typer ships its own click classes)
        for name, sub in command.commands.items():
            paths += _command_paths(sub, (*prefix, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))
NAMES = [" ".join(p) or "lusaug" for p in COMMANDS]


def test_the_walk_finds_every_command():
    assert {"serve", "predict", "models", "profile", "report", "import"} <= set(NAMES)


@pytest.mark.parametrize("path", COMMANDS, ids=NAMES)
def test_help_of_every_command(path):
    r = CliRunner().invoke(app, [*path, "--help"])
    assert r.exit_code == 0, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)
    assert "Usage: lusaug" in r.output and "Traceback" not in r.output


def test_bare_lusaug_prints_the_help_and_succeeds():
    r = CliRunner().invoke(app, [])
    assert r.exit_code == 0 and "Usage: lusaug" in r.output and "serve" in r.output


@pytest.mark.skipif(not Path(LUSAUG).exists(), reason="the lusaug console script is not installed")
def test_help_through_the_installed_console_script():
    """The real `lusaug` script, as a user runs it (Rich help rendering included)."""
    env = {**os.environ, "PYTHONPATH": str(PROJ_ROOT / "src"), "COLUMNS": "100"}
    for path in [(), *COMMANDS]:
        args = [LUSAUG, *path] + (["--help"] if path else [])
        out = subprocess.run(
            args, check=False, capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 0, (path, out.stderr[-2000:])
        assert "Usage: lusaug" in out.stdout, path
        assert "Traceback" not in out.stdout + out.stderr, (path, out.stderr[-2000:])
    serve = subprocess.run(
        [LUSAUG, "serve", "--help"], check=False, capture_output=True, text=True, env=env
    )
    assert "/health[/live|/ready]" in serve.stdout and "[serve.model]" in serve.stdout


def test_an_unknown_profile_is_one_line_naming_the_known_ones(tmp_path):
    shutil.copy(PROJ_ROOT / "params.yaml", tmp_path / "params.yaml")
    before = (tmp_path / "params.yaml").read_text()
    r = CliRunner().invoke(app, ["profile", "bogus", "--params", str(tmp_path / "params.yaml")])
    assert r.exit_code == 2 and r.stdout == ""
    (line,) = r.stderr.splitlines()
    assert line.startswith("error: unknown profile 'bogus'")
    for known in ("default", "micro", "pocus", "paper"):
        assert known in line
    assert (tmp_path / "params.yaml").read_text() == before  # nothing written


MISSING = "no-such-params.yaml"
BAD_INPUT = {
    "serve": ["serve", "--params", MISSING],
    "predict": ["predict", "a.png", "--params", MISSING],
    "models": ["models", "--params", MISSING],
    "promote": ["promote", "1", "--to", "staging", "--params", MISSING],
    "rollback": ["rollback", "production", "--params", MISSING],
    "folds": ["folds", "--params", MISSING],
    "phantom": ["phantom", "--params", MISSING],
    "import": ["import", "nowhere", "--params", MISSING],
    "profile on a missing params file": ["profile", "micro", "--params", MISSING],
    "predict with a missing model": ["predict", "a.png", "--model", "nowhere.onnx"],
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_error_line_and_exit_2(case, tmp_path, monkeypatch):
    shutil.copy(PROJ_ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, BAD_INPUT[case])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
