"""Shrink the training matrix of a params dict for a test: the committed params.yaml and the micro
profile name per-setting ``train.overrides`` and a primary comparison that only exist in their own
matrix, and the config refuses either when the strategies they name are gone."""

from __future__ import annotations


def set_strategies(params: dict, strategies: list[str], architectures: list[str] | None = None):
    """``train.strategies`` = ``strategies`` on ``architectures`` (default: all), no overrides, and
    a primary comparison inside that matrix: the first non-baseline strategy vs the baseline."""
    train, evaluate = params["train"], params["evaluate"]
    if architectures is not None:
        train["architectures"] = {a: train["architectures"][a] for a in architectures}
    train["strategies"] = list(strategies)
    train["overrides"] = []
    others = [s for s in strategies if s != evaluate["baseline"]]
    if others:
        evaluate["primary"].update(
            strategy=others[0],
            control=evaluate["baseline"],
            architecture=next(iter(train["architectures"])),
        )
    return params
