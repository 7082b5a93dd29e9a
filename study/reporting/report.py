"""A study's report in `reports/<name>/`: report.md, report.html (self-contained: figures
embedded, opens offline), trials.csv, curves.csv and the figures (PNG and SVG); with an artifact
folder, also the report attached to the Optuna study for optuna-dashboard (study.reporting
.dashboard: the report as the study's note, the ranking and the comparison of all factors on the
study's page).

`write_report` first computes everything the report shows (`findings`: plain data from
study.stats), then draws the figures (`draw_figures`) and writes the blocks (`build_blocks`,
from study.reporting.sections). It uses the finished trials of any study, including one still
running or interrupted, and says how many; a study made before specs existed is read from its
trials, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import optuna
import pandas as pd

from study.design.cost import point_costs
from study.outcomes import COMPLETE, LISTED
from study.paths import named_folder, written_whole
from study.reporting import compare, dashboard, plots
from study.reporting.document import Block, fmt, to_html, to_markdown
from study.reporting.sections import (
    claim_table,
    epoch_blocks,
    level_table,
    method_lines,
    ranking_table,
    recommendations,
    setup_lines,
)
from study.stats import joint, stability
from study.stats.frames import StudyData, design_table, finished, read_study
from study.stats.ranking import PRACTICAL_EFFECT, Analysis, rank_trials


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
                    stability.epoch_ranking(trials, data.curves, spec), across)


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
        influence=(plots.plot_influence(ranking, analysis.noise, analysis.practical_effect, out)
                   if ranking["effect"].notna().any() else None),
        factor=[plots.plot_factor(trials, analysis.levels, f, spec, out) for f in factors],
        curves=[plots.plot_curves(found.data.curves, f, spec, out) for f in factors],
        epochs=plots.plot_epoch_ranking(found.over_epochs, out) if found.over_epochs else None,
        across=(plots.plot_cross_study(across, out)
                if across is not None and across.effects["effect"].notna().any() else None),
        interaction=[plots.plot_interaction(t, a, b, out)
                     for (a, b), t in found.interaction_tables.items()],
        time=plots.plot_time(trials, out))


def _images(*stems: str | None) -> list[Block]:
    return [("img", stem) for stem in stems if stem is not None]


def build_blocks(found: Findings, figures: Figures) -> list[Block]:
    spec, trials, analysis = found.data.spec, found.data.trials, found.analysis
    budget = spec.setup.get("budget") or "?"
    order = [point.id for point in spec.points()] if spec.plan.fixed else None
    ranking, design = analysis.ranking, design_table(trials, order)
    costs = point_costs(spec)
    design.insert(1, "cost (x baseline)", design["design_point"].map(
        lambda p: fmt(costs.get(p), ".2f")))
    blocks: list[Block] = []
    if budget != "full":
        blocks.append(("note", f"**Budget `{budget}`**: a reduced study (training subset, fewer "
                       "epochs, fewer seeds), a preview, not the full result. With so few "
                       "optimizer steps, large batches and small learning rates are penalised far "
                       "more than in the full study. Run with `budget=full` for the real answer."))
    done = finished(trials)
    if not done.empty and (done["outcome"] != COMPLETE).all():
        blocks.append(("note", f"**Every one of the {len(done)} finished trials diverged**: no "
                       "accuracy can be compared, only divergence rates. Check the design's "
                       "learning rates and the baseline before running more seeds."))
    if not spec.recorded:
        blocks.append(("note", "This study was made by an older version of this tool and records "
                       "no study spec: its factors, levels and baseline are read from its trials."))
    if spec.plan.sampled and spec.sampler == "tpe":
        blocks.append(("note", "TPE concentrates its trials where accuracy was high, so the "
                       "factors' marginal means are confounded with each other: read the ranking "
                       "as a hint and check it with `sweep.sampler=random` or `qmc`."))
    if figures.overview:
        blocks += [("h2", "At a glance"),
                   ("p", "Every factor on one accuracy scale, its levels in the design's order: "
                    "each dot is one seed, the diamonds are level means with 95% intervals, the "
                    "green column is the baseline level, the red band the baseline's mean ± 2 "
                    "seed std (what noise alone moves a level by), crosses on the bottom edge "
                    "are diverged trials."), *_images(figures.overview)]
    blocks += [("h2", "Setup"), ("list", setup_lines(spec, trials)), ("h2", "Ranking"),
               ("list", method_lines(analysis, spec))]
    if ranking.empty:
        blocks.append(("p", "No factor is varied in this study."))
    else:
        blocks += [("table", ranking_table(ranking)), *_images(figures.influence),
                   ("h2", "The textbook's claim vs this study"),
                   ("p", "The claim: the number of kernels, the activation type and the "
                    "preprocessing matter most; dropout, pooling, batch size and learning rate "
                    "less. A factor agrees (or disagrees) only when its rank interval lies wholly "
                    "inside or wholly outside this study's top three and its verdict supports it "
                    "(influential to be among the top three; decided, whatever it is, to be "
                    "outside them); otherwise this study cannot tell yet. Factors the textbook "
                    "does not rank are marked not named."),
                   ("table", claim_table(ranking)),
                   ("h2", "What to tune first"), ("list", recommendations(ranking)),
                   ("h2", "Accuracy and divergence by level"), ("table", level_table(analysis)),
                   *_images(*figures.factor),
                   ("h2", "Learning curves"), *_images(*figures.curves),
                   ("h2", "Ranking over training time"),
                   *epoch_blocks(found.over_epochs, figures.epochs)]
    if found.across is not None:
        blocks += [("h2", "Across budgets"),
                   *compare.cross_study_blocks(found.across, figures.across)]
    pairs, importances = found.interactions, found.importances
    if not pairs.empty:
        shown = pairs.assign(**{c: pairs[c].map(lambda v: fmt(v, ".2g"))
                                for c in ("interaction_p", "interaction_p_holm",
                                          "interaction_eta_squared")})
        blocks += [("h2", "Interactions"), ("table", shown), *_images(*figures.interaction)]
    if not importances.empty:
        blocks += [("h2", "Optuna importance evaluators"),
                   ("p", "Shares of importance, mean and std over bootstrap resamples of the "
                    "trials. They sum to one even for pure noise, so each is shown beside the "
                    "share the same evaluator gives on the same trials with their accuracies "
                    "shuffled: a share near its shuffled reference is noise. PED-ANOVA runs only "
                    f"when at least {joint.PED_ANOVA_MIN_TOP} trials lie in its top "
                    f"{joint.PED_ANOVA_QUANTILE:.0%}."),
                   ("table", importances.assign(**{c: importances[c].map(fmt) for c in
                                                   ("mean", "std", "shuffled_mean")}))]
    unusable = trials[trials["outcome"].isin(LISTED)]
    if figures.time:
        blocks += [("h2", "Accuracy vs training time"), *_images(figures.time)]
    blocks += [("h2", "Design"),
               ("p", "Cost: the point's multiply-accumulates per image times its epochs, "
                "relative to the baseline (the sweep starts the most expensive points first)."),
               ("table", design.assign(
                   mean=design["mean"].map(fmt), std=design["std"].map(fmt))),
               ("h2", "Diverged and failed trials"),
               ("p", "Rule: a diverged trial (loss NaN/inf) is a result of its settings: it "
                "counts in its level's divergence rate, which is tested on its own, and not in "
                "accuracy (it records chance accuracy, 0.1). A failed trial (an exception, or its "
                "worker was killed or lost) and an interrupted one (a signal stopped the run) "
                "have no result and are left out of the analysis, listed here; a rerun trains "
                "them again.")]
    if unusable.empty:
        blocks.append(("p", "None."))
    else:
        blocks.append(("table", unusable[["number", "outcome", "design_point", "seed",
                                          "reason"]].fillna("")))
    blocks.append(("p", "All trials: `trials.csv`; per-epoch curves: `curves.csv`."))
    return blocks


def write_report(study: optuna.Study, storage: optuna.storages.BaseStorage, reports_root: Path,
                 artifact_dir: Path | None = None, practical_effect: float = PRACTICAL_EFFECT,
                 data: StudyData | None = None) -> Report:
    """Write the report files of `study` (in `storage`), from `data` when the caller has
    already read it; with artifact_dir, also attach the report to the study for
    optuna-dashboard."""
    out = named_folder(reports_root, study.study_name)
    found = findings(study, storage, practical_effect, data)
    title = f"Sensitivity study: {study.study_name}"
    with written_whole(out) as draft:  # the old report stays whole until the new one is
        found.data.trials.to_csv(draft / "trials.csv", index=False)
        found.data.curves.to_csv(draft / "curves.csv", index=False)
        figures = draw_figures(found, draft)
        blocks = build_blocks(found, figures)
        markdown = to_markdown(title, blocks)
        (draft / "report.md").write_text(markdown)
        (draft / "report.html").write_text(to_html(title, markdown, draft, figures.stems()))
    if artifact_dir is not None:
        links = dashboard.upload_figures(study, storage, figures.stems(), out, artifact_dir)
        note = to_markdown(title, [("note", dashboard.importance_caveat(found.data.spec)),
                                   *blocks], links.__getitem__)
        dashboard.publish(study, note, dashboard.study_page_figures(
            found.data.trials, found.analysis, found.data.spec))
    return Report(out, found.analysis)
