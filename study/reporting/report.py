"""A study's report in `reports/<name>/`: report.md, report.html (self-contained: figures
embedded, opens offline), trials.csv, curves.csv and the figures (PNG and SVG); with an artifact
folder, also the report attached to the Optuna study for optuna-dashboard (study.reporting
.dashboard: the report as the study's note, the ranking and the comparison of all factors on the
study's page).

`write_report` computes everything the report shows (`findings`: plain data from study.stats),
draws the figures (`draw_figures`), then has the templates say it (`report_context`: what
templates/report.md.j2 reads, filled from study.reporting.sections). It uses the finished trials
of any study, including one still running or interrupted, and says how many. How to read a
report: docs/report.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from study.design.cost import point_costs
from study.errors import WriteFailed, one_line
from study.outcomes import COMPLETE, LISTED
from study.paths import named_folder, written_whole
from study.reporting import compare, dashboard, plots
from study.reporting.document import fmt, percent, render, to_html
from study.reporting.sections import (
    claim_groups,
    claim_table,
    epoch_table,
    gap_table,
    level_table,
    look_table,
    ranking_table,
    setup_facts,
    verdict_groups,
)
from study.stats import joint, stability
from study.stats.advice import PLANNING_BOUND, POWER
from study.stats.frames import StudyData, design_table, finished, read_study
from study.stats.gaps import GAP_COLUMNS, GAP_FLAG, GAP_Z, generalisation_gaps
from study.stats.ranking import PRACTICAL_EFFECT, Analysis, rank_trials
from study.stats.variance import PRIOR_DF_CAP

REPORT = "report.md.j2"  # the template that says a study's report


@dataclass
class Findings:
    """Everything a study's report shows, computed before anything is drawn or written."""

    data: StudyData
    analysis: Analysis
    interactions: pd.DataFrame  # per pair of jointly varied factors (study.stats.joint)
    interaction_tables: dict[tuple[str, str], pd.DataFrame]  # each pair's mean accuracies
    importances: pd.DataFrame  # Optuna's evaluators beside their shuffled references
    over_epochs: stability.EpochRanking | None
    across: stability.CrossStudy | None  # the same design at other budgets in the storage
    # per level: training-sample vs test accuracy (study.stats.gaps); none recorded by default
    gaps: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GAP_COLUMNS))


@dataclass
class Figures:
    """The stems of the figures drawn (<stem>.png and .svg in the report's folder)."""

    overview: str | None = None
    influence: str | None = None
    factor: list[str] = field(default_factory=list)
    curves: list[str] = field(default_factory=list)
    epochs: str | None = None
    across: str | None = None
    interaction: list[str] = field(default_factory=list)
    time: str | None = None

    def stems(self) -> list[str]:
        return [stem for stem in (self.overview, self.influence, *self.factor, *self.curves,
                                  self.epochs, self.across, *self.interaction, self.time)
                if stem is not None]


@dataclass
class Report:
    folder: Path
    analysis: Analysis


def findings(study: optuna.Study, storage: optuna.storages.BaseStorage,
             practical_effect: float = PRACTICAL_EFFECT, data: StudyData | None = None
             ) -> Findings:
    """What the report of `study` shows; from `data` when the caller has already read it."""
    data = data or read_study(study)
    spec, trials = data.spec, data.trials
    analysis = rank_trials(trials, spec, practical_effect)
    pairs, tables = joint.interactions(trials, spec)
    importances = (joint.optuna_importances(study, spec) if not spec.plan.on_slices
                   else pd.DataFrame(columns=joint.IMPORTANCE_COLUMNS))  # not for OFAT's L
    related = compare.related_studies(storage, data.name, spec)
    across = (stability.compare_rankings(
        [*compare.rankings(related, practical_effect),
         stability.study_ranking(data.name, analysis)], data.name) if related else None)
    return Findings(data, analysis, pairs, tables, importances,
                    stability.epoch_ranking(trials, data.curves, spec), across,
                    generalisation_gaps(trials, spec))


def draw_figures(found: Findings, out: Path) -> Figures:
    """The figures, for the factors with a finished trial (in the design's order); none
    before any trial finishes."""
    spec, trials, analysis = found.data.spec, found.data.trials, found.analysis
    ranking = analysis.ranking
    if finished(trials).empty:
        return Figures()
    with_data = set(ranking.loc[ranking["verdict"] != "no data", "factor"])
    factors = [f for f in spec.factors if f in with_data]
    has_levels = [f for f in factors if f in set(analysis.levels["factor"])]
    across = found.across
    return Figures(
        overview=(plots.plot_overview(trials, analysis.levels, analysis.noise, has_levels, spec,
                                      out) if has_levels else None),
        influence=(plots.plot_influence(ranking, analysis.noise, analysis.practical_effect,
                                        1 - analysis.model.alpha, out)
                   if ranking["effect"].notna().any() else None),
        factor=[plots.plot_factor(trials, analysis.levels, f, spec, out) for f in factors],
        curves=[plots.plot_curves(found.data.curves, f, spec, out) for f in factors],
        epochs=plots.plot_epoch_ranking(found.over_epochs, out) if found.over_epochs else None,
        across=(plots.plot_cross_study(across, out)
                if across is not None and across.effects["effect"].notna().any() else None),
        interaction=[plots.plot_interaction(t, a, b, out)
                     for (a, b), t in found.interaction_tables.items()],
        time=plots.plot_time(trials, out))


def report_context(found: Findings, figures: Figures) -> dict[str, Any]:
    """What templates/report.md.j2 reads, computed once per report: the report's file and the
    dashboard's note say the same."""
    spec, trials, analysis = found.data.spec, found.data.trials, found.analysis
    ranking = analysis.ranking
    order = [point.id for point in spec.points()] if spec.plan.fixed else None
    design, costs = design_table(trials, order), point_costs(spec)
    design.insert(1, "cost (x baseline)", design["design_point"].map(
        lambda p: fmt(costs.get(p), ".2f")))
    done, unusable = finished(trials), trials[trials["outcome"].isin(LISTED)]
    claims = claim_table(ranking)
    pairs, importances, across = found.interactions, found.importances, found.across
    return dict(
        title=f"Sensitivity study: {found.data.name}", on_slices=spec.plan.on_slices,
        budget=spec.setup.get("budget") or "?",
        all_diverged=len(done) if not done.empty and (done["outcome"] != COMPLETE).all() else 0,
        tpe=spec.plan.sampled and spec.sampler == "tpe", figures=figures,
        ranking=None if ranking.empty else ranking_table(ranking, analysis.model.alpha),
        groups=verdict_groups(ranking), claim=claim_groups(claims), claims=claims,
        threshold=analysis.practical_effect, levels=level_table(analysis),
        over_epochs=found.over_epochs,
        epochs=epoch_table(found.over_epochs) if found.over_epochs else None,
        stable_rho=stability.STABLE_RHO, min_factors=stability.MIN_FACTORS,
        across=across is not None, **(compare.across_context(across, figures.across)
                                      if across else {}),
        interactions=None if pairs.empty else pairs.assign(**{
            c: pairs[c].map(lambda v: fmt(v, ".2g"))
            for c in ("interaction_p", "interaction_p_holm", "interaction_eta_squared")}),
        importances=None if importances.empty else importances.assign(**{
            c: importances[c].map(fmt) for c in ("mean", "std", "shuffled_mean")}),
        ped_anova_min_top=joint.PED_ANOVA_MIN_TOP, ped_anova_quantile=joint.PED_ANOVA_QUANTILE,
        design=design.assign(mean=design["mean"].map(fmt), std=design["std"].map(fmt)),
        unusable=None if unusable.empty else unusable[
            ["number", "outcome", "design_point", "seed", "reason"]].fillna(""),
        gaps=None if found.gaps.empty else gap_table(found.gaps), gap_flag=GAP_FLAG, gap_z=GAP_Z,
        flagged=found.gaps[found.gaps["flagged"]].to_dict("records"),
        looks=look_table(spec), looks_planned=spec.looks,
        setup=setup_facts(spec, trials), noise=analysis.noise, pooled=analysis.pooled,
        alpha=percent(analysis.model.alpha),
        effect_confidence=percent(1 - analysis.model.alpha),
        equivalence_confidence=percent(1 - 2 * analysis.model.alpha), power=POWER,
        planning_bound=PLANNING_BOUND, prior_df_cap=PRIOR_DF_CAP)


def report_markdown(found: Findings, figures: Figures,
                    image_link: Callable[[str], str] = lambda stem: f"{stem}.png",
                    dashboard: bool = False) -> str:
    """The report as Markdown; for the dashboard's note (with the figures at the artifacts'
    URLs), a first line on the dashboard's own importance panel."""
    return render(REPORT, image_link, dashboard=dashboard, **report_context(found, figures))


def write_report(study: optuna.Study, storage: optuna.storages.BaseStorage, reports_root: Path,
                 artifact_dir: Path | None = None, practical_effect: float = PRACTICAL_EFFECT,
                 data: StudyData | None = None) -> Report:
    """Write the report files of `study` (in `storage`), from `data` when the caller has
    already read it; with artifact_dir, also attach the report to the study for
    optuna-dashboard."""
    out = named_folder(reports_root, study.study_name)
    found = findings(study, storage, practical_effect, data)
    with written_whole(out) as draft:  # the old report stays whole until the new one is
        found.data.trials.to_csv(draft / "trials.csv", index=False)
        found.data.curves.to_csv(draft / "curves.csv", index=False)
        figures = draw_figures(found, draft)
        context = report_context(found, figures)
        markdown = render(REPORT, dashboard=False, **context)
        (draft / "report.md").write_text(markdown)
        (draft / "report.html").write_text(to_html(context["title"], markdown, draft,
                                                   figures.stems()))
    if artifact_dir is not None:
        page = dashboard.study_page_figures(found.data.trials, found.analysis, found.data.spec)
        try:
            links = dashboard.upload_figures(study, storage, figures.stems(), out, artifact_dir)
        except OSError as error:  # a full or read-only artifact_dir: the note says so, not stale
            problem = f"artifact_dir {artifact_dir}: {error.strerror or one_line(error)}"
            dashboard.publish(study, dashboard.unattached_note(out / "report.md", problem), page)
            raise WriteFailed(f"the report is written to {out}, but its figures could not be "
                              f"stored for the dashboard ({problem}); the dashboard's note says "
                              "so; free space there and rerun: python -m study.report "
                              f"name={study.study_name}") from None
        note = render(REPORT, links.__getitem__, dashboard=True, **context)
        dashboard.publish(study, note, page)
    return Report(out, found.analysis)
