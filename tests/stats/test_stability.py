"""How far a ranking holds (study.stats.stability, study.reporting.compare): planted rankings
that flip between early and late epochs, and between two budgets, found as such; the report's
sections and the compare command on studies stored as the sweep stores them."""

import subprocess
import sys
import warnings
from dataclasses import replace

import numpy as np
import optuna
import pandas as pd
import pytest
from scipy import stats as sps

from study.errors import UserError
from study.reporting.compare import at_other_budget, write_comparison
from study.reporting.report import write_report
from study.stats.fit import fit
from study.stats.ranking import rank_trials
from study.stats.stability import (
    MIN_FACTORS,
    STABLE_RHO,
    compare_rankings,
    correlation_row,
    epoch_matrix,
    epoch_ranking,
    rank_correlations,
    study_ranking,
)
from study.stats.synthetic import (
    LEVELS,
    OFAT,
    curves_table,
    ofat_epochs,
    ofat_spec,
    study_from_table,
)
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
    assert result.stable_from is None and not result.defined
    assert result.correlations["spearman"].isna().all()
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
    assert cross.changed.empty  # every planted effect is likely (one seed) in both studies


def test_a_verdict_that_changes_across_budgets_is_listed_and_nothing_else() -> None:
    rankings = []  # the preview misses the learning rate's effect; all else as above
    for name, budget, shifts, seed in (("ofat-quick", "quick", [EARLY | {"lr": 0.0}] * 2, 1),
                                       ("ofat-full", "full", [LATE] * 3, 2)):
        trials, _ = ofat_epochs(shifts, noise=0.005, seeds=1, baseline_seeds=6,
                                rng=np.random.default_rng(seed))
        rankings.append(study_ranking(name, rank_trials(trials, _spec(len(shifts), budget))))
    cross = compare_rankings(rankings, "ofat-full")
    assert cross.changed.to_dict("records") == [
        {"factor": "lr", "reference verdict": "likely influential", "study": "ofat-quick",
         "verdict": "undetermined"}]


@pytest.mark.heavy
@pytest.mark.slow
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


def test_rank_correlations_are_scipy_s_row_by_row_ties_included() -> None:
    rng = np.random.default_rng(3)
    x, y = (rng.integers(0, 4, size=(8, 6)).astype(float) for _ in range(2))  # many ties
    rho, tau = rank_correlations(x, y)
    for row in range(len(x)):
        assert rho[row] == pytest.approx(sps.spearmanr(x[row], y[row]).statistic, abs=1e-12)
        assert tau[row] == pytest.approx(sps.kendalltau(x[row], y[row]).statistic, abs=1e-12)
    three = rank_correlations(x[:, :MIN_FACTORS], y[:, :MIN_FACTORS])  # the fewest defined
    assert three[0][0] == pytest.approx(sps.spearmanr(x[0, :3], y[0, :3]).statistic)
    assert np.isnan(rank_correlations(x[:, :2], y[:, :2])).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a constant row is n/a, and says nothing
        constant = rank_correlations(np.ones((1, 5)), y[:1, :5])
    assert np.isnan(constant).all()


def test_a_correlation_uses_the_factors_both_define_and_its_interval_the_draws_of_both() -> None:
    rng = np.random.default_rng(0)
    x, y = np.array([1.0, np.nan, 3, 2, 5, 4]), np.array([1.0, 2, 3, 4, np.nan, 6])
    both = [0, 2, 3, 5]
    row = correlation_row(x, y, None, None)
    assert row["spearman"] == pytest.approx(sps.spearmanr(x[both], y[both]).statistic)
    assert np.isnan(row["spearman_low"])  # no draws: no interval
    x_draws, y_draws = (v + rng.normal(0, 1, size=(40, 6)) for v in (x, y))
    assert np.isnan(correlation_row(x, y, x_draws, None)["kendall_low"])  # one side's only
    full = correlation_row(x, y, x_draws, y_draws)
    drawn = rank_correlations(x_draws[:, both], y_draws[:, both])[0]
    assert (full["spearman_low"], full["spearman_high"]) == pytest.approx(
        tuple(np.quantile(drawn, [0.025, 0.975])))
    # half the draws undefined (a constant row each) still give an interval; more do not
    half, most = x_draws.copy(), x_draws.copy()
    half[:20] = 1.0
    most[:25] = 1.0  # 15 of 40 defined: over a third, under half
    assert np.isfinite(correlation_row(x, y, half, y_draws)["spearman_low"])
    assert np.isnan(correlation_row(x, y, most, y_draws)["spearman_low"])
    # an undefined estimate gets no interval, whatever its draws say
    assert np.isnan(correlation_row(np.ones(6), y, x_draws, y_draws)["spearman_high"])


def test_only_trials_tested_after_exactly_the_study_s_epochs_count() -> None:
    trials, curves = _flipping(epochs=3, flip_at=1)
    table = curves_table(trials, curves)
    table["train_loss"] = np.where(table["number"] == 0, np.nan, 1.0)  # other columns: no matter
    gap = table[~((table["number"] == 1) & (table["epoch"] == 2))]  # trial 1 untested at 2
    longer = pd.concat([gap, pd.DataFrame([{"number": 2, "epoch": 4, "test_accuracy": 0.6}])])
    done, accuracy = epoch_matrix(trials, longer, 3)  # trial 2 trained a 4th epoch
    assert list(done["number"]) == [n for n in trials["number"] if n not in (1, 2)]
    assert accuracy.shape == (len(trials) - 2, 3)
    assert accuracy[0].tolist() == curves[0]


def test_a_ranking_that_flips_at_the_last_epoch_is_stable_from_no_epoch() -> None:
    trials, curves = _flipping(epochs=4, flip_at=3)
    result = epoch_ranking(trials, curves_table(trials, curves), _spec(4))
    corr = result.correlations.set_index("epoch")
    # stable at the final epoch alone is true of every ranking: no epoch is named
    assert result.stable_from is None and result.defined and result.epochs == 4
    assert corr.loc[3, "spearman"] < -0.9 and corr.loc[3, "spearman_high"] < 0  # against epoch 4
    assert corr.loc[4, "spearman"] == 1
    steady, curves = _flipping(epochs=2, flip_at=0)  # the fewest epochs with a ranking each
    result = epoch_ranking(steady, curves_table(steady, curves), _spec(2))
    assert result.stable_from == 1 and result.epochs == 2


def test_each_epoch_s_effects_are_the_fit_s_corrected_ones_and_the_draws_are_seeded() -> None:
    trials, curves = _flipping(epochs=3, flip_at=1, seed=2)
    table, spec = curves_table(trials, curves), _spec(3)
    result = epoch_ranking(trials, table, spec)
    done, accuracy = epoch_matrix(trials, table, 3)
    model = fit(done, spec)
    corrected = model.effects(accuracy)
    effects = result.effects.set_index(["epoch", "factor"])
    for e in range(3):
        for j, factor in enumerate(model.factors):
            assert effects.loc[(e + 1, factor), "corrected"] == pytest.approx(corrected[e, j])
            assert effects.loc[(e + 1, factor), "effect"] == pytest.approx(max(0, corrected[e, j]))
    noisy, curves = ofat_epochs([EARLY] * 3, noise=0.04, seeds=1, baseline_seeds=6,
                                rng=np.random.default_rng(0))  # intervals that move with a seed
    table = curves_table(noisy, curves)
    first = epoch_ranking(noisy, table, spec).correlations
    pd.testing.assert_frame_equal(first, epoch_ranking(noisy, table, spec, seed=0).correlations)
    other = epoch_ranking(noisy, table, spec, seed=1).correlations
    assert not np.allclose(other["spearman_low"], first["spearman_low"])


def test_every_study_is_compared_with_the_reference_wherever_it_stands_in_the_list() -> None:
    rankings, tables = [], []
    for name, budget, shifts, seed, baseline_seeds in (
            ("ofat-full", "full", [LATE] * 3, 2, 6),
            ("ofat-quick", "quick", [EARLY | {"lr": 0.0}] * 2, 1, 6),
            ("ofat-one", "smoke", [EARLY], 3, 1)):  # no replicate: no noise, no draws
        trials, _ = ofat_epochs(shifts, noise=0.005, seeds=1, baseline_seeds=baseline_seeds,
                                rng=np.random.default_rng(seed))
        tables.append(trials)
        rankings.append(study_ranking(name, rank_trials(trials, _spec(len(shifts), budget))))
    assert [(r.budget, r.epochs, r.draws is None) for r in rankings] == [
        ("full", 3, False), ("quick", 2, False), ("smoke", 1, True)]
    cross = compare_rankings(rankings, "ofat-full")  # the reference first
    assert cross.reference == "ofat-full"
    assert cross.budgets == {"ofat-full": ("full", 3), "ofat-quick": ("quick", 2),
                             "ofat-one": ("smoke", 1)}
    rows = cross.correlations.set_index("study")
    assert list(rows.index) == ["ofat-quick", "ofat-one"]
    assert (rows["reference"] == "ofat-full").all() and (rows["factors"] == 7).all()
    assert np.isfinite(rows.loc["ofat-quick", ["spearman", "spearman_low"]]).all()
    assert rows.loc["ofat-one", ["spearman", "spearman_low", "kendall_high"]].isna().all()
    assert cross.changed.groupby("study").size().to_dict() == {"ofat-one": 7, "ofat-quick": 1}
    assert list(cross.effects.index) == list(range(21))  # one row per factor and study
    bare = study_ranking("x", rank_trials(tables[0], replace(OFAT, setup={})))
    assert (bare.budget, bare.epochs) == ("?", None)
    same = compare_rankings([rankings[0], replace(rankings[0], name="again")], "ofat-full")
    assert same.changed.empty and list(same.changed.columns) == [
        "factor", "reference verdict", "study", "verdict"]


def test_a_study_s_ranking_draws_are_seeded_and_absent_without_a_ranked_factor() -> None:
    trials, _ = ofat_epochs([EARLY], noise=0.01, seeds=1, baseline_seeds=6,
                            rng=np.random.default_rng(0))
    first, again = (study_ranking("s", rank_trials(trials, _spec(1))) for _ in range(2))
    np.testing.assert_array_equal(first.draws, again.draws)
    only_baseline = trials[trials["design_point"] == "baseline"]
    bare = study_ranking("b", rank_trials(only_baseline, _spec(1)))
    assert bare.factors == [] and bare.draws is None and len(bare.effects) == 0


def test_a_ranking_whose_rho_is_exactly_the_threshold_counts_as_stable() -> None:
    """Five factors, one adjacent pair swapped before the last epoch: Spearman's rho is
    1 - 6 * 2 / (5 * 24) = 0.9 exactly, which is stable (rho >= STABLE_RHO)."""
    five = FACTORS[:5]
    final = {f: -0.02 * (i + 1) for i, f in enumerate(five)}
    swapped = final | {five[0]: final[five[1]], five[1]: final[five[0]]}
    trials, curves = ofat_epochs([swapped, final], noise=0.0005, seeds=1, baseline_seeds=6,
                                 rng=np.random.default_rng(0))
    trials = trials[trials["design_point"].map(lambda p: p.split("=")[0] in {"baseline", *five})]
    spec = replace(ofat_spec({f: LEVELS[f] for f in five}),
                   setup={"budget": "full", "train.epochs": 2})
    result = epoch_ranking(trials, curves_table(trials, curves), spec)
    assert result.correlations.set_index("epoch").loc[1, "spearman"] == STABLE_RHO
    assert result.stable_from == 1
