"""The final model: selection, passed-over settings, the registered version, ONNX and int8."""

from __future__ import annotations

from lusaug.reporting.final import TITLE
from tests.reporting.helpers import build, p1, read, section, write


def test_selection_refit_registry_and_onnx_from_their_files(cv_run):
    sel = read(cv_run, "metrics/selection.json")
    final = read(cv_run, "metrics/final.json")
    reg = read(cv_run, "models/registered.json")
    onnx = read(cv_run, "reports/onnx_parity.json")
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert f"`{sel['chosen']['setting']}` with {sel['value']:.3f}" in part
    assert f"Refit `{final['setting']}` (seed {final['seed']})" in part
    assert f"{final['train_frames']} training frames" in part
    assert f"Registered `{reg['name']}` version {reg['version']} (alias `{reg['alias']}`" in part
    assert "model card is the version's description in the MLflow registry" in part
    cv = read(cv_run, "metrics/test.json")["settings"][final["setting"]]
    for m in ("f1_macro", "rare_recall", "rare_auroc"):
        assert f"{m} {p1(cv[m])} [{p1(cv[m + '_lo'])}, {p1(cv[m + '_hi'])}]" in part
    strategy, _, arch = final["setting"].rpartition("-")
    for c in read(cv_run, "metrics/comparison.json")["comparisons"].values():
        if (c["strategy"], c["architecture"]) == (strategy, arch):
            assert f"{c['decision']['verdict']} vs `{c['control']}`" in part
    par = onnx["parity"]
    assert f"parity {'passed' if par['passed'] else 'FAILED'} on {par['frames']}" in part
    assert f"argmax agreement {p1(par['argmax_agreement'])}%" in part
    if onnx.get("int8"):
        assert (
            f"int8 ({onnx['int8']['mode']}): accuracy {p1(onnx['int8']['accuracy_int8'])}%" in part
        )


def test_a_passed_over_setting_is_named_with_its_reason(cv_run):
    final = read(cv_run, "metrics/final.json")
    final["passed_over"] = {"synthetic-ddpm_all-vit": "generator ddpm_all is blocked"}
    write(cv_run, "metrics/final.json", final)
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert "Passed over (could not be refit on the final split):" in part
    assert "- `synthetic-ddpm_all-vit`: generator ddpm_all is blocked" in part


def test_without_final_json_the_selection_still_shows(cv_run):
    (cv_run / "metrics/final.json").unlink()
    _, text = build(cv_run)
    part = section(text, TITLE)
    assert "metrics/final.json is missing (stage `final`" in part
    assert read(cv_run, "metrics/selection.json")["chosen"]["setting"] in part
