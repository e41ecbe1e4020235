"""The study write-up (``docs/results-<profile>.md``) from a finished cross-validated run's outputs.

Everything comes from files the pipeline already wrote (metrics/, metrics/fold-<k>/, reports/,
params/tuned/, models/registered.json, params.yaml, plots/) plus, optionally, the per-stage
cost records of ``$LUSAUG_STAGE_COSTS`` and a hand-written conclusion. Nothing is recomputed
except the generator targets (comparisons of numbers the filter wrote), so the write-up shows
the numbers ``dvc metrics show`` shows. Figures are copied (and shrunk when large) next to the
write-up, because plots/ is DVC-cached and not in git.

Only ``metrics/test.json`` and ``params.yaml`` are required; every other missing input turns its
section into a sentence naming what is missing. One module per section:

- :mod:`.outputs` reads the run; :mod:`.figures` copies figures;
- :mod:`.header`, :mod:`.split`, :mod:`.table3` (+ :mod:`.reference`), :mod:`.patients`,
  :mod:`.decision`, :mod:`.generators` (+ :mod:`.targets`), :mod:`.tuning`, :mod:`.final`,
  :mod:`.costs`, :mod:`.conclusion` write the sections.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lusaug.core.markdown import Doc, render_markdown
from lusaug.core.utils import atomic_path
from lusaug.reporting.conclusion import conclusion_section
from lusaug.reporting.costs import costs_section, read_stage_costs
from lusaug.reporting.decision import decision_section
from lusaug.reporting.figures import FIGURE_MAX_BYTES, SHARED_MODE, Figures, copy_figure
from lusaug.reporting.final import final_section
from lusaug.reporting.header import header
from lusaug.reporting.outputs import ReportError, RunOutputs, planned_settings
from lusaug.reporting.patients import patients_section
from lusaug.reporting.reference import STUDY_REFERENCE, reference_section
from lusaug.reporting.split import split_section
from lusaug.reporting.synthetic import generators_section
from lusaug.reporting.table3 import evaluation_figures, table3_section
from lusaug.reporting.tuned_values import tuning_section

logger = logging.getLogger(__name__)

__all__ = [
    "FIGURE_MAX_BYTES",
    "STUDY_REFERENCE",
    "ReportError",
    "build_study_report",
    "copy_figure",
    "planned_settings",
    "read_stage_costs",
]


def study_doc(
    run: RunOutputs,
    figs: Figures,
    *,
    title: str,
    costs_log: Path | None,
    conclusion: Path | None,
    reference: dict[str, Any],
) -> Doc:
    """Every section of the write-up, in reading order."""
    doc = Doc()
    header(run, doc, title)
    split_section(run, doc)
    table3_section(run, doc)
    reference_section(run, doc, reference)
    evaluation_figures(run, doc, figs)
    patients_section(run, doc, figs)
    decision_section(run, doc)
    generators_section(run, doc, figs)
    tuning_section(run, doc, figs)
    final_section(run, doc)
    costs_section(doc, costs_log)
    conclusion_section(run, doc, conclusion)
    return doc


def build_study_report(
    repo: Path,
    out_md: Path,
    figures_dir: Path,
    *,
    title: str,
    costs_log: Path | None,
    conclusion: Path | None,
    reference: dict | None,
) -> Path:
    """Write the study write-up for the finished run in ``repo``; returns ``out_md``.

    Args:
        repo: repository holding the run's outputs (params.yaml, metrics/, reports/, plots/...).
        out_md: markdown file to write (atomically).
        figures_dir: folder the selected figures are copied to (linked relative to ``out_md``).
        title: first heading ("" = derived from the profile).
        costs_log: $LUSAUG_STAGE_COSTS JSONL of the run (None or absent = section says so).
        conclusion: markdown file included verbatim under "Conclusion" (None = none).
        reference: the study's numbers (None = ``STUDY_REFERENCE``).

    Raises:
        ReportError: params.yaml or metrics/test.json missing or unreadable, test.json from
            other params or from the hold-out pipeline, any other input unreadable, or a given
            conclusion file missing.
    """
    repo, out_md, figures_dir = Path(repo), Path(out_md), Path(figures_dir)
    if conclusion is not None and not Path(conclusion).is_file():
        raise ReportError(f"conclusion file {conclusion} not found")
    run = RunOutputs.load(repo)
    figs = Figures(repo, figures_dir)
    doc = study_doc(
        run,
        figs,
        title=title or f"Results of the `{run.params.base.profile}` profile run",
        costs_log=costs_log,
        conclusion=conclusion,
        reference=STUDY_REFERENCE if reference is None else reference,
    )
    text = render_markdown(doc, out_md).rstrip("\n") + "\n"
    with atomic_path(out_md) as tmp:
        tmp.write_text(text)
        tmp.chmod(SHARED_MODE)
    if figs.missing:
        logger.warning("report: %d figure(s) missing: %s", len(figs.missing), figs.missing)
    logger.info("report: wrote %s with %d figures in %s", out_md, len(figs.copied), figures_dir)
    return out_md
