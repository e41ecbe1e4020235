"""``lusaug phantom`` and ``lusaug import``: the two ways to fill data/raw."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("phantom")(phantom)
    app.command("import")(import_)


def phantom(
    out: Path = typer.Option(Path("data/raw"), "--out", help="Folder to write (POCUS layout)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
    seed: int | None = typer.Option(None, help="Override phantom.seed."),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty output folder."),
    grid: Path | None = typer.Option(
        None, "--grid", help="Also save a PNG grid of phantom frames per class (e.g. for docs)."
    ),
) -> None:
    """Write the deterministic lung-ultrasound phantom (clips + metadata.csv) to OUT."""
    from lusaug.config import ConfigError, load_params
    from lusaug.data.phantom import phantom_grid, write_phantom

    try:
        params = load_params(params_file)
        summary = write_phantom(out, params, seed=seed, force=force)
    except (ConfigError, FileExistsError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(summary)
    if grid is not None:
        typer.echo(f"grid: {phantom_grid(params, grid, seed=seed)}")


def import_(
    path: Path = typer.Argument(..., help="A POCUS-style folder (pocus_videos/, pocus_images/)."),
    out: Path = typer.Option(Path("data/raw"), "--out", help="Destination (data/raw)."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
    dvc_commit: bool = typer.Option(
        True, "--dvc-commit/--no-dvc-commit", help="Refresh data.dvc after importing."
    ),
    force: bool = typer.Option(False, "--force", help="Replace a non-empty data/raw."),
) -> None:
    """Copy a POCUS-style folder into data/raw with normalised metadata, then `dvc commit data.dvc`.

    Class from the file-name prefix (import.prefixes), patient/probe/source/license from the
    metadata CSV when it lists the file (else one patient per file), label_uncertain/ left out
    unless import.include_uncertain. Afterwards `dvc repro` rebuilds the frames from it.
    """
    from lusaug.config import ConfigError, load_params
    from lusaug.data.dvc_data import DvcError
    from lusaug.data.ingest import IngestError, format_summary, import_folder

    try:
        params = load_params(params_file)
        summary = import_folder(path, out, params, force=force, dvc_commit=dvc_commit)
    except (IngestError, ConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except DvcError as exc:
        typer.echo(f"error: {out} was imported but data.dvc was not refreshed: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_summary(summary))
