import numpy as np
import pandas as pd
import pytest

from study.analysis import (
    ACCURACY,
    design_table,
    factor_slice,
    level_labels,
    noise_band,
    seed_noise,
)
from tests.tables import GRID, OFAT, ofat_table


def test_seed_noise_at_baseline_and_pooled() -> None:
    noise = seed_noise(ofat_table({"activation": -0.03}, noise=0.005, seeds=20))
    assert 0.003 < noise["baseline_std"] < 0.007 and noise["baseline_seeds"] == 20
    assert abs(noise["pooled_std"] - 0.005) < 0.0005
    # the band's centre is the converged baseline trials' mean: a diverged one (0.1) stays out
    trials = ofat_table({}, noise=0.005, seeds=6, diverged={"baseline": [0]})
    noise, converged_base = seed_noise(trials), trials[(trials["design_point"] == "baseline")
                                                       & (trials["outcome"] == "complete")]
    low, high = noise_band(noise)
    assert (low + high) / 2 == pytest.approx(converged_base[ACCURACY].mean()) and low > 0.65
    assert high - low == pytest.approx(4 * converged_base[ACCURACY].std())


def test_one_seed_has_no_measurable_noise() -> None:
    noise = seed_noise(ofat_table({}, noise=0.01, seeds=1))
    assert np.isnan(noise["baseline_std"]) and np.isnan(noise["pooled_std"])
    assert noise_band(noise) is None


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
