import numpy as np
import pandas as pd
import pytest

from study.stats.fit import fit
from study.stats.frames import ACCURACY, design_table
from study.stats.slices import factor_slice, level_labels
from study.stats.synthetic import GRID, OFAT, ofat_table


def test_seed_noise_at_baseline_and_pooled() -> None:
    noise = fit(ofat_table({"activation": -0.03}, noise=0.005, seeds=20), OFAT).noise
    assert 0.003 < noise.baseline_std < 0.007 and noise.baseline_converged == 20
    assert abs(noise.pooled_std - 0.005) < 0.0005
    assert noise.pooled_df == 15 * 19  # 15 design points of 20 seeds each
    # the band's centre is the converged baseline trials' mean: a diverged one (0.1) stays out
    trials = ofat_table({}, noise=0.005, seeds=6, diverged={"baseline": [0]})
    noise, converged_base = fit(trials, OFAT).noise, trials[(trials["design_point"] == "baseline")
                                                            & (trials["outcome"] == "complete")]
    low, high = noise.band()
    assert (low + high) / 2 == pytest.approx(converged_base[ACCURACY].mean()) and low > 0.65
    assert high - low == pytest.approx(4 * converged_base[ACCURACY].std())
    assert noise.baseline_converged == 5


def test_one_seed_has_no_measurable_noise() -> None:
    noise = fit(ofat_table({}, noise=0.01, seeds=1), OFAT).noise
    assert np.isnan(noise.baseline_std) and np.isnan(noise.pooled_std) and noise.pooled_df == 0
    assert noise.band() is None


def test_ofat_slice_keeps_only_trials_at_baseline_for_other_factors() -> None:
    trials = ofat_table({}, noise=0.0, seeds=2)
    part = factor_slice(trials, "channels", OFAT)
    assert sorted(part["channels"].unique()) == [16, 32, 64, 128] and len(part) == 8
    assert (part.drop(columns="channels")[["lr", "activation"]] == [0.05, "relu"]).all().all()
    assert len(factor_slice(trials, "channels", GRID)) == len(trials)  # marginal designs


def test_many_numeric_values_are_binned_into_quartiles() -> None:
    assert level_labels(pd.Series([1, 2, 3])).tolist() == [1, 2, 3]
    binned = level_labels(pd.Series(np.linspace(0.001, 0.5, 40)))
    assert binned.nunique() == 4


def test_design_table_counts_finished_trials_and_ignores_failed_ones() -> None:
    trials = ofat_table({}, noise=0.0, seeds=3)
    trials.loc[0, ["state", "outcome", ACCURACY]] = ["FAIL", "failed", None]
    table = design_table(trials).set_index("design_point")
    assert table.loc["baseline", "trials"] == 3 and table.loc["baseline", "finished"] == 2
    assert table["finished"].sum() == len(trials) - 1
