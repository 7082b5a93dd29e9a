"""The figures and the note the dashboard shows, from the compute layer's tables (no server)."""

import pandas as pd

from study.reporting.dashboard import comparison_figure, ranking_figure
from study.reporting.report import Figures, Findings, report_markdown
from study.stats.frames import ACCURACY, StudyData
from study.stats.ranking import rank_trials
from study.stats.synthetic import GRID, OFAT, grid_table, ofat_table


def _traces(figure, name: str) -> list:
    return [t for t in figure.data if t.name == name]


def test_the_comparison_shows_every_factor_on_one_axis_in_design_order() -> None:
    trials = ofat_table({"lr": -0.05}, noise=0.005, seeds=3)
    diverged = (trials["design_point"] == "lr=0.1") & (trials["seed"] == 0)
    trials.loc[diverged, ["outcome", ACCURACY]] = ["diverged", 0.1]
    factors = list(OFAT.factors)
    analysis = rank_trials(trials, OFAT)
    figure = comparison_figure(trials, analysis.levels, OFAT, factors, analysis.noise)
    panels = [a.text for a in figure.layout.annotations]
    assert panels == factors  # one panel per factor, in the design's order
    y_axes = [figure.layout[name] for name in figure.layout if name.startswith("yaxis")]
    assert len({axis.matches for axis in y_axes} - {None}) == 1  # one accuracy axis for all
    assert list(figure.layout.xaxis.categoryarray) == ["16", "32", "64", "128"]
    assert list(figure.layout.xaxis2.categoryarray) == ["relu", "tanh", "gelu"]  # not a-z
    [cross] = [t for t in _traces(figure, "diverged or stalled (at chance)") if len(t.x)]
    assert list(cross.x) == ["0.1"] and list(cross.y) == [0.1]
    baseline = _traces(figure, "baseline trial")
    assert {x for t in baseline for x in t.x} == {"32", "relu", "max", "0.5", "standardize",
                                                  "128", "0.05"}
    bands = {(shape.y0, shape.y1) for shape in figure.layout.shapes}  # one in every panel
    [(low, high)] = bands  # baseline mean +- 2 seed std, the same everywhere
    assert len(figure.layout.shapes) >= len(factors) and low < 0.7 < high and high - low < 0.1


def test_the_ranking_figure_draws_each_effect_with_its_interval_in_rank_order() -> None:
    trials = ofat_table({"activation": -0.03}, noise=0.005, seeds=3)
    analysis = rank_trials(trials, OFAT)
    ranking = analysis.ranking
    figure = ranking_figure(ranking, analysis.noise, 0.95)
    assert list(figure.layout.yaxis.categoryarray)[-1] == "activation"  # rank 1 on top
    intervals = [t for t in figure.data if t.name == "95% CI"]
    assert len(intervals) == len(ranking)
    top = ranking.iloc[0]
    assert list(intervals[0].x) == [top["effect_ci_low"], top["effect_ci_high"]]


def test_the_note_says_first_when_the_dashboard_importance_panel_does_not_apply() -> None:
    def note(spec, trials, dashboard=True) -> str:
        found = Findings(StudyData("t", spec, trials, pd.DataFrame()), rank_trials(trials, spec),
                         pd.DataFrame(), {}, pd.DataFrame(), None, None)
        return report_markdown(found, Figures(), dashboard=dashboard)

    ofat, grid = ofat_table({"lr": -0.05}, noise=0.005, seeds=2), grid_table(0.0, 0.005)
    first = note(OFAT, ofat).split("\n\n")[1]
    assert first.startswith("> ") and "not valid for this one-factor-at-a-time study" in first
    assert "sum to one even for pure noise" in note(GRID, grid).split("\n\n")[1]
    assert "Hyperparameter Importance" not in note(OFAT, ofat, dashboard=False)  # the report
