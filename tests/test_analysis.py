import numpy as np

from study.analysis import ACCURACY, factor_ranking, level_means, seed_noise
from study.config import FACTORS
from tests.tables import BASE, ofat_table


def test_planted_effect_ranks_first_and_noise_is_measured() -> None:
    trials = ofat_table({"activation": -0.03}, noise=0.005)
    ranking = factor_ranking(trials, BASE)
    assert ranking.iloc[0]["factor"] == "activation"
    assert abs(ranking.iloc[0]["effect"] - 0.03) < 0.01
    assert set(ranking["factor"]) == set(FACTORS)
    noise = seed_noise(trials)
    assert 0.002 < noise["baseline_std"] < 0.01 and noise["baseline_seeds"] == 5
    assert ranking.iloc[0]["effect_over_noise"] > 3


def test_ofat_slices_use_only_trials_at_baseline_for_other_factors() -> None:
    trials = ofat_table({"lr": 0.05}, noise=0.0)
    means = level_means(trials, BASE)
    channels = means[means["factor"] == "channels"]
    assert channels["count"].tolist() == [5, 5, 5, 5]  # 16, 32 (baseline), 64, 128 only
    assert np.allclose(channels["mean"], 0.7)


def test_failed_trials_are_not_analysed() -> None:
    trials = ofat_table({}, noise=0.0)
    trials.loc[0, ["state", "outcome", ACCURACY]] = ["FAIL", "failed", None]
    means = level_means(trials, BASE)
    assert means.loc[(means["factor"] == "lr") & (means["level"] == 0.05), "count"].item() == 4
