"""The study as optuna-dashboard shows it: the project's ranking and the comparison of all
factors as plotly figures on the study's page, and the report as its note (with a first line on
the dashboard's own importance panel) with every figure shown from the artifacts it serves.

study.reporting.report calls these with what it computed (ranking, trials, intervals, noise);
the figure functions only draw from those. Rewriting a report replaces the two figures (fixed
graph object ids) and the note; a figure is uploaded again only when its content changed.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import optuna
import optuna_dashboard
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from study.design.spec import StudySpec
from study.outcomes import COMPLETE
from study.reporting.document import percent
from study.reporting.plots import VERDICT_COLOURS, labelled_slice
from study.stats.fit import Noise
from study.stats.frames import ACCURACY, finished
from study.stats.ranking import Analysis

RANKING_ID, COMPARISON_ID = "ranking", "comparison"  # graph object ids on the study page


def upload_figures(study: optuna.Study, storage: optuna.storages.BaseStorage, stems: list[str],
                   out: Path, artifact_dir: Path) -> dict[str, str]:
    """Attach each figure `out/<stem>.png` to the study as an artifact (reusing one with the same
    content); return the URL the dashboard serves each at. Artifacts that another machine stored
    in its own artifact_dir are not readable here and count as absent."""
    artifact_dir.mkdir(parents=True, exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(artifact_dir))
    existing: dict[str, dict[bytes, str]] = defaultdict(dict)
    for meta in optuna.artifacts.get_all_artifact_meta(study):
        try:
            with store.open_reader(meta.artifact_id) as reader:
                existing[meta.filename][reader.read()] = meta.artifact_id
        except optuna.artifacts.exceptions.ArtifactNotFound:
            continue
    study_id = storage.get_study_id_from_name(study.study_name)  # the dashboard's URLs use it
    urls = {}
    for stem in stems:
        path = out / f"{stem}.png"
        artifact_id = existing[path.name].get(path.read_bytes()) or \
            optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path),
                                             study_or_trial=study, mimetype="image/png")
        urls[stem] = f"/artifacts/{study_id}/{artifact_id}"
    return urls


def publish(study: optuna.Study, note: str, figures: dict[str, go.Figure]) -> None:
    """The note and the figures (graph object id -> figure) on the study's page."""
    optuna_dashboard.save_note(study, note)
    for graph_id, figure in figures.items():
        optuna_dashboard.save_plotly_graph_object(study, figure, graph_object_id=graph_id)


def unattached_note(report: Path, problem: str) -> str:
    """The note that stands for a report whose figures could not be attached to the study."""
    return (f"**This study's latest report could not be attached here** ({problem}): its "
            f"figures could not be stored. The report itself is written: `{report}`.\n")


def study_page_figures(trials: pd.DataFrame, analysis: Analysis, spec: StudySpec
                       ) -> dict[str, go.Figure]:
    """The ranking of the factors with an effect and the comparison of the factors with data
    (in design order), by graph object id; each only where it has something to draw (none
    before any trial has finished, no comparison while only the baseline has)."""
    ranking = analysis.ranking
    if finished(trials).empty or ranking.empty:
        return {}
    figures = {}
    if ranking["effect"].notna().any():
        figures[RANKING_ID] = ranking_figure(ranking, analysis.noise, 1 - analysis.model.alpha)
    shown = set(ranking.loc[ranking["verdict"] != "no data", "factor"])
    if shown:
        figures[COMPARISON_ID] = comparison_figure(
            trials, analysis.levels, spec, [f for f in spec.factors if f in shown],
            analysis.noise)
    return figures


def ranking_figure(ranking: pd.DataFrame, noise: Noise, confidence: float) -> go.Figure:
    """Each factor's effect (largest difference from the baseline, selection-corrected) with its
    simultaneous interval at `confidence`, coloured by verdict, rank 1 on top, with the
    seed-to-seed std marked; factors without an effect are left out."""
    ranking = ranking[ranking["effect"].notna()]
    fig = go.Figure()
    for verdict, colour in VERDICT_COLOURS.items():
        rows = ranking[ranking["verdict"] == verdict]
        if not rows.empty:
            fig.add_bar(x=rows["effect"], y=rows["factor"], orientation="h", name=verdict,
                        marker_color=colour, customdata=rows[["rank", "accuracy_p_holm"]],
                        hovertemplate="%{y}: effect %{x:.3f}, rank %{customdata[0]}, "
                                      "accuracy p (Holm) %{customdata[1]:.2g}<extra></extra>")
    # each interval as a segment from its low to its high end, not as error bars around the
    # effect: the interval need not be centred on the estimate
    for i, row in enumerate(ranking.itertuples()):
        fig.add_scatter(x=[row.effect_ci_low, row.effect_ci_high], y=[row.factor] * 2,
                        mode="lines", line={"color": "black", "width": 2},
                        name=f"{percent(confidence)} CI",
                        legendgroup="ci", showlegend=i == 0, hoverinfo="skip")
    for key, dash, where, corner in (("baseline_std", "dash", "at baseline", "top right"),
                                     ("pooled_std", "dot", "pooled", "bottom right")):
        std = getattr(noise, key)
        if pd.notna(std):
            fig.add_vline(x=std, line={"color": "firebrick", "dash": dash},
                          annotation_text=f"seed std {where} ({std:.3f})",
                          annotation_position=corner, annotation_font_size=10)
    fig.update_layout(title="Factor influence (this project's ranking)", barmode="overlay",
                      xaxis_title=f"effect on test accuracy ({percent(confidence)} CI)",
                      height=140 + 40 * len(ranking),
                      yaxis={"categoryorder": "array",
                             "categoryarray": list(ranking["factor"])[::-1]})
    return fig


def comparison_figure(trials: pd.DataFrame, intervals: pd.DataFrame, spec: StudySpec,
                      factors: list[str], noise: Noise) -> go.Figure:
    """One panel per factor on a shared accuracy axis, levels in design order: every trial
    as a dot, each level's mean with its 95% CI, the baseline in green, diverged or stalled
    trials as red crosses, and the seed-noise band (baseline mean +- 2 std) across all
    panels."""
    done = finished(trials)
    # one row: the dashboard draws a graph object at a fixed height, in half the page's width
    fig = make_subplots(rows=1, cols=len(factors), shared_yaxes=True, subplot_titles=factors,
                        horizontal_spacing=0.01)
    legend = set()

    def shown(name: str) -> bool:
        first = name not in legend
        legend.add(name)
        return first

    for col, factor in enumerate(factors, start=1):
        part, order = labelled_slice(done, factor, spec)
        base = str(spec.factors[factor].baseline) if spec.plan.on_slices else None
        kept = part[part["outcome"] == COMPLETE]
        for name, points, colour in (("trial", kept[kept["level"] != base], "grey"),
                                     ("baseline trial", kept[kept["level"] == base], "green")):
            fig.add_scatter(x=points["level"], y=points[ACCURACY], mode="markers", name=name,
                            marker={"color": colour, "size": 6, "opacity": 0.6},
                            legendgroup=name, showlegend=shown(name), row=1, col=col)
        diverged = part[part["outcome"] != COMPLETE]
        fig.add_scatter(x=diverged["level"], y=diverged[ACCURACY], mode="markers",
                        name="diverged or stalled (at chance)", legendgroup="diverged",
                        marker={"color": "red", "symbol": "x", "size": 9},
                        showlegend=not diverged.empty and shown("diverged"), row=1,
                        col=col)
        ci = intervals[intervals["factor"] == factor].assign(
            level=lambda d: d["level"].astype(str))
        fig.add_scatter(x=ci["level"], y=ci["mean"], mode="markers", name="mean, 95% CI",
                        marker={"color": "#1f77b4", "symbol": "diamond", "size": 10},
                        error_y={"type": "data", "array": ci["ci_high"] - ci["mean"],
                                 "arrayminus": ci["mean"] - ci["ci_low"]},
                        legendgroup="mean", showlegend=shown("mean"), row=1, col=col)
        fig.update_xaxes(type="category", categoryorder="array", categoryarray=order,
                         tickangle=-90, dtick=1, tickfont_size=10, row=1, col=col)
    band = noise.band()
    if spec.plan.on_slices and band:
        fig.add_hrect(y0=band[0], y1=band[1], fillcolor="green", opacity=0.08,
                      line_width=0, row="all", col="all")
    fig.update_yaxes(title_text="test accuracy", row=1, col=1)
    fig.update_annotations(font_size=11)  # the panel titles
    fig.update_layout(title="Test accuracy by level (band: baseline mean +- 2 seed std)",
                      height=450, legend={"orientation": "h", "y": -0.3})
    return fig
