"""Section "Final model": the setting chosen on pooled validation, what was passed over and why,
the refit, the registered version and its model card, ONNX parity and the int8 variant."""

from __future__ import annotations

from typing import Any

from lusaug.core.markdown import NA, Doc, fixed, interval, pct, signed_pct
from lusaug.reporting.outputs import FILES, RunOutputs, missing

TITLE = "Final model"
VALUE_DIGITS = 3  # selection metric values (validation macro-F1)
RUNNERS_UP = 3  # settings shown behind the chosen one
SHA_CHARS = 12  # shown prefix of a checksum
DIFF_FORMAT = ".1e"  # ONNX max |logit difference|


def selection(run: RunOutputs, doc: Doc) -> None:
    sel, final = run.get("selection"), run.get("final")
    if not isinstance(sel, dict):
        doc.p(missing(FILES["selection"], "evaluate"))
        return
    chosen = sel.get("chosen") or {}
    ranked = [(s, v) for s, v in (sel.get("settings") or {}).items() if s != chosen.get("setting")]
    others = ", ".join(f"`{s}` {fixed(v, VALUE_DIGITS)}" for s, v in ranked[:RUNNERS_UP])
    doc.p(
        f"Chosen on pooled validation {sel.get('metric', NA)} ({sel.get('note', '')}): "
        f"`{chosen.get('setting', NA)}` with {fixed(sel.get('value'), VALUE_DIGITS)}"
        + (f"; next: {others}" if others else "")
        + ". The test folds played no part in this choice."
    )
    if not isinstance(final, dict):
        doc.p(missing(FILES["final"], "final"))
        return
    passed = final.get("passed_over") or {}
    if passed:
        doc.p("Passed over (could not be refit on the final split):")
        doc.bullets([f"`{s}`: {why}" for s, why in passed.items()])
    if final.get("setting") != chosen.get("setting"):
        doc.p(f"Refit instead: `{final.get('setting')}` (the best setting that could be refit).")
    validation = final.get("validation") or {}
    metric = (final.get("chosen_by") or {}).get("metric", "")
    doc.p(
        f"Refit `{final.get('setting', NA)}` (seed {final.get('seed', NA)}) on every patient of "
        f"the final split: {final.get('train_frames', NA)} training frames "
        f"({final.get('synthetic_frames', 0)} synthetic), best epoch "
        f"{final.get('best_epoch', NA)}; its own validation {metric} "
        + interval(
            validation.get(metric), validation.get(f"{metric}_lo"), validation.get(f"{metric}_hi")
        )
        + "% (early-stopping patients; no test number exists for this model)."
    )


def _estimate(m: dict[str, Any]) -> str:
    keys = ("accuracy", "f1_macro", "balanced_accuracy", "rare_recall", "rare_auroc", "rare_ap")
    shown = [
        f"{k} {interval(m.get(k), m.get(f'{k}_lo'), m.get(f'{k}_hi'))}" for k in keys if k in m
    ]
    return "; ".join(shown) or NA


def _verdicts(run: RunOutputs, setting: str) -> str:
    strategy, _, arch = setting.rpartition("-")
    found = [
        f"{e['decision']['verdict']} vs `{e['control']}`"
        for e in run.comparisons().values()
        if (e.get("strategy"), e.get("architecture")) == (strategy, arch) and e.get("decision")
    ]
    return "; ".join(found) or "the reference of its comparisons"


def registered(run: RunOutputs, doc: Doc) -> None:
    r, final = run.get("registered"), run.get("final") or {}
    if not isinstance(r, dict):
        doc.p(missing(FILES["registered"], "register"))
        return
    doc.p(
        f"Registered `{r.get('name', NA)}` version {r.get('version', NA)} (alias "
        f"`{r.get('alias', NA)}`, `{r.get('model_uri', NA)}`) from run `{r.get('run_name', NA)}`"
        + (" (an existing version with the same checkpoint was reused)" if r.get("reused") else "")
        + f"; ONNX sha256 `{str(r.get('onnx_sha256', NA))[:SHA_CHARS]}…`."
    )
    setting = final.get("setting")
    strategy, _, arch = str(setting).rpartition("-")
    metrics = run.settings().get((strategy, arch))
    doc.p(
        "Its model card is the version's description in the MLflow registry (Models tab of "
        "`mlflow ui`): data hash and commit, the split, the cross-validated estimate of its "
        "setting and the decision record (the primary comparison, the placebo, the setting's "
        "verdicts), intended use and limitations. The estimate it carries (pooled out-of-fold, "
        "%): "
        + (
            f"{_estimate(metrics)}; verdicts: {_verdicts(run, setting)}."
            if isinstance(metrics, dict)
            else f"not available (`{setting}` is not in metrics/test.json)."
        )
    )


def onnx(run: RunOutputs, doc: Doc) -> None:
    o = run.get("onnx")
    if not isinstance(o, dict):
        doc.p(missing(FILES["onnx"], "export"))
        return
    par, info = o.get("parity") or {}, o.get("onnx") or {}
    diff = par.get("max_abs_diff")
    items = [
        (
            f"ONNX (opset {info.get('opset', NA)}, {info.get('exporter', NA)} exporter, checker "
            f"{info.get('checker', NA)}): parity {'passed' if par.get('passed') else 'FAILED'} on "
            f"{par.get('frames', NA)} {par.get('split', '')} frames, max |logit difference| "
            f"{format(diff, DIFF_FORMAT) if isinstance(diff, int | float) else NA} (tolerance "
            f"{par.get('atol', NA)}), argmax agreement {pct(par.get('argmax_agreement'))}%, accuracy "
            f"torch {pct(par.get('accuracy_torch'))}% / ONNX {pct(par.get('accuracy_onnx'))}%."
        )
    ]
    q = o.get("int8")
    if isinstance(q, dict):
        items.append(
            f"int8 ({q.get('mode', NA)}): accuracy {pct(q.get('accuracy_int8'))}%, "
            f"{signed_pct(q.get('accuracy_delta'))} points against fp32, argmax agreement with "
            f"fp32 {pct(q.get('argmax_agreement_with_fp32'))}%."
        )
    else:
        items.append("int8: no quantised variant in this run.")
    doc.bullets(items)


def final_section(run: RunOutputs, doc: Doc) -> None:
    doc.h(2, TITLE)
    selection(run, doc)
    registered(run, doc)
    onnx(run, doc)
