"""Two real `lusaug promote` processes for one alias at the same moment: exactly one wins."""

from __future__ import annotations

from tests.tracking.helpers import history_of, race_two_promotions


def test_concurrent_promotions_of_one_alias_cannot_both_win(registry, tmp_path):
    winner = race_two_promotions(registry, tmp_path, ("2", "3"))
    moves = [e for e in history_of(registry) if e.alias == "staging"]
    assert [(e.version, e.previous_holder) for e in moves] == [(winner, None)]
