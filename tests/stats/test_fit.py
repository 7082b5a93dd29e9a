"""The one fitted model (study.stats.fit): cell means and the pooled error as the linear model
has them, exact where the data are, and one selection-corrected effect for every use: the
ranking, any column of accuracies, and both redraws."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from study.stats.fit import cell_table, corrected_effect, first_look_claims, fit
from study.stats.frames import ACCURACY
from study.stats.ranking import rank_trials
from study.stats.synthetic import (
    GRID,
    OFAT,
    grid_table,
    ofat_table,
    sampled_table,
    table_spec,
)


def test_cell_means_and_the_pooled_error_are_the_linear_model_s() -> None:
    trials = ofat_table({"lr": 0.02}, noise=0.005, seeds=3, baseline_seeds=6)
    model = fit(trials, OFAT)
    ols = smf.ols(f"{ACCURACY} ~ C(design_point)", data=trials.astype({ACCURACY: float})).fit()
    assert model.noise.pooled_std == pytest.approx(np.sqrt(ols.scale))
    assert model.noise.pooled_df == ols.df_resid == len(trials) - trials["design_point"].nunique()
    lr = model.factors["lr"]
    means = trials.groupby("design_point")[ACCURACY].mean()
    assert lr.mean == pytest.approx(means[lr.cells].to_numpy())
    assert lr.cells == ["baseline", "lr=0.01", "lr=0.1"] and list(lr.n) == [6, 3, 3]
    grid = fit(grid_table(interaction=0.0, noise=0.005), GRID).factors["activation"]
    assert grid.weights.sum(axis=1) == pytest.approx([1, 1]) and len(grid.cells) == 8  # marginal


def test_equal_accuracies_differ_by_exactly_zero() -> None:
    # every trial 0.7: in floats 0.7 + 0.7 + 0.7 is 2.0999999999999996, and / 3 is not 0.7
    model = fit(ofat_table({}, noise=0.0, seeds=3), OFAT)
    assert model.noise.pooled_std == 0 and model.noise.baseline_std == 0
    for factor in model.factors.values():
        assert (factor.differences == 0).all() and factor.corrected == 0
    table = cell_table(np.array(["a"] * 3 + ["b"] * 6, dtype=object), ["a", "b"],
                       np.full((9, 1), 0.1))
    assert (table.means == 0.1).all() and (table.ss == 0).all() and table.df == 7


def test_every_effect_is_the_model_s_one_corrected_effect() -> None:
    trials = ofat_table({"lr": -0.03, "activation": 0.02}, noise=0.005, seeds=2,
                        baseline_seeds=6, diverged={"dropout=0.0": [0]})
    model = fit(trials, OFAT)
    ranking = rank_trials(trials, OFAT).ranking.set_index("factor")
    corrected = np.array([factor.corrected for factor in model.factors.values()])
    assert ranking.loc[list(model.factors), "effect"].to_numpy() == pytest.approx(
        corrected.clip(min=0))
    observed = model.converged[[ACCURACY]].to_numpy(float)
    columns = np.hstack([observed, observed + 0.1, 2 * observed])
    effects = model.effects(columns)
    assert effects[0] == pytest.approx(corrected, abs=1e-12)
    assert effects[1] == pytest.approx(corrected, abs=1e-12)  # a shift moves no effect
    assert effects[2] == pytest.approx(2 * corrected, abs=1e-12)  # a scale scales them all


def test_without_noise_both_redraws_are_the_observed_effects() -> None:
    trials = ofat_table({"lr": -0.03, "activation": 0.02}, noise=0.0, seeds=2)
    model = fit(trials, OFAT)
    corrected = [factor.corrected for factor in model.factors.values()]
    assert corrected[list(model.factors).index("lr")] == pytest.approx(0.03)
    redrawn = model.parametric_redraws(draws=50)
    assert list(redrawn.columns) == list(model.factors) and len(redrawn) == 50
    assert np.allclose(redrawn.to_numpy(), corrected, atol=1e-12)
    observed = model.converged[[ACCURACY]].to_numpy(float)
    boot = model.residual_redraws(observed, np.random.default_rng(0), count=20)
    assert boot.shape == (20, 1, len(model.factors))
    assert np.allclose(boot[:, 0], corrected, atol=1e-12)


def test_the_bootstrap_needs_a_replicated_point_and_redraws_vary_with_noise() -> None:
    single = fit(ofat_table({}, noise=0.01, seeds=1), OFAT)
    observed = single.converged[[ACCURACY]].to_numpy(float)
    assert single.residual_redraws(observed, np.random.default_rng(0)) is None
    noisy = fit(ofat_table({}, noise=0.01, seeds=1, baseline_seeds=6), OFAT)
    observed = noisy.converged[[ACCURACY]].to_numpy(float)
    boot = noisy.residual_redraws(observed, np.random.default_rng(0), count=200)
    assert np.isfinite(boot).all() and boot[:, 0].std(axis=0).min() > 0


def test_level_means_and_their_intervals_are_the_cells_averaged_with_their_own_noise() -> None:
    for table, spec in ((ofat_table({"lr": -0.03}, noise=0.01, seeds=3,
                                    rng=np.random.default_rng(1)), OFAT),
                        (grid_table(0.02, noise=0.01, seeds=2), GRID)):
        model = fit(table, spec)
        for name, factor_fit in model.factors.items():
            part = model.slices[name]
            part = part[part["outcome"] == "complete"]
            # a level's mean: its cells' means averaged alike (OFAT: one cell per level)
            cells = part.groupby(["level", "design_point"])[ACCURACY].agg(
                ["mean", "count", "var"])
            for row in factor_fit.level_rows():
                mine = cells.loc[row["level"]]
                k = len(mine)
                assert row["n"] == mine["count"].sum()
                assert row["mean"] == pytest.approx(mine["mean"].mean())
                # the cells' own variances, Welch-Satterthwaite's df: not the pooled error,
                # which would cover a noisier level too rarely
                parts = mine["var"] / mine["count"] / k ** 2
                df = parts.sum() ** 2 / (parts ** 2 / (mine["count"] - 1)).sum()
                half = sps.t.ppf(0.975, df) * np.sqrt(parts.sum())
                assert (row["ci_low"], row["ci_high"]) == pytest.approx(
                    (row["mean"] - half, row["mean"] + half))
    single = fit(ofat_table({}, noise=0.01, seeds=1), OFAT).factors["lr"].level_rows()
    assert all(np.isnan(row["ci_low"]) and np.isnan(row["ci_high"]) for row in single)


def test_omega_squared_is_the_slice_s_with_the_fit_s_error_and_clipped_at_zero() -> None:
    model = fit(ofat_table({"lr": -0.03}, noise=0.01, seeds=3, rng=np.random.default_rng(2)),
                OFAT)
    for name in ("lr", "pooling"):
        factor_fit = model.factors[name]
        part = model.slices[name]
        y = part.loc[part["outcome"] == "complete", ACCURACY]
        levels = part.loc[y.index, "level"]
        ss_total = ((y - y.mean()) ** 2).sum()
        ss_between = (y.groupby(levels).transform("mean") - y.mean()).pow(2).sum()
        k, mse = levels.nunique(), factor_fit.s ** 2
        expected = max(0.0, (ss_between - (k - 1) * mse) / (ss_total + mse))
        assert factor_fit.omega_squared() == pytest.approx(expected)
    assert 0.5 < model.factors["lr"].omega_squared() < 1  # planted: large, below one
    assert model.factors["pooling"].omega_squared() == 0.0  # null: clipped
    assert np.isnan(fit(ofat_table({}, noise=0.01, seeds=1), OFAT).factors["lr"].omega_squared())


def test_divergence_rates_wilson_intervals_and_fisher_p_against_the_baseline() -> None:
    trials = ofat_table({}, noise=0.01, seeds=3, baseline_seeds=6,
                        diverged={"baseline": [0], "lr=0.1": [0, 1]})
    table = fit(trials, OFAT).divergence
    assert list(table.columns) == ["factor", "level", "diverged", "trials", "rate", "rate_low",
                                   "rate_high", "fisher_p", "baseline"]
    lr = table[table["factor"] == "lr"].set_index("level")
    assert lr.index.tolist() == [0.01, 0.05, 0.1] and lr["baseline"].tolist() == [False, True,
                                                                                   False]
    assert lr.loc[0.1, ["diverged", "trials"]].tolist() == [2, 3]
    assert lr.loc[0.1, "fisher_p"] == pytest.approx(
        sps.fisher_exact([[2, 1], [1, 5]]).pvalue)  # 2 of 3 against the baseline's 1 of 6
    low, high = proportion_confint(2, 3, alpha=0.05, method="wilson")
    assert (lr.loc[0.1, "rate_low"], lr.loc[0.1, "rate_high"]) == pytest.approx((low, high))
    assert np.isnan(lr.loc[0.05, "fisher_p"])  # the reference is not tested against itself
    quiet = fit(ofat_table({}, noise=0.01, seeds=3), OFAT).divergence
    assert quiet["fisher_p"].isna().all()  # nothing diverged: nothing to test
    nothing = ofat_table({}, noise=0.01, seeds=1).assign(state="FAIL", outcome="failed")
    assert list(fit(nothing, OFAT).divergence.columns) == list(table.columns)


def test_a_factor_with_no_finished_trial_yet_leaves_the_others_divergence_rows() -> None:
    """A running study: the baseline and channels' levels still training (the first factor),
    the other factors' levels finished."""
    trials = ofat_table({}, noise=0.01, seeds=2, diverged={"lr=0.1": [0]})
    running = trials["design_point"].map(lambda p: p.split("=")[0] in ("baseline", "channels"))
    trials.loc[running, ["state", "outcome", ACCURACY]] = ["RUNNING", None, None]
    table = fit(trials, OFAT).divergence
    assert list(table["factor"].unique()) == [f for f in OFAT.factors if f != "channels"]
    assert table.set_index(["factor", "level"]).loc[("lr", 0.1), "diverged"] == 1


def test_the_noise_needs_two_converged_baseline_seeds_and_empty_points_add_no_df() -> None:
    two = fit(ofat_table({}, noise=0.01, seeds=1, baseline_seeds=2), OFAT).noise
    assert np.isfinite(two.baseline_std) and two.pooled_df == 1
    one = fit(ofat_table({}, noise=0.01, seeds=1, baseline_seeds=2,
                         diverged={"baseline": [1]}), OFAT).noise
    assert np.isnan(one.baseline_std) and one.pooled_df == 0
    lost = ofat_table({}, noise=0.01, seeds=2, diverged={"lr=0.1": [0, 1]})  # no accuracy there
    assert fit(lost, OFAT).noise.pooled_df == 15 - 1  # 14 points with 2 seeds: 1 df each


def test_the_corrected_effect_takes_the_null_maximum_in_units_of_the_error_off() -> None:
    assert corrected_effect(0.05, 0.01, 2.0) == pytest.approx(0.03)
    assert corrected_effect(0.01, 0.01, 2.0) == pytest.approx(-0.01)


def test_the_residual_bootstrap_redraws_each_trial_from_its_point_s_rescaled_residuals() -> None:
    spec = table_spec("optuna", {"lr": [0.001, 0.5], "activation": ["relu", "tanh"]})
    trials = sampled_table(spec, 24, noise=0.01, rng=np.random.default_rng(5))
    trials.loc[:3, "design_point"] = "trial 0"  # four trials of one point, two of another
    trials.loc[4:5, "design_point"] = "trial 4"
    trials.loc[7, "design_point"] = None  # a trial of no known point: its own fitted value
    model = fit(trials, spec)
    accuracy = model.converged[[ACCURACY]].to_numpy(float)
    boot = model.residual_redraws(accuracy, np.random.default_rng(7), count=30)
    # the same redraws written out from the docstring: a trial's point mean plus a residual,
    # drawn from every replicated point's residuals, each scaled by sqrt(n / (n - 1))
    labels = model.converged["design_point"].to_numpy(object)
    point = pd.Series(accuracy[:, 0]).groupby(labels)
    known = pd.notna(labels)
    fitted = np.where(known, pd.Series(labels).map(point.mean()), accuracy[:, 0])
    size = np.where(known, pd.Series(labels).map(point.size()).fillna(1), 1)
    pool = ((accuracy[:, 0] - fitted) * np.sqrt(size / np.maximum(size - 1, 1)))[size > 1]
    picks = np.random.default_rng(7).integers(0, len(pool), size=(30, len(accuracy)))
    columns = (fitted[None] + pool[picks]).T  # (trials, draws)
    np.testing.assert_allclose(boot[:, 0], model.effects(columns), rtol=1e-12)


def test_parametric_redraws_draw_cell_means_and_the_error_from_their_laws() -> None:
    model = fit(ofat_table({"lr": -0.02}, noise=0.01, seeds=2, rng=np.random.default_rng(4)),
                OFAT)
    redrawn = model.parametric_redraws(draws=40)  # the default seed, 1
    rng = np.random.default_rng(1)
    cells = sorted({c for f in model.factors.values() for c in f.cells})
    z = dict(zip(cells, rng.standard_normal((len(cells), 40)), strict=True))
    any_fit = next(iter(model.factors.values()))  # OFAT: one pooled error for every factor
    scale = any_fit.s * np.sqrt(rng.chisquare(any_fit.df, 40) / any_fit.df)
    for name, f in model.factors.items():
        means = f.mean[:, None] + np.stack([z[c] for c in f.cells]) / np.sqrt(f.n)[:, None] * scale
        expected = np.abs(f.contrasts @ means).max(axis=0) - f.s * f.null_z
        np.testing.assert_allclose(redrawn[name], expected, rtol=1e-12)


@pytest.mark.parametrize(("design", "seeds", "baseline_seeds", "claims"), [
    ("ofat", 1, 6, False),  # one trial per level: Fisher's p >= 1/7
    ("ofat", 2, 6, True),  # two seeds per level: an accuracy claim can be made
    ("ofat", 1, 19, False),  # p >= 1/20, exactly the 5% rate: still no claim
    ("ofat", 1, 20, True),  # p >= 1/21: a level whose one trial diverged can be claimed
    ("grid", 1, 0, True),  # a grid pools every level's trials
])
def test_a_first_look_claims_only_where_one_trial_per_level_can_support_a_claim(
        design: str, seeds: int, baseline_seeds: int, claims: bool) -> None:
    spec = replace(OFAT if design == "ofat" else GRID, seeds=list(range(seeds)),
                   baseline_seeds=list(range(baseline_seeds)))
    assert first_look_claims(spec) == claims
