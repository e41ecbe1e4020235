"""``lusaug cluster repro [TARGETS] [--scheduler ADDRESS | --workers N]``.

Runs dvc.yaml's stage items on Dask workers (README: Scale out). Library imports are deferred so
``lusaug --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

EXIT_FAILED = 1  # an item failed or the run could not start (the message says why)


def register(app: typer.Typer) -> None:
    cluster_app = typer.Typer(
        help="Run the pipeline's stage items on a Dask cluster (README: Scale out).",
        no_args_is_help=True,
    )
    cluster_app.command("repro")(repro)
    app.add_typer(cluster_app, name="cluster")


def repro(
    targets: list[str] = typer.Argument(None, help="Stages or items, as for `dvc repro`."),
    scheduler: str = typer.Option(
        "", "--scheduler", help="Dask scheduler address (tcp://host:8786); none: a local cluster."
    ),
    workers: int = typer.Option(2, "--workers", "-j", help="Local cluster: worker processes."),
    repo: str = typer.Option(
        "", "--repo", help="URL workers clone from (default: origin, else this folder)."
    ),
    gpu: list[str] = typer.Option(
        [], "--gpu", help="A stage whose items need a GPU worker (resources GPU=1); repeatable."
    ),
    pull: bool = typer.Option(True, "--pull/--no-pull", help="dvc pull every output at the end."),
    sync_s: float = typer.Option(
        30.0, "--checkpoint-every", help="Seconds between checkpoint copies to the store."
    ),
    keep_worktrees: bool = typer.Option(
        False, "--keep-worktrees", help="Leave each item's working copy on its worker."
    ),
    dashboard: str = typer.Option(
        ":8787", help="Local cluster: dashboard address ('' = no dashboard)."
    ),
    root: Path = typer.Option(Path("."), "--root", help="The repository (the user's checkout)."),
) -> None:
    """Run `dvc repro [TARGETS]` on Dask workers; the checkout ends as if it ran here."""
    from lusaug.cluster.coordinator import Options, cluster_repro
    from lusaug.core.errors import LusaugError

    opts = Options(
        targets=list(targets or []), scheduler=scheduler, workers=workers, repo=repo,
        gpu_stages=tuple(gpu), pull=pull, sync_s=sync_s, keep_worktrees=keep_worktrees,
        dashboard=dashboard,
    )  # fmt: skip
    try:
        summary = cluster_repro(root, opts)
    except LusaugError as err:
        typer.echo(f"lusaug cluster repro: {err}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    counts = ", ".join(f"{n} {s}" for s, n in sorted(summary.counts().items()))
    typer.echo(f"done in {summary.seconds:.0f} s: {counts or 'nothing to run'}")
