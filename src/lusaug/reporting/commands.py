"""``lusaug report``: the study write-up from a finished ``dvc repro`` run."""

from __future__ import annotations

from pathlib import Path

import typer

# A run's write-up goes beside its other reports (git-ignored: a run output), never over the
# committed docs/results-pocus.md: that one is written on purpose, with --out.
DEFAULT_OUT = "reports/study.md"
DEFAULT_FIGURES = "reports/study-figures"


def register(app: typer.Typer) -> None:
    app.command("report")(report)


def report(
    repo: Path = typer.Option(
        Path("."), "--repo", help="Repository holding the finished run's outputs."
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        help=(
            f"Markdown to write (default: REPO/{DEFAULT_OUT}; the committed write-up "
            "docs/results-pocus.md only when named here)."
        ),
    ),
    figures: Path | None = typer.Option(
        None, "--figures", help=f"Folder for the copied figures (default: REPO/{DEFAULT_FIGURES})."
    ),
    title: str = typer.Option("", "--title", help="First heading (default: from base.profile)."),
    costs: Path | None = typer.Option(
        None,
        "--costs",
        help="$LUSAUG_STAGE_COSTS log of the run (default: REPO/logs/stage_costs.jsonl).",
    ),
    conclusion: Path | None = typer.Option(
        None, "--conclusion", help="Markdown file with the written conclusion (included verbatim)."
    ),
) -> None:
    """Write the study write-up of a finished cross-validated run.

    Sections: the folds and their validation, Table 3 on pooled out-of-fold predictions (with
    patient-bootstrap intervals, paired differences, seed spread and the study's numbers), recall
    per rare-class patient, the decision per strategy and family with the minimum detectable
    difference, the generators per fold (fidelity beside real references, targets met, figures),
    tuning per fold, the final model (registry, ONNX parity, int8), costs and the conclusion.

    Reads REPO's params.yaml, metrics/ (and metrics/fold-<k>/), reports/, params/tuned/,
    models/registered.json and plots/. Only params.yaml and metrics/test.json are required; the
    text names any other missing input. Exits 2 on a missing or unreadable required input.
    """
    import logging

    from lusaug.reporting.study import ReportError, build_study_report

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    out = out if out is not None else repo / DEFAULT_OUT
    figures = figures if figures is not None else repo / DEFAULT_FIGURES
    costs = costs if costs is not None else repo / "logs" / "stage_costs.jsonl"
    try:
        path = build_study_report(
            repo,
            out,
            figures,
            title=title,
            costs_log=costs,
            conclusion=conclusion,
            reference=None,
        )
    except ReportError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    n_figures = sum(1 for p in figures.rglob("*.png"))
    typer.echo(f"wrote {path} ({n_figures} figures in {figures})")
