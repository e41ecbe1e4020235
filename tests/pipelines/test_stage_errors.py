"""Every stage script reports a bad params.yaml in one line that names the stage, the key and
the value it got, before it writes anything (the commands are dvc.yaml's own)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from lusaug.core.config import PROJ_ROOT

ITEM = {"${item.fold}": "0", "${item.generator}": "ddpm_all", "${item}": "0"}


def _commands() -> list[tuple[str, list[str]]]:
    stages = yaml.safe_load((PROJ_ROOT / "dvc.yaml").read_text())["stages"]
    found = []
    for name, stage in stages.items():
        cmd = stage.get("do", stage)["cmd"]
        for var, value in ITEM.items():
            cmd = cmd.replace(var, value)
        found.append((name, cmd.split()))
    return found


def _script(path: Path):
    spec = importlib.util.spec_from_file_location(f"stage_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("name", "argv"), _commands(), ids=[n for n, _ in _commands()])
def test_a_config_error_is_one_line_naming_stage_key_and_value(name, argv, tmp_path, monkeypatch):
    params = yaml.safe_load((PROJ_ROOT / "params.yaml").read_text())
    params["train"]["epochs"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LUSAUG_PARAMS", raising=False)
    assert argv[0] == "python"
    script = _script(PROJ_ROOT / argv[1])
    with pytest.raises(SystemExit) as stopped:
        script.main(argv[2:])
    message = stopped.value.code
    assert isinstance(message, str), f"{name} exited {message!r} instead of printing the error"
    assert message.startswith(name), message
    assert "failed: train.epochs: must be >= 1, got 0" in message, message
    assert "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # nothing written
