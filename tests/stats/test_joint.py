"""Interactions and Optuna's importance evaluators (study.stats.joint) on studies with known
truth."""

import numpy as np
import optuna
import pandas as pd
import pytest
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from study.stats.joint import (
    IMPORTANCE_COLUMNS,
    interactions,
    optuna_importances,
    varied_factors,
)
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


@pytest.mark.slow
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


def test_each_crossed_pair_gets_statsmodels_two_way_anova_and_its_table_of_means() -> None:
    trials = grid_table(interaction=0.02, noise=0.01, seeds=2)
    assert varied_factors(trials, GRID) == ["lr", "batch_size", "activation"]
    extra = trials.iloc[:2].assign(dropout=0.25, number=[100, 101])  # dropout varied at one
    pairs, tables = interactions(pd.concat([trials, extra], ignore_index=True), GRID)
    # (lr, dropout) is not crossed and comes first; the crossed pairs after it are all there
    assert [tuple(p) for p in pairs[["factor_a", "factor_b"]].values] == sorted(
        [("lr", "batch_size"), ("lr", "activation"), ("batch_size", "activation")],
        key=lambda pair: pairs.set_index(["factor_a", "factor_b"]).loc[pair, "interaction_p"])
    pairs, tables = interactions(trials, GRID)
    assert list(pairs.index) == [0, 1, 2] and pairs["interaction_p"].is_monotonic_increasing
    assert pairs["interaction_p_holm"].tolist() == pytest.approx(
        multipletests(pairs["interaction_p"], method="holm")[1].tolist())
    for _, row in pairs.iterrows():
        a, b = row["factor_a"], row["factor_b"]
        frame = trials.assign(a=trials[a].astype(str), b=trials[b].astype(str))
        anova = anova_lm(ols("test_accuracy ~ C(a) * C(b)", data=frame).fit(), typ=2)
        assert row["cells"] == 4
        assert row["interaction_p"] == pytest.approx(anova.loc["C(a):C(b)", "PR(>F)"])
        assert row["interaction_eta_squared"] == pytest.approx(
            anova.loc["C(a):C(b)", "sum_sq"] / anova["sum_sq"].sum())
        table = tables[(a, b)]
        assert (table.index.name, table.columns.name) == (a, b)
        means = frame.groupby(["a", "b"])["test_accuracy"].mean()
        assert all(table.loc[i, j] == pytest.approx(means[(i, j)]) for i, j in means.index)
    single = grid_table(interaction=0.02, noise=0.01, seeds=1)  # one trial per (lr, batch) cell:
    once, _ = interactions(single[single["activation"] == "relu"], GRID)  # no error left
    assert once[["factor_a", "factor_b"]].values.tolist() == [["lr", "batch_size"]]
    assert once["interaction_p"].isna().all() and once["interaction_eta_squared"].isna().all()


@pytest.mark.slow
def test_importances_are_seeded_shares_in_order_and_their_gates_are_where_they_say() -> None:
    scores = optuna_importances(_sampled_study(50), SPACE, repeats=2)  # 5 in the top 10%
    pd.testing.assert_frame_equal(scores, optuna_importances(_sampled_study(50), SPACE, 2))
    assert list(scores.index) == list(range(len(scores)))
    assert scores["evaluator"].tolist() == sorted(scores["evaluator"])  # PED-ANOVA, fANOVA
    by = scores.set_index(["evaluator", "factor"])["mean"]
    assert set(scores["evaluator"]) == {"PED-ANOVA", "fANOVA"}  # 0.1 x 50 = 5: just enough
    assert not np.allclose(by["PED-ANOVA"].sort_index(), by["fANOVA"].sort_index())  # each its own
    for _, part in scores.groupby("evaluator"):
        assert part["mean"].is_monotonic_decreasing
        assert set(part["factor"]) == {"lr", "activation", "dropout"}  # two values count
        assert part["mean"].sum() == pytest.approx(1.0)  # normalised shares, every repeat
        assert part["shuffled_mean"].sum() == pytest.approx(1.0)
    assert not optuna_importances(_sampled_study(10), SPACE, repeats=1).empty  # ten: enough
    assert optuna_importances(_sampled_study(9), SPACE, repeats=1).empty
    study = _sampled_study(12)
    two = optuna.create_study(direction="maximize")  # two distinct values: enough
    two.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                              value=0.7 + 0.1 * (i % 2))
                    for i, t in enumerate(study.trials)])
    assert not optuna_importances(two, SPACE, repeats=1).empty
    empty = optuna_importances(_sampled_study(5), SPACE, repeats=1)
    assert list(empty.columns) == IMPORTANCE_COLUMNS


def test_a_resample_whose_accuracies_are_all_equal_is_skipped_not_fatal() -> None:
    study = _sampled_study(10)
    rare = optuna.create_study(direction="maximize")  # one trial in ten differs: most
    rare.add_trials([optuna.trial.create_trial(  # resamples of ten miss it
        params=t.params, distributions=t.distributions, value=0.8 if i == 0 else 0.7)
        for i, t in enumerate(study.trials)])
    scores = optuna_importances(rare, SPACE, repeats=6).set_index("factor")
    assert (scores["repeats"] < 6).all()  # the all-equal resamples counted as n/a
    assert scores["mean"].notna().all()


@pytest.mark.slow
def test_each_evaluator_s_shares_are_optuna_s_own_on_the_same_resample() -> None:
    study = _sampled_study(50)
    scores = optuna_importances(study, SPACE, repeats=1).set_index(["evaluator", "factor"])
    # the one resample and its shuffled copy, drawn as the function draws them
    trials, rng = study.trials, np.random.default_rng(0)
    resample = [trials[i] for i in rng.integers(0, len(trials), len(trials))]
    values = rng.permutation([t.value for t in resample])
    shuffled = [optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                          value=float(v))
                for t, v in zip(resample, values, strict=True)]
    evaluators = {"fANOVA": lambda: optuna.importance.FanovaImportanceEvaluator(seed=0),
                  "PED-ANOVA": lambda: optuna.importance.PedAnovaImportanceEvaluator(
                      target_quantile=0.1)}
    for name, make in evaluators.items():
        for resampled, column in ((resample, "mean"), (shuffled, "shuffled_mean")):
            own = optuna.create_study(direction="maximize")
            own.add_trials(resampled)
            expected = optuna.importance.get_param_importances(
                own, evaluator=make(), params=["lr", "activation", "dropout"], normalize=True)
            for factor, share in expected.items():
                assert scores.loc[(name, factor), column] == pytest.approx(share), (name, column)
