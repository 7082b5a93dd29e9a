import numpy as np
import pandas as pd

from study.analysis import ACCURACY, factor_ranking, level_means, seed_noise
from study.config import FACTORS

BASE = {"channels": 32, "activation": "relu", "pooling": "max", "dropout": 0.5,
        "preprocessing": "standardize", "batch_size": 128, "lr": 0.05}
LEVELS = {"channels": [16, 64], "activation": ["tanh"], "pooling": ["avg"], "dropout": [0.0],
          "preprocessing": ["none"], "batch_size": [256], "lr": [0.1]}


def ofat_table(effects: dict[str, float], noise: float, seeds: int = 5, seed: int = 0
               ) -> pd.DataFrame:
    """A synthetic OFAT results table: each non-baseline level shifts accuracy by effects[f]."""
    rng = np.random.default_rng(seed)
    rows = []
    points = [("baseline", BASE, 0.0)] + [
        (f"{f}={v}", BASE | {f: v}, effects.get(f, 0.0)) for f, vs in LEVELS.items() for v in vs]
    for point, params, shift in points:
        for s in range(seeds):
            rows.append({"number": len(rows), "state": "COMPLETE", "outcome": "complete",
                         "design_point": point, "seed": s, **params,
                         ACCURACY: 0.7 + shift + rng.normal(0, noise)})
    return pd.DataFrame(rows)


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
    assert channels["count"].tolist() == [5, 5, 5]  # 16, 32 (baseline), 64 - not the lr=0.1 runs
    assert np.allclose(channels["mean"], 0.7)


def test_failed_trials_are_not_analysed() -> None:
    trials = ofat_table({}, noise=0.0)
    trials.loc[0, ["state", "outcome", ACCURACY]] = ["FAIL", "failed", None]
    means = level_means(trials, BASE)
    assert means.loc[(means["factor"] == "lr") & (means["level"] == 0.05), "count"].item() == 4
