"""``lusaug phantom`` and ``lusaug import`` (the two ways to fill data/raw), ``lusaug folds``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("phantom")(phantom)
    app.command("import")(import_)
    app.command("folds")(folds)


def folds(
    frames_csv: Path = typer.Option(Path("data/frames.csv"), "--frames", help="The manifest."),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="Parameter file."),
    write: bool = typer.Option(
        False, "--write", help="Set split.folds (and split.items) in the params file."
    ),
) -> None:
    """How many cross-validation folds the data gives (split.scheme cv), and set split.folds.

    k = the independent patient groups of the rarest class (patients sharing a frame count as
    one), at most split.max_folds. DVC runs one item of every per-fold stage per fold, so
    split.folds must be [0, ..., k-1] (the split stage refuses a mismatch) and split.items the
    same plus final (the final model's split, one more item of encoder ... tune).
    """
    from lusaug.core.config import FINAL_FOLD, ConfigError, load_params
    from lusaug.core.profiles import set_params
    from lusaug.data.linking import LinkError, link_patients
    from lusaug.data.manifest import read_manifest
    from lusaug.data.split import SplitError, count_folds

    try:
        params = load_params(params_file)
        manifest = read_manifest(frames_csv)
        v = params.validate
        links = link_patients(
            manifest, frames_csv.resolve().parent, v.phash_size, v.phash_max_distance
        )
        k, rare, groups = count_folds(manifest, params.base.classes, params.split.max_folds, links)
        wanted = [0] if params.split.scheme == "holdout" else list(range(k))
        if write:
            set_params(params_file, {"split.folds": wanted, "split.items": [*wanted, FINAL_FOLD]})
    except (ConfigError, SplitError, LinkError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"{rare}: {groups} independent patient group(s); split.max_folds {params.split.max_folds}"
        f" -> split.folds {wanted}" + (f" (written to {params_file})" if write else "")
    )


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
    from lusaug.core.config import ConfigError, load_params
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
    from lusaug.core.config import ConfigError, load_params
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
