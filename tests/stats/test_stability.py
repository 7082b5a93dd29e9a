"""How far a ranking holds (study.stats.stability, study.reporting.compare): planted rankings
that flip between early and late epochs, and between two budgets, found as such; the report's
sections and the compare command on studies stored as the sweep stores them."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import optuna
import pytest

from study.errors import UserError
from study.reporting.compare import at_other_budget, write_comparison
from study.reporting.report import write_report
from study.stats.fit import fit
from study.stats.ranking import rank_trials
from study.stats.stability import STABLE_RHO, compare_rankings, epoch_ranking, study_ranking
from study.stats.synthetic import LEVELS, OFAT, curves_table, ofat_epochs, study_from_table
from tests.conftest import compose, spec_of

FACTORS = list(LEVELS)  # seven factors
EARLY = {f: -0.02 * (i + 1) for i, f in enumerate(FACTORS)}  # one order of effects...
LATE = {f: -0.02 * (len(FACTORS) - i) for i, f in enumerate(FACTORS)}  # ...and its reverse


def _spec(epochs: int, budget: str = "full"):
    return replace(OFAT, setup={"budget": budget, "train.epochs": epochs})


def _flipping(epochs: int, flip_at: int, seed: int = 0):
    """One seed per point, six at the baseline; the ranking reverses after epoch flip_at."""
    shifts = [EARLY] * flip_at + [LATE] * (epochs - flip_at)
    return ofat_epochs(shifts, noise=0.005, seeds=1, baseline_seeds=6,
                       rng=np.random.default_rng(seed))


def test_a_ranking_that_flips_during_training_is_stable_only_after_the_flip() -> None:
    trials, curves = _flipping(epochs=6, flip_at=2)
    result = epoch_ranking(trials, curves_table(trials, curves), _spec(6))
    corr = result.correlations.set_index("epoch")
    assert result.trials == len(trials) == 14 + 6 and result.stable_from == 3
    for epoch in (1, 2):  # the reversed ranking, and the intervals say so
        assert corr.loc[epoch, "spearman"] < -0.9 and corr.loc[epoch, "kendall"] < -0.8
        assert corr.loc[epoch, "spearman_high"] < 0 and corr.loc[epoch, "kendall_high"] < 0
    assert (corr.loc[3:, "spearman"] >= STABLE_RHO).all() and corr.loc[6, "kendall"] == 1
    effects = result.effects.set_index(["epoch", "factor"])["effect"]
    assert effects[(1, FACTORS[-1])] > effects[(1, FACTORS[0])]  # early: the last factor leads
    assert effects[(6, FACTORS[0])] > effects[(6, FACTORS[-1])]  # late: the first one


def test_the_last_epoch_s_effects_are_the_report_s_ranking() -> None:
    trials, curves = _flipping(epochs=3, flip_at=1, seed=4)
    spec = _spec(3)
    ranking = rank_trials(trials, spec).ranking.set_index("factor")
    result = epoch_ranking(trials, curves_table(trials, curves), spec)
    last = result.effects[result.effects["epoch"] == 3].set_index("factor")
    assert last["effect"].to_dict() == pytest.approx(ranking["effect"].to_dict())
    assert last["effect"].gt(0).sum() >= 3  # not a comparison of zeros
    model = fit(trials, spec)  # the final accuracies alone give the same
    final = model.effects(model.converged[["test_accuracy"]].to_numpy(float))[0].clip(min=0)
    assert dict(zip(model.factors, final, strict=True)) == pytest.approx(
        ranking["effect"].to_dict())


def test_without_per_epoch_results_or_replicates_the_answer_is_n_a() -> None:
    trials, curves = _flipping(epochs=3, flip_at=1)
    assert epoch_ranking(trials, curves_table(trials, {}), _spec(3)) is None  # no curves
    assert epoch_ranking(trials, curves_table(trials, curves), _spec(1)) is None  # one epoch
    single, curves = ofat_epochs([EARLY] * 3, noise=0.005, seeds=1, baseline_seeds=1,
                                 rng=np.random.default_rng(0))
    result = epoch_ranking(single, curves_table(single, curves), _spec(3))
    assert result.stable_from is None and result.correlations["spearman"].isna().all()
    assert result.effects["effect"].isna().all()  # no noise estimate: no corrected effect


def _two_budgets(storage=None):
    """A quick and a full study of one design whose rankings are each other's reverse."""
    studies = {}
    for name, budget, shifts, seed in (("ofat-quick", "quick", [EARLY] * 2, 1),
                                       ("ofat-full", "full", [LATE] * 3, 2)):
        trials, curves = ofat_epochs(shifts, noise=0.005, seeds=1, baseline_seeds=6,
                                     rng=np.random.default_rng(seed))
        spec = _spec(len(shifts), budget)
        studies[name] = (trials, spec)
        if storage is not None:
            study_from_table(trials, spec, name, curves, storage)
    return studies


def test_a_preview_that_reverses_the_full_ranking_is_found_with_its_verdict_changes() -> None:
    rankings = []
    for name, (trials, spec) in _two_budgets().items():
        rankings.append(study_ranking(name, rank_trials(trials, spec)))
    cross = compare_rankings(rankings, "ofat-full")
    row = cross.correlations.iloc[0]
    assert (row["study"], row["factors"]) == ("ofat-quick", 7)
    assert row["spearman"] == -1 and row["kendall"] == -1 and row["spearman_high"] < 0
    assert set(cross.effects["study"]) == {"ofat-quick", "ofat-full"}
    assert cross.changed.empty  # every planted effect is influential in both studies


def test_a_verdict_that_changes_across_budgets_is_listed_and_nothing_else() -> None:
    rankings = []  # the preview misses the learning rate's effect; all else as above
    for name, budget, shifts, seed in (("ofat-quick", "quick", [EARLY | {"lr": 0.0}] * 2, 1),
                                       ("ofat-full", "full", [LATE] * 3, 2)):
        trials, _ = ofat_epochs(shifts, noise=0.005, seeds=1, baseline_seeds=6,
                                rng=np.random.default_rng(seed))
        rankings.append(study_ranking(name, rank_trials(trials, _spec(len(shifts), budget))))
    cross = compare_rankings(rankings, "ofat-full")
    assert cross.changed.to_dict("records") == [
        {"factor": "lr", "reference verdict": "influential", "study": "ofat-quick",
         "verdict": "undetermined"}]


def test_compare_command_and_the_report_s_own_section(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/s.db"
    storage = optuna.storages.RDBStorage(url)
    _two_budgets(storage)
    run = subprocess.run([sys.executable, "-m", "study.report", f"storage={url}",
                          "compare=ofat-quick,ofat-full"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300)  # a bare comma list, as the README writes it
    assert run.returncode == 0 and run.stderr == "", run.stderr[-2000:]
    out = tmp_path / "reports" / "compare" / "ofat-quick_vs_ofat-full"
    text = (out / "report.md").read_text()
    assert "| ofat-quick | 7 | -1.00 [" in text and "effects_by_study.png" in text
    assert (out / "report.html").read_text().count("data:image/png;base64,") == 1
    with pytest.raises(UserError, match=r"^compare: no study named 'nope' in sqlite:///.*; "
                       r"studies there: ofat-quick, ofat-full$"):
        write_comparison(storage, ["ofat-quick", "nope"], url, tmp_path / "reports", 0.01)
    # the full study's own report compares itself with the quick one on its own
    full = optuna.load_study(study_name="ofat-full", storage=storage)
    own = (write_report(full, storage, tmp_path / "reports").folder / "report.md").read_text()
    assert "## Across budgets" in own and "| ofat-quick | 7 | -1.00 [" in own
    assert own.index("![overview]") < own.index("## Setup")  # the first figure
    assert "The ranking is stable from epoch 1 of 3" in own


def test_a_study_at_another_budget_is_the_same_design_and_another_baseline_is_not() -> None:
    quick, full = (spec_of(compose("sweep=article", f"budget={b}")) for b in ("quick", "full"))
    assert quick.baseline["epochs"] != full.baseline["epochs"]  # the budget's, not the design's
    assert at_other_budget(full, quick) and at_other_budget(quick, full)
    assert not at_other_budget(full, full)  # the same budget: the same study, or a rival
    assert not at_other_budget(full, spec_of(compose("sweep=article", "budget=quick",
                                                     "model.activation=gelu")))
    assert not at_other_budget(full, spec_of(compose("budget=quick")))  # ofat: other factors
