"""A small real DVC repository to run `lusaug repro` and `dvc plots show` in."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

from lusaug.core.config import PROJ_ROOT
from tests.pipelines.helpers import run

# s1 writes a cached file from param a; s2 (after s1) a cached folder and a git-tracked metric
# from param b, and fails when b is negative (a late stage broken by a value only it reads).
DVC_YAML = """\
stages:
  s1:
    cmd: python -c "import yaml; open('o1.txt', 'w').write(str(yaml.safe_load(open('params.yaml'))['a']))"
    params: [a]
    outs: [o1.txt]
  s2:
    cmd: python s2.py
    deps: [s2.py, o1.txt]
    params: [b]
    outs:
      - d2
      - m2.json:
          cache: false
"""
S2 = """\
import json, os, sys, yaml
b = yaml.safe_load(open("params.yaml"))["b"]
os.makedirs("d2", exist_ok=True)
open("d2/part.txt", "w").write("half of " + str(b))
open("m2.json", "w").write("{")  # a half-written metric
if b == -2:  # hangs half-way, for a signal to stop it
    import time
    time.sleep(300)
if b < 0:
    sys.exit("s2 failed: b must be >= 0, got " + str(b))
open("d2/rest.txt", "w").write(str(b * 2))
json.dump({"b": b}, open("m2.json", "w"))
"""


def toy_repo(dest: Path) -> Path:
    """A git + DVC repository with two stages run once and committed."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "dvc.yaml").write_text(DVC_YAML)
    (dest / "s2.py").write_text(S2)
    (dest / "params.yaml").write_text("a: 1\nb: 2\n")
    run(["git", "init", "-q"], dest)
    run(["dvc", "init", "-q"], dest)
    run(["dvc", "repro", "-q"], dest)
    commit(dest, "first run")
    return dest


def commit(repo: Path, message: str) -> None:
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "add", "-A"], repo)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message], repo)


def set_params(repo: Path, **values: int) -> None:
    text = "".join(f"{k}: {v}\n" for k, v in {"a": 1, "b": 2, **values}.items())
    (repo / "params.yaml").write_text(text)


def plots_repo(dest: Path) -> Path:
    """A DVC repository with this project's plots config and template, and two plots."""
    dest.mkdir(parents=True, exist_ok=True)
    run(["git", "init", "-q"], dest)
    run(["dvc", "init", "-q"], dest)
    shutil.copy(PROJ_ROOT / ".dvc/config", dest / ".dvc/config")
    shutil.copy(PROJ_ROOT / ".dvc/plots_offline.html", dest / ".dvc/plots_offline.html")
    (dest / "confusion.csv").write_text("actual,predicted\na,a\na,b\nb,b\nb,b\n")
    (dest / "loss.json").write_text('[{"step": 0, "loss": 1.0}, {"step": 1, "loss": 0.5}]')
    (dest / "dvc.yaml").write_text(
        textwrap.dedent(
            """\
            plots:
              - confusion.csv:
                  template: confusion
                  x: actual
                  y: predicted
              - loss.json:
                  x: step
                  y: loss
            """
        )
    )
    return dest
