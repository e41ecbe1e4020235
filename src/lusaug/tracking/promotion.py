"""Promotion along ``candidate -> staging -> production`` with gates, and rollback.

**Order.** The order is ``register.alias`` followed by ``register.promote_to``. A version may
take alias *k* (k >= 1) only if it holds alias *k - 1* now, or the history shows a move of
alias *k - 1* to it that no later rollback of alias *k - 1* took back (a version rolled back
out of staging has to pass staging again). ``force`` with a reason overrides the order like any
gate; the history entry records ``forced`` and the failed checks.

**Gates** (:func:`check_gates`): the export stage's ONNX parity passed (``register.
require_parity``), and the version is not worse on ``register.gate_metric`` than the alias's
current holder beyond the holder's interval (lower bound).

**Concurrency.** Each command reads the alias holder it decides against, then takes the model's
registry lock (:mod:`lusaug.tracking.lock`), re-reads and refuses with
:class:`RegistryConflict` if the alias moved meanwhile (compare-and-set). So of two concurrent
promotions of one alias exactly one moves it; the other either finds the lock busy or the alias
moved, and says so. Gates and order are evaluated under the lock, on the state it commits on.

**Rollback** gives the alias back to the holder the history says it replaced (a stack: see
:func:`lusaug.tracking.history.rollback_target`); it is audited in the same history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from mlflow import MlflowClient

from lusaug.core.config import RegisterParams
from lusaug.tracking.errors import PromotionRefused, RegistryConflict, RegistryError
from lusaug.tracking.history import GateResult, HistoryEntry, held_record, rollback_target
from lusaug.tracking.lock import DEFAULT_LEASE_S, DEFAULT_WAIT_S
from lusaug.tracking.moves import FinalCheck, commit_move, history, plan_move, registry_operation
from lusaug.tracking.versions import PARITY_TAG, alias_holder, float_tag, get_version

ORDER_GATE = "alias_order"


def alias_order(cfg: RegisterParams) -> list[str]:
    """``candidate -> staging -> production``: the registration alias, then ``promote_to``."""
    return [cfg.alias, *cfg.promote_to]


def check_order(
    entries: list[HistoryEntry], holders: dict[str, str], version: str, to: str, order: list[str]
) -> GateResult:
    """Whether ``version`` holds or has held the alias before ``to`` in ``order``."""
    before = order[order.index(to) - 1]
    path = " -> ".join(order)
    if holders.get(before) == version:
        return GateResult(ORDER_GATE, True, f"v{version} holds {before} ({path})")
    record = held_record(entries, before, version)
    if record is not None:
        return GateResult(
            ORDER_GATE, True, f"v{version} held {before} (history #{record.seq}; {path})"
        )
    ever = any(e.alias == before and e.version == version for e in entries)
    why = "was rolled back out of" if ever else "has not held"
    return GateResult(
        ORDER_GATE,
        False,
        f"v{version} {why} {before}; the order is {path}: promote it to {before} first",
    )


def check_gates(
    client: MlflowClient, name: str, version: str, alias: str, cfg: RegisterParams
) -> list[GateResult]:
    """Quality gates for ``version`` -> ``alias`` (evaluated only; nothing is changed)."""
    mv = get_version(client, name, version)
    gates = []
    if cfg.require_parity:
        parity = mv.tags.get(PARITY_TAG, "missing")
        gates.append(
            GateResult(
                "onnx_parity",
                parity == "passed",
                f"ONNX parity is {parity!r} (the export stage must pass it)",
            )
        )
    metric = cfg.gate_metric
    new = float_tag(mv.tags, metric)
    holder = alias_holder(client, name, alias)
    if holder is None or holder == version:
        detail = f"no current {alias}; {metric} = {new}" if new is not None else None
        gates.append(GateResult(metric, new is not None, detail or f"v{version} has no {metric}"))
        return gates
    old_tags = get_version(client, name, holder).tags
    old, old_lo = float_tag(old_tags, metric), float_tag(old_tags, f"{metric}_lo")
    if new is None or old is None:
        gates.append(
            GateResult(metric, False, f"{metric} missing on v{version} or on {alias} holder")
        )
        return gates
    floor = old_lo if old_lo is not None else old
    ok = new >= floor
    verdict = "not worse beyond the interval" if ok else "worse beyond the holder's interval"
    gates.append(
        GateResult(
            metric,
            ok,
            f"{metric} {new:.4f} vs {alias} holder v{holder} {old:.4f} "
            f"(interval low {floor:.4f}): {verdict}",
        )
    )
    return gates


@dataclass
class PromotionResult:
    """What a promotion or rollback did; ``entry`` is its history entry."""

    name: str
    version: str
    alias: str
    previous: str | None
    forced: bool
    gates: list[GateResult] = field(default_factory=list)
    entry: HistoryEntry | None = None


def _conflict(name: str, alias: str, seen: str | None, now: str | None, what: str) -> None:
    if now != seen:
        raise RegistryConflict(
            f"{name}@{alias} moved from v{seen or '-'} to v{now or '-'} while this {what} "
            f"waited for the registry lock; nothing changed. Check `lusaug models --history` "
            "and re-run if it still makes sense"
        )


def promote(
    name: str,
    version: str | int,
    to: str,
    cfg: RegisterParams,
    *,
    force: bool = False,
    reason: str = "",
    final_checks: Sequence[FinalCheck] = (),
    lock_wait_s: float = DEFAULT_WAIT_S,
    lock_lease_s: float = DEFAULT_LEASE_S,
) -> PromotionResult:
    """Move alias ``to`` to ``version`` if order and gates pass (or ``force`` with a ``reason``).

    Args:
        name: Registered model name.
        version: Version to promote.
        to: Target alias, one of ``cfg.promote_to``.
        cfg: The ``register`` section (order, gates).
        force: Promote although checks fail (needs ``reason``; recorded as forced).
        reason: Why; goes into the history (default "gates passed").
        final_checks: Run after the intent is written, just before the alias moves; one that
            raises aborts the promotion with nothing changed.
        lock_wait_s: Seconds to wait for a concurrent registry operation to finish.
        lock_lease_s: Lease of this operation's lock (see :mod:`lusaug.tracking.lock`).
    """
    version = str(version)
    if to not in cfg.promote_to:
        raise RegistryError(
            f"--to must be one of {cfg.promote_to} (register.promote_to), got {to!r}"
        )
    if force and not reason.strip():
        raise RegistryError('--force needs --reason "..." (it goes into the history)')
    client = MlflowClient()
    get_version(client, name, version)
    seen = alias_holder(client, name, to)  # what the caller decided against
    purpose = f"promote v{version} to {to}"
    with registry_operation(
        client, name, purpose=purpose, wait_s=lock_wait_s, lease_s=lock_lease_s
    ) as lock:
        previous = alias_holder(client, name, to)
        _conflict(name, to, seen, previous, "promotion")
        if previous == version:
            raise RegistryError(f"version {version} already holds {name}@{to}")
        holders = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
        order = check_order(history(client, name), holders, version, to, alias_order(cfg))
        gates = [order, *check_gates(client, name, version, to, cfg)]
        failed = [g for g in gates if not g.passed]
        if failed and not force:
            raise PromotionRefused(
                f"refusing to promote {name} v{version} to {to}: "
                + "; ".join(g.detail for g in failed)
                + ' (override with --force --reason "...")'
            )
        why = reason.strip() or "gates passed"
        forced = bool(failed)
        entry = plan_move(
            client,
            name,
            kind="promotion",
            alias=to,
            version=version,
            reason=why,
            forced=forced,
            gates=gates,
        )
        written = commit_move(client, name, entry, lock, final_checks)
    return PromotionResult(name, version, to, previous, forced, gates, written)


def rollback(
    name: str,
    alias: str,
    reason: str = "",
    *,
    lock_wait_s: float = DEFAULT_WAIT_S,
    lock_lease_s: float = DEFAULT_LEASE_S,
) -> PromotionResult:
    """Give ``alias`` back to the version it replaced (per the history); audited like a move.

    Args:
        name: Registered model name.
        alias: Alias to roll back (e.g. ``production``).
        reason: Why; recorded with ``rollback from v<current>``.
        lock_wait_s: Seconds to wait for a concurrent registry operation to finish.
        lock_lease_s: Lease of this operation's lock.
    """
    client = MlflowClient()
    seen = alias_holder(client, name, alias)
    if seen is None:
        raise RegistryError(f"{name}@{alias} is not set; nothing to roll back")
    with registry_operation(
        client, name, purpose=f"roll back {alias}", wait_s=lock_wait_s, lease_s=lock_lease_s
    ) as lock:
        current = alias_holder(client, name, alias)
        _conflict(name, alias, seen, current, "rollback")
        target = rollback_target(history(client, name), alias)
        if target is None:
            raise RegistryError(f"{name}@{alias} has no previous holder to roll back to")
        if target == current:
            raise RegistryError(
                f"the history's previous holder of {name}@{alias} is the current one "
                f"(v{current}): the alias was moved outside lusaug; use `lusaug promote`"
            )
        why = f"rollback from v{current}" + (f": {reason.strip()}" if reason.strip() else "")
        entry = plan_move(client, name, kind="rollback", alias=alias, version=target, reason=why)
        written = commit_move(client, name, entry, lock)
    return PromotionResult(name, target, alias, current, False, [], written)
