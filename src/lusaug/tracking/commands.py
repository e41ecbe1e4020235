"""``lusaug models [--history]``, ``lusaug promote VERSION --to ALIAS``, ``lusaug rollback ALIAS``.

Registry "stages" are aliases (MLflow 3 deprecated stages): candidate -> staging -> production.
Every command first repairs a move that a killed process left half-done
(:mod:`lusaug.tracking.moves`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

EXIT_REFUSED = 1  # promote/rollback refused or failed (the message says why)
EXIT_UNAVAILABLE = 2  # the registry cannot be read


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("promote")(promote)
    app.command("rollback")(rollback)


def _setup(params_file: Path) -> Any:
    import mlflow

    from lusaug.core.config import load_params
    from lusaug.core.mlflow_store import tracking_uri

    params = load_params(params_file)
    mlflow.set_tracking_uri(tracking_uri(params.mlflow.tracking_uri))
    return params


def _versions_table(cfg: Any, rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    order = " -> ".join([cfg.alias, *cfg.promote_to])
    table = Table(title=f"{cfg.model_name} (aliases: {order})")
    m = cfg.gate_metric
    for col in ("version", "aliases", "run", "strategy", "arch", m, "parity", "created"):
        table.add_column(col)
    for r in rows:
        value = "-" if r[m] is None else f"{r[m]:.3f}"
        if r[f"{m}_lo"] is not None and r[f"{m}_hi"] is not None:
            value += f" [{r[f'{m}_lo']:.3f}, {r[f'{m}_hi']:.3f}]"
        table.add_row(
            r["version"],
            ", ".join(r["aliases"]),
            r["run_name"],
            r["strategy"],
            r["architecture"],
            value,
            r["onnx_parity"],
            r["created"],
        )
    return table


def _history_table(name: str, entries: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{name}: alias history (append-only, oldest first)")
    cols = ("#", "when", "kind", "to", "version", "from", "previous", "who", "reason", "gates")
    for col in cols:
        table.add_column(col)
    for e in entries:
        gates = "; ".join(f"{g.name} {'pass' if g.passed else 'FAIL'}" for g in e.gates) or "-"
        kind = e.kind + (" (forced)" if e.forced else "") + (" (repaired)" if e.repaired else "")
        table.add_row(
            str(e.seq),
            e.when,
            kind,
            e.alias,
            f"v{e.version}",
            ", ".join(e.from_aliases) or "-",
            f"v{e.previous_holder}" if e.previous_holder else "-",
            e.who,
            e.reason,
            gates,
        )
    return table


def models(
    history: bool = typer.Option(False, "--history", help="Show every alias move instead."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """List registered versions (aliases, validation metric, ONNX parity) or the alias history."""
    from mlflow import MlflowClient
    from rich.console import Console

    from lusaug.tracking.errors import RegistryError
    from lusaug.tracking.moves import ensure_repaired
    from lusaug.tracking.moves import history as read_history
    from lusaug.tracking.versions import list_versions

    cfg = _setup(params_file).register
    client = MlflowClient()
    try:
        for line in ensure_repaired(client, cfg.model_name):
            typer.echo(f"repair: {line}", err=True)
        entries = read_history(client, cfg.model_name)
        rows = [] if history else list_versions(cfg.model_name, cfg.gate_metric)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_UNAVAILABLE) from None
    console = Console()
    if history:
        console.print(_history_table(cfg.model_name, entries))
        if not entries:
            typer.echo(f"no alias moves of {cfg.model_name} recorded yet")
        return
    console.print(_versions_table(cfg, rows))
    if not rows:
        typer.echo(f"no versions of {cfg.model_name} yet: run `dvc repro register`")
    elif entries:
        typer.echo(f"{len(entries)} alias moves recorded: `lusaug models --history`")


def promote(
    version: str = typer.Argument(..., help="Registered version number."),
    to: str = typer.Option(..., "--to", help="Alias to move: staging | production."),
    force: bool = typer.Option(False, "--force", help="Promote although a check fails."),
    reason: str = typer.Option("", "--reason", help="Why (required with --force; audited)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Move an alias to VERSION after the order and gates (ONNX parity, not worse than holder)."""
    from lusaug.tracking.errors import RegistryError
    from lusaug.tracking.promotion import promote as do_promote

    cfg = _setup(params_file).register
    try:
        res = do_promote(cfg.model_name, version, to, cfg, force=force, reason=reason)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    for g in res.gates:
        typer.echo(f"  {g.name}: {'pass' if g.passed else 'FAIL'} - {g.detail}")
    forced = " (forced)" if res.forced else ""
    seq = f", history #{res.entry.seq}" if res.entry else ""
    typer.echo(f"{cfg.model_name}@{to}: v{res.previous or '-'} -> v{res.version}{forced}{seq}")


def rollback(
    alias: str = typer.Argument(
        ..., help="Alias to give back to its previous holder (e.g. production)."
    ),
    reason: str = typer.Option("", "--reason", help="Why (audited)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Restore the version that held ALIAS before the current one (recorded in the history)."""
    from lusaug.tracking.errors import RegistryError
    from lusaug.tracking.promotion import rollback as do_rollback

    name = _setup(params_file).register.model_name
    try:
        res = do_rollback(name, alias, reason)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_REFUSED) from None
    seq = f", history #{res.entry.seq}" if res.entry else ""
    typer.echo(f"{name}@{alias}: v{res.previous} -> v{res.version} (rollback{seq})")
