"""``lusaug repro [DVC REPRO ARGS]`` and ``lusaug plots-template``.

Library imports are deferred so ``lusaug --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command(
        "repro",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        options_metavar="[DVC REPRO ARGS]...",
    )(repro)
    app.command("plots-template")(plots_template)


def repro(ctx: typer.Context) -> None:
    """dvc repro (any of its arguments: targets, -s, -f, --keep-going ...) that keeps the
    previous outputs when it fails.

    DVC removes a stage's outputs before it runs the stage's command. When dvc repro fails or is
    interrupted (Ctrl-C), every stage that did not finish gets its previous outputs back: cached
    ones from the DVC cache (dvc checkout of its dvc.lock entry), git-tracked ones (metrics,
    tables) from a copy taken before the run. Stages that finished keep their new outputs;
    persist outputs (train's run folders, the base model) keep what the run left, so the next
    run resumes. One line says what came back; the exit code is dvc's. Run from the
    repository root.
    """
    from lusaug.workspace.repro import repro as run_repro

    code = run_repro(Path.cwd(), list(ctx.args), echo=lambda line: typer.echo(line, err=True))
    raise typer.Exit(code)


def plots_template(
    repo: Path = typer.Option(Path("."), "--repo", help="Repository root."),
) -> None:
    """Write .dvc/plots_offline.html, the page `dvc plots show` fills (Vega, Vega-Lite and
    vega-embed inlined from vl-convert-python: plots render with no network). Run it after
    vl-convert-python changes; .dvc/config points DVC at the file."""
    from lusaug.workspace.plots import bundle_versions, write_template

    path = write_template(repo)
    typer.echo(f"wrote {path} ({bundle_versions()})")
