"""The append-only alias history and the alias order, on a real SQLite registry."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from lusaug.cli import app
from lusaug.tracking.errors import PromotionRefused, RegistryError
from lusaug.tracking.history import append_entry, history_key
from lusaug.tracking.promotion import promote, rollback
from tests.tracking.helpers import NAME, history_of, snapshot


def test_every_move_is_kept_with_its_fields_across_later_moves_and_rollbacks(registry, params):
    cfg = params.register
    seen = history_of(registry)
    assert [(e.kind, e.version) for e in seen] == [("register", v) for v in ("1", "2", "3")]
    steps = [
        lambda: promote(NAME, "3", "staging", cfg),
        lambda: promote(NAME, "3", "production", cfg, reason="first release"),
        lambda: promote(NAME, "2", "staging", cfg),
        lambda: promote(NAME, "2", "production", cfg),
        lambda: rollback(NAME, "production", "latency regression"),
        lambda: promote(NAME, "1", "production", cfg, force=True, reason="hotfix"),
    ]
    for step in steps:
        step()
        now = history_of(registry)
        assert now[: len(seen)] == seen  # nothing earlier was rewritten or lost
        assert len(now) == len(seen) + 1
        seen = now
    assert [e.seq for e in seen] == list(range(1, len(seen) + 1))
    release, rb = seen[4], seen[7]
    assert (release.alias, release.version, release.previous_holder) == ("production", "3", None)
    assert release.reason == "first release" and release.from_aliases == ("candidate", "staging")
    assert release.who == "tester" and release.host and release.when.endswith("+00:00")
    assert [g.name for g in release.gates] == ["alias_order", "onnx_parity", "val_f1_macro"]
    assert all(g.passed for g in release.gates) and not release.forced
    assert (rb.kind, rb.alias, rb.version, rb.previous_holder) == (
        "rollback",
        "production",
        "3",
        "2",
    )
    assert rb.reason == "rollback from v2: latency regression"
    hotfix = seen[8]
    assert hotfix.forced and hotfix.previous_holder == "3" and hotfix.reason == "hotfix"
    assert [g.name for g in hotfix.gates if not g.passed] == ["alias_order"]  # skipped staging


def test_alias_order_needs_the_previous_alias_held_and_not_rolled_back(registry, params):
    cfg = params.register
    # v3 holds candidate; v1 and v2 held it before (registered in turn): all may go to staging.
    with pytest.raises(PromotionRefused, match="v3 has not held staging.*promote it to staging"):
        promote(NAME, "3", "production", cfg)
    res = promote(NAME, "1", "staging", cfg)
    assert res.gates[0].passed and "held candidate (history #1" in res.gates[0].detail
    promote(NAME, "2", "staging", cfg)  # v2 takes staging from v1 by promotion
    promote(NAME, "1", "production", cfg)  # v1 held staging and lost it to a promotion: fine
    rollback(NAME, "staging", "v2 misbehaves")  # staging: v2 -> v1
    before = snapshot(registry)
    with pytest.raises(PromotionRefused, match="v2 was rolled back out of staging"):
        promote(NAME, "2", "production", cfg)  # rolled back out of staging: must pass it again
    assert snapshot(registry) == before
    res = promote(NAME, "2", "production", cfg, force=True, reason="incident 42")
    assert res.forced and [g.name for g in res.gates if not g.passed] == ["alias_order"]
    assert history_of(registry)[-1].forced


def test_rollback_walks_back_through_previous_holders(registry, params):
    cfg = params.register
    for v in ("1", "2", "3"):
        promote(NAME, v, "staging", cfg)
    assert rollback(NAME, "staging").version == "2"
    assert rollback(NAME, "staging").version == "1"
    with pytest.raises(RegistryError, match="no previous holder"):
        rollback(NAME, "staging")
    with pytest.raises(RegistryError, match="not set"):
        rollback(NAME, "production")
    assert [e.kind for e in history_of(registry)][-5:] == ["promotion"] * 3 + ["rollback"] * 2


def test_an_entry_is_never_overwritten_even_if_its_number_was_taken(registry):
    first = history_of(registry)[0]
    other = dataclasses.replace(first, op="another-operation", reason="late writer")
    written = append_entry(registry, NAME, other)  # seq 1 is taken by another operation
    entries = history_of(registry)
    assert (
        entries[0] == first and written.seq == len(entries) and entries[-1].reason == "late writer"
    )
    assert append_entry(registry, NAME, other) == written  # the same operation: written once
    assert history_key(written.seq) in snapshot(registry)["model_tags"]
    assert len(history_of(registry)) == len(entries)


def test_models_history_command_prints_every_move(registry, params, monkeypatch):
    cfg = params.register
    promote(NAME, "3", "staging", cfg)
    promote(NAME, "2", "production", cfg, force=True, reason="demo day")  # skips staging
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps the table at 80 columns otherwise
    r = CliRunner().invoke(app, ["models", "--history"])
    assert r.exit_code == 0, r.output
    for text in ("alias history", "register", "promotion (forced)", "demo day", "tester"):
        assert text in r.output
    assert "alias_order FAIL" in r.output
    r = CliRunner().invoke(app, ["models"])
    assert r.exit_code == 0 and "5 alias moves recorded" in r.output
