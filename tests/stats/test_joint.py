"""Interactions and Optuna's importance evaluators (study.stats.joint) on studies with known
truth."""

import numpy as np
import optuna
import pytest

from study.stats.joint import interactions, optuna_importances
from study.stats.synthetic import GRID, OFAT, grid_table, ofat_table, table_spec


def test_interaction_detection_finds_planted_lr_by_batch_size() -> None:
    pairs, tables = interactions(grid_table(interaction=0.03, noise=0.005), GRID)
    by_pair = pairs.set_index(["factor_a", "factor_b"])  # pairs in the design's factor order
    assert by_pair.loc[("lr", "batch_size"), "interaction_p_holm"] < 0.01
    assert by_pair.loc[("batch_size", "activation"), "interaction_p"] > 0.01
    table = tables[("lr", "batch_size")]
    assert table.loc["0.1", "256"] - table.loc["0.1", "64"] == pytest.approx(0.03, abs=0.01)
    assert pairs.iloc[0][["factor_a", "factor_b"]].tolist() == ["lr", "batch_size"]


def test_ofat_has_no_interaction_pairs() -> None:
    pairs, tables = interactions(ofat_table({}, noise=0.005, seeds=2), OFAT)
    assert pairs.empty and tables == {}


def _sampled_study(trials: int) -> optuna.Study:
    """lr matters (a log-scale optimum near 0.03), activation and dropout do not."""
    rng = np.random.default_rng(0)
    study = optuna.create_study(direction="maximize")
    dists = {"lr": optuna.distributions.FloatDistribution(0.001, 0.5, log=True),
             "activation": optuna.distributions.CategoricalDistribution(["relu", "tanh"]),
             "dropout": optuna.distributions.FloatDistribution(0.0, 0.5)}
    for _ in range(trials):
        lr = float(np.exp(rng.uniform(np.log(0.001), np.log(0.5))))
        params = {"lr": lr, "activation": str(rng.choice(["relu", "tanh"])),
                  "dropout": float(rng.uniform(0, 0.5))}
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists,
            value=0.8 - 0.05 * abs(np.log10(lr) + 1.5) + rng.normal(0, 0.002)))
    return study


SPACE = table_spec("optuna", {"lr": [0.001, 0.5], "activation": ["relu", "tanh"],
                              "dropout": [0.0, 0.5]})


def test_importances_stand_out_from_their_shuffled_reference() -> None:
    scores = optuna_importances(_sampled_study(60), SPACE, repeats=3)
    assert set(scores["evaluator"]) == {"fANOVA", "PED-ANOVA"}  # 6 trials in the top 10%
    for evaluator in ("fANOVA", "PED-ANOVA"):
        part = scores[scores["evaluator"] == evaluator].set_index("factor")
        assert part.index[0] == "lr" and part.loc["lr", "mean"] > 0.6
        assert part.loc["lr", "mean"] > 2 * part.loc["lr", "shuffled_mean"]
        assert part["repeats"].eq(3).all() and part["std"].notna().all()


def test_ped_anova_needs_five_trials_above_its_quantile() -> None:
    scores = optuna_importances(_sampled_study(30), SPACE, repeats=2)
    assert set(scores["evaluator"]) == {"fANOVA"}


def test_no_importances_when_every_trial_scored_the_same() -> None:
    study = _sampled_study(20)
    flat = optuna.create_study(direction="maximize")
    flat.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                               value=0.7) for t in study.trials])
    assert optuna_importances(flat, SPACE, repeats=2).empty  # fANOVA would raise
