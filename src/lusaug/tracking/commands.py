"""``lusaug models``, ``lusaug promote VERSION --to ALIAS`` and ``lusaug rollback ALIAS``.

Registry "stages" are aliases (MLflow 3 deprecated stages): candidate -> staging -> production.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("promote")(promote)
    app.command("rollback")(rollback)


def _setup(params_file: Path):
    import mlflow

    from lusaug.config import load_params
    from lusaug.mlflow_store import tracking_uri

    params = load_params(params_file)
    mlflow.set_tracking_uri(tracking_uri(params.mlflow.tracking_uri))
    return params


def models(
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """List registered versions with their aliases, validation metric and ONNX parity."""
    from rich.console import Console
    from rich.table import Table

    from lusaug.tracking.registry import RegistryError, list_versions

    params = _setup(params_file)
    cfg = params.register
    try:
        rows = list_versions(cfg.model_name, cfg.gate_metric)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    table = Table(
        title=f"{cfg.model_name} (aliases: {cfg.alias} -> {' -> '.join(cfg.promote_to)})"
    )
    for col in (
        "version",
        "aliases",
        "run",
        "strategy",
        "arch",
        cfg.gate_metric,
        "parity",
        "created",
    ):
        table.add_column(col)
    m = cfg.gate_metric
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
    Console().print(table)
    if not rows:
        typer.echo(f"no versions of {cfg.model_name} yet: run `dvc repro register`")


def promote(
    version: str = typer.Argument(..., help="Registered version number."),
    to: str = typer.Option(..., "--to", help="Alias to move: staging | production."),
    force: bool = typer.Option(False, "--force", help="Promote although a gate fails."),
    reason: str = typer.Option("", "--reason", help="Why (required with --force; audited)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Move an alias to VERSION after gates (ONNX parity, not worse than the current holder)."""
    from lusaug.tracking.registry import RegistryError
    from lusaug.tracking.registry import promote as do_promote

    params = _setup(params_file)
    cfg = params.register
    try:
        res = do_promote(cfg.model_name, version, to, cfg, force=force, reason=reason)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for g in res.gates:
        typer.echo(f"  gate {g.name}: {'pass' if g.passed else 'FAIL'} - {g.detail}")
    forced = " (forced)" if res.forced else ""
    typer.echo(f"{cfg.model_name}@{to}: v{res.previous or '-'} -> v{res.version}{forced}")


def rollback(
    alias: str = typer.Argument(
        ..., help="Alias to give back to its previous holder (e.g. production)."
    ),
    reason: str = typer.Option("", "--reason", help="Why (audited)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
) -> None:
    """Restore the version that held ALIAS before the current one."""
    from lusaug.tracking.registry import RegistryError
    from lusaug.tracking.registry import rollback as do_rollback

    params = _setup(params_file)
    try:
        res = do_rollback(params.register.model_name, alias, reason)
    except RegistryError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(
        f"{params.register.model_name}@{alias}: v{res.previous} -> v{res.version} (rollback)"
    )
