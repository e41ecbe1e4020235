"""The append-only audit history of a registered model, and the intents that make moves safe.

Storage: one **registered-model tag per entry**, ``lusaug.history.<seq>`` = the entry as JSON.
Why tags: a registered model has no artifact store of its own (an artifact would live in some
run and every append would rewrite one file, losing entries to crashes and races); tags are the
same client call on a SQLite file and on a tracking server, show in the registry UI, and hold
100 kB each. One key per entry means an append never rewrites an earlier entry: entries are
written once, under the registry lock, and never changed or deleted, so they survive every
later move and rollback.

An **intent** (``lusaug.intent.<op>``) is written before an alias moves and cleared after its
history entry is in place; one left behind marks a move that was interrupted. Whoever next holds
the lock repairs it (:func:`lusaug.tracking.moves.repair_pending`).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from lusaug.tracking.errors import RegistryError

if TYPE_CHECKING:
    from mlflow import MlflowClient

HISTORY_PREFIX = "lusaug.history."
INTENT_PREFIX = "lusaug.intent."
SEQ_WIDTH = 6  # zero-padded, so the tags also sort by sequence in the MLflow UI
KINDS = ("register", "promotion", "rollback")
WHEN_UNIT = "milliseconds"  # resolution of an entry's UTC time


@dataclass(frozen=True)
class GateResult:
    """One check of a promotion: its name, whether it passed, and why."""

    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class HistoryEntry:
    """One alias move: ``version`` took ``alias`` (``to``) from ``previous_holder``."""

    seq: int
    kind: str  # register | promotion | rollback
    alias: str  # the alias that moved ("to")
    version: str
    from_aliases: tuple[str, ...]  # aliases the version held before ("from")
    previous_holder: str | None
    who: str
    host: str
    reason: str
    forced: bool = False
    gates: tuple[GateResult, ...] = ()
    repaired: bool = False  # completed by the next command after its process died
    # unique id of the operation (links the entry to its intent) and its UTC time (ISO 8601)
    op: str = field(default_factory=lambda: uuid.uuid4().hex)
    when: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec=WHEN_UNIT))

    @property
    def to(self) -> str:
        return self.alias

    def to_json(self) -> str:
        data = asdict(self)
        data["from"] = list(data.pop("from_aliases"))
        data["to"] = data.pop("alias")
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> HistoryEntry:
        data = json.loads(raw)
        data["from_aliases"] = tuple(data.pop("from"))
        data["alias"] = data.pop("to")
        data["gates"] = tuple(GateResult(**g) for g in data.get("gates", ()))
        known = {f.name for f in fields(cls)}  # entries written by a newer lusaug still load
        return cls(**{k: v for k, v in data.items() if k in known})


def history_key(seq: int) -> str:
    return f"{HISTORY_PREFIX}{seq:0{SEQ_WIDTH}d}"


def read_history(model_tags: dict[str, str]) -> list[HistoryEntry]:
    """Every committed entry, oldest first, from the registered model's tags."""
    entries = []
    for key, raw in model_tags.items():
        if key.startswith(HISTORY_PREFIX):
            try:
                entries.append(HistoryEntry.from_json(raw))
            except (ValueError, TypeError, KeyError) as exc:
                raise RegistryError(f"history tag {key} is not a lusaug entry: {exc}") from exc
    return sorted(entries, key=lambda e: e.seq)


def next_seq(model_tags: dict[str, str]) -> int:
    seqs = [
        int(k.removeprefix(HISTORY_PREFIX)) for k in model_tags if k.startswith(HISTORY_PREFIX)
    ]
    return max(seqs, default=0) + 1


def append_entry(client: MlflowClient, name: str, entry: HistoryEntry) -> HistoryEntry:
    """Write ``entry`` once; an entry of the same operation already there is kept as it is.

    If its sequence number was taken by another operation (only possible when a lock holder
    overran its lease), the entry goes to the next free number instead of overwriting.
    """
    tags = client.get_registered_model(name).tags
    existing = {e.op: e for e in read_history(tags)}
    if entry.op in existing:
        return existing[entry.op]
    if history_key(entry.seq) in tags:
        entry = replace(entry, seq=next_seq(tags))
    client.set_registered_model_tag(name, history_key(entry.seq), entry.to_json())
    return entry


@dataclass(frozen=True)
class Intent:
    """A move that was decided and may or may not have happened: the entry it will append."""

    entry: HistoryEntry
    lock_id: str  # the registry lock (its experiment id) of the process that wrote it

    def to_json(self) -> str:
        return json.dumps({"entry": json.loads(self.entry.to_json()), "lock": self.lock_id})

    @classmethod
    def from_json(cls, raw: str) -> Intent:
        data = json.loads(raw)
        lock_id = data["lock"] if "lock" in data else f"ticket {data['ticket']}"  # before 2026-12
        return cls(HistoryEntry.from_json(json.dumps(data["entry"])), str(lock_id))


def intent_key(op: str) -> str:
    return f"{INTENT_PREFIX}{op}"


def read_intents(model_tags: dict[str, str]) -> list[Intent]:
    intents = []
    for key, raw in model_tags.items():
        if key.startswith(INTENT_PREFIX):
            try:
                intents.append(Intent.from_json(raw))
            except (ValueError, TypeError, KeyError) as exc:
                raise RegistryError(f"intent tag {key} is not a lusaug intent: {exc}") from exc
    return intents


def write_intent(client: MlflowClient, name: str, entry: HistoryEntry, lock_id: str) -> None:
    client.set_registered_model_tag(name, intent_key(entry.op), Intent(entry, lock_id).to_json())


def clear_intent(client: MlflowClient, name: str, op: str) -> None:
    client.delete_registered_model_tag(name, intent_key(op))


# ------------------------------------------------------------------------- replaying history


def rollback_target(entries: list[HistoryEntry], alias: str) -> str | None:
    """The version a rollback of ``alias`` restores: a stack replayed from the history.

    Every move onto ``alias`` pushes the holder it replaced; a rollback pops it. So rolling back
    twice after two promotions goes back two holders, and a rollback is not undone by the next.
    """
    stack: list[str] = []
    for e in entries:
        if e.alias != alias:
            continue
        if e.kind == "rollback":
            if stack:
                stack.pop()
        elif e.previous_holder is not None:
            stack.append(e.previous_holder)
    return stack[-1] if stack else None


def held_record(entries: list[HistoryEntry], alias: str, version: str) -> HistoryEntry | None:
    """The last entry that gave ``alias`` to ``version``, unless a rollback later took it back.

    A version rolled back out of an alias was judged bad there, so it no longer counts as having
    held it (it must be promoted to that alias again).
    """
    record = None
    for e in entries:
        if e.alias != alias:
            continue
        if e.version == version:
            record = e
        elif e.kind == "rollback" and e.previous_holder == version:
            record = None
    return record
