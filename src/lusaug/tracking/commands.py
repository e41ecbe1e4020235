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


def _when(iso: str) -> str:
    """``2026-05-01T12:00:00+00:00`` -> ``2026-05-01 12:00`` (minutes are enough here)."""
    return iso.replace("T", " ")[:16]


def _versions_table(cfg: Any, rows: list[dict[str, Any]]) -> Any:
    """One row per version; fits the terminal (a pipe: 80 columns) by wrapping cells, never
    cutting them, and leaves out the strategy/architecture columns when no version has one."""
    from rich import box
    from rich.table import Table

    order = " -> ".join([cfg.alias, *cfg.promote_to])
    m = cfg.gate_metric
    table = Table(
        title=f"{cfg.model_name} (aliases: {order})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    optional = [k for k in ("strategy", "architecture") if any(r[k] for r in rows)]
    short = {"version", "parity", "created"}  # never wrapped
    for col in ["version", "aliases", "run", *optional, m, "parity", "created"]:
        table.add_column(col, overflow="fold", no_wrap=col in short, min_width=min(len(col), 8))
    for r in rows:
        value = "-" if r[m] is None else f"{r[m]:.3f}"
        if r[f"{m}_lo"] is not None and r[f"{m}_hi"] is not None:
            value += f" [{r[f'{m}_lo']:.3f}, {r[f'{m}_hi']:.3f}]"
        table.add_row(
            f"v{r['version']}",
            ", ".join(r["aliases"]) or "-",
            r["run_name"] or "-",
            *(r[k] for k in optional),
            value,
            r["onnx_parity"] or "-",
            _when(r["created"]),
        )
    return table


def _history_log(name: str, entries: list[Any]) -> Any:
    """The alias history as a log, one entry per move: what moved, when and by whom on one
    line, the reason and the gates under it (wrapped at the terminal's width, indented)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    log = Table.grid(padding=(0, 2))
    log.add_column(justify="right", no_wrap=True)
    log.add_column(overflow="fold")
    for e in entries:
        kind = e.kind + (" (forced)" if e.forced else "") + (" (repaired)" if e.repaired else "")
        was = f"v{e.previous_holder}" if e.previous_holder else "unset"
        held = f" (v{e.version} held {', '.join(e.from_aliases)})" if e.from_aliases else ""
        lines = [f"{_when(e.when)}  {kind}  {e.alias}: {was} -> v{e.version}{held}  by {e.who}"]
        lines.append(f"reason: {e.reason or '-'}")
        if e.gates:
            gates = ", ".join(f"{g.name} {'pass' if g.passed else 'FAIL'}" for g in e.gates)
            lines.append(f"gates: {gates}")
        log.add_row(f"#{e.seq}", Text("\n".join(lines)))  # Text: never read as markup
    title = Text(f"{name}: alias history (append-only, oldest first)", style="italic")
    return Group(title, log)


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
        console.print(_history_log(cfg.model_name, entries))
        if not entries:
            typer.echo(f"no alias moves of {cfg.model_name} recorded yet")
        return
    console.print(_versions_table(cfg, rows))
    if not rows:
        typer.echo(f"no versions of {cfg.model_name} yet: run `dvc repro register`")
    elif entries:
        moves = f"{len(entries)} alias move" + ("s" if len(entries) != 1 else "")
        typer.echo(f"{moves} recorded; `lusaug models --history` lists them")


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
    was = f"v{res.previous}" if res.previous else "unset"
    typer.echo(f"{cfg.model_name}@{to}: {was} -> v{res.version}{forced}{seq}")


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
