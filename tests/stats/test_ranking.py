"""The ranking and verdicts (study.stats.ranking) on synthetic studies with known truth: planted
effects, divergences, failures, and seeded simulations of the error rates docs/statistics.md reports
(the larger runs behind its table: scripts/simulate_stats.py)."""

import re

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

from study.reporting.sections import claim_table
from study.stats.fit import ALPHA, FittedModel
from study.stats.frames import ACCURACY
from study.stats.ranking import LIKELY, RANK_DECIMALS, holm, rank_text, rank_trials
from study.stats.synthetic import (
    GRID,
    LEVELS,
    OFAT,
    grid_table,
    ofat_spec,
    ofat_table,
    seed_noise,
)
from study.stats.variance import PRIOR_DF_CAP

CLAIMS = ("influential", "small")  # the verdicts that say a factor has an effect


def _analyse(trials: pd.DataFrame, spec=OFAT, **kwargs):
    return rank_trials(trials, spec, **kwargs)


def _row(analysis, factor: str) -> pd.Series:
    return analysis.ranking.set_index("factor").loc[factor]


def test_planted_three_point_effect_ranks_first_and_is_influential() -> None:
    result = _analyse(ofat_table({"activation": -0.03}, noise=0.005, seeds=6,
                                 rng=np.random.default_rng(1)))
    top = result.ranking.iloc[0]
    assert top["factor"] == "activation" and top["verdict"] == "influential"
    assert (top["rank"], top["rank_low"], top["rank_high"]) == (1, 1, 1)
    assert top["effect_ci_low"] <= 0.03 <= top["effect_ci_high"]
    assert top["accuracy_p_holm"] < ALPHA and top["omega_squared"] > 0.8
    assert top["largest_difference"] == pytest.approx(-0.03, abs=0.006)
    assert not result.ranking.iloc[1:]["verdict"].isin(CLAIMS).any()


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.simulation
def test_null_studies_make_no_claims_and_their_intervals_cover() -> None:
    levels = LEVELS | {"channels": [8, 16, 64, 128, 256]}
    spec, rng = ofat_spec(levels), np.random.default_rng(7)
    any_claim, covered, cannot_tell = [], [], []
    for _ in range(40):
        result = _analyse(ofat_table({}, noise=0.005, seeds=3, rng=rng, levels=levels), spec)
        ranking, diffs = result.ranking, result.differences
        any_claim.append(ranking["verdict"].isin(CLAIMS).any())
        covered += list((diffs["ci_low"] <= 0) & (diffs["ci_high"] >= 0))
        cannot_tell += list(claim_table(ranking)["agreement"].str.startswith("cannot tell yet"))
    assert np.mean(any_claim) <= 0.06  # family-wise, over all seven factors
    assert np.mean(covered) >= 0.93  # simultaneous 95% intervals of baseline differences
    assert np.mean(cannot_tell) >= 0.95


def test_more_levels_get_no_head_start_in_the_ranking() -> None:
    # the selection-corrected effect ranks the factors: under no effect it averages zero (in
    # units of the seed std) for channels' five differences from the baseline as for pooling's
    # one, so each of the seven factors ranks first about as often (1/7); their largest
    # |difference| alone would rank channels first in 31% and pooling in 6%. 4000 null redraws
    # of a study's accuracies through its fitted model
    levels = LEVELS | {"channels": [8, 16, 64, 128, 256]}
    spec, rng = ofat_spec(levels), np.random.default_rng(7)
    model = _analyse(ofat_table({}, noise=0.005, seeds=3, rng=rng, levels=levels), spec).model
    accuracy = 0.7 + rng.normal(0, 0.005, (len(model.converged), 4000))
    effects = pd.DataFrame(model.effects(accuracy), columns=list(model.factors)) / 0.005
    assert (effects.mean().abs() <= 0.05).all()
    first = effects.idxmax(axis=1).value_counts(normalize=True)
    assert len(first) == 7 and first.between(0.10, 0.19).all()


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.simulation
def test_one_seed_per_point_screens_at_the_nominal_rate_and_claims_nothing() -> None:
    # the quick budget's design: one seed per point, six at the baseline (5 df of pooled noise);
    # no level shows its own noise, so the pooled noise only screens: a planted effect is
    # likely influential, and no null study gets a claim
    planted = _analyse(ofat_table({"activation": -0.05}, noise=0.005, seeds=1,
                                  baseline_seeds=6))
    row = _row(planted, "activation")
    assert row["verdict"] == "likely influential" and (
        planted.ranking.iloc[0]["factor"] == "activation")
    assert re.fullmatch(r"influential under the noise pooled over the design points \(its "
                        r"largest difference from the baseline is at least 1 point\), but its "
                        r"levels tanh, gelu have fewer than two converged seeds, so their own "
                        r"noise is unknown: about \d+ seeds per design point at its levels "
                        r"relu and (tanh|gelu), at least \d+ at the others, would confirm it",
                        row["reason"])
    rng, rejected, screened, claimed = np.random.default_rng(11), [], [], []
    for _ in range(40):
        result = _analyse(ofat_table({}, noise=0.005, seeds=1, rng=rng, baseline_seeds=6))
        rejected.append((result.ranking["accuracy_p_holm"] < ALPHA).any())
        screened.append(result.ranking["verdict"].isin(LIKELY.values()).any())
        claimed.append(result.ranking["verdict"].isin(CLAIMS).any())
        assert not result.ranking["reason"].str.contains("cannot be measured").any()
    assert np.mean(rejected) <= 0.08 and not any(claimed)  # family-wise, 7 factors
    assert 0 < np.mean(screened) < 1  # null factors likely negligible in some studies


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.simulation
def test_a_three_point_effect_is_likely_in_three_of_four_studies_at_the_quick_design() -> None:
    # one seed per point and six at the baseline, sigma = 0.5 point, both other lr levels 3
    # points down: likely influential in >= 75% of studies; an analysis that never screens
    # passes every null check, not this one
    rng = np.random.default_rng(5)
    found = [_row(_analyse(ofat_table({"lr": -0.03}, noise=0.005, seeds=1, rng=rng,
                                      baseline_seeds=6)), "lr")["verdict"] == "likely influential"
             for _ in range(30)]
    assert np.mean(found) >= 0.75


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.simulation
def test_levels_three_times_as_noisy_as_the_rest_make_no_more_claims_than_the_rate() -> None:
    # the audit's case: lr=0.1 and tanh at 3x the seed std, 3 seeds per point and 6 at the
    # baseline, sigma = 2.3 points: under one pooled variance 20% of null studies got a claim
    # (and their factors' simultaneous intervals covered 75%)
    rng, claims, covered, noisy = np.random.default_rng(26), [], [], []
    for _ in range(30):
        table = seed_noise(ofat_table({}, noise=0.0, seeds=3, baseline_seeds=6), "unequal",
                           0.023, rng, noisy=("lr=0.1", "activation=tanh"))
        result = _analyse(table)
        claims.append(result.ranking["verdict"].isin(CLAIMS).any())
        diffs = result.differences
        each = (diffs["ci_low"] <= 0) & (diffs["ci_high"] >= 0)
        factor_covered = each.groupby(diffs["factor"]).all()  # all its levels at once
        covered += list(factor_covered)
        noisy += list(factor_covered[["lr", "activation"]])
    assert np.mean(claims) <= 0.07
    assert np.mean(covered) >= 0.93 and np.mean(noisy) >= 0.9


def test_a_diverged_seed_at_another_level_does_not_hide_a_planted_effect() -> None:
    trials = ofat_table({"lr=0.01": -0.03}, noise=0.005, seeds=6, diverged={"lr=0.1": [0]})
    result = _analyse(trials)
    lr = _row(result, "lr")
    assert lr["verdict"] == "influential" and lr["diverged"] == 1
    assert result.noise.pooled_std < 0.008  # the diverged trial is not in the noise floor
    levels = result.levels.set_index(["factor", "level"])
    assert levels.loc[("lr", 0.1), ["diverged", "trials", "n"]].tolist() == [1, 6, 5]
    assert levels.loc[("lr", 0.1), "rate_low"] < 1 / 6 < levels.loc[("lr", 0.1), "rate_high"]


def test_a_diverged_baseline_seed_neither_hides_an_effect_nor_makes_one() -> None:
    result = _analyse(ofat_table({"activation": -0.03}, noise=0.005, seeds=4,
                                 diverged={"baseline": [0]}))
    verdicts = result.ranking.set_index("factor")["verdict"]
    assert verdicts["activation"] == "influential"
    assert not verdicts.drop("activation").isin(CLAIMS).any()
    assert result.noise.pooled_std < 0.008 and result.noise.baseline_converged == 3


def test_divergence_is_its_own_outcome_and_can_make_a_factor_influential() -> None:
    # lr=0.1 diverges in every seed: no accuracy there, but a significant divergence rate
    trials = ofat_table({}, noise=0.005, seeds=8, diverged={"lr=0.1": list(range(8))})
    lr = _row(_analyse(trials), "lr")
    assert lr["verdict"] == "influential" and "diverges or stalls more often at 0.1" in lr["reason"]
    assert lr["divergence_p_holm"] < ALPHA
    few = _row(_analyse(ofat_table({}, noise=0.005, seeds=3,
                                   diverged={"lr=0.1": [0, 1, 2]})), "lr")
    assert few["verdict"] == "undetermined" and "seeds per design point" in few["reason"]


@pytest.mark.slow
def test_a_null_factor_with_ten_seeds_is_negligible() -> None:
    rng = np.random.default_rng(3)
    verdicts = [_row(_analyse(ofat_table({}, noise=0.005, seeds=10, rng=rng)), "lr")["verdict"]
                for _ in range(30)]
    assert verdicts.count("negligible") >= 24


def test_small_but_real_effect_is_called_small() -> None:
    pooling = _row(_analyse(ofat_table({"pooling": 0.005}, noise=0.001, seeds=5)), "pooling")
    assert pooling["accuracy_p_holm"] < ALPHA and pooling["verdict"] == "small"


def test_one_seed_gives_undetermined_verdicts_with_the_reason() -> None:
    result = _analyse(ofat_table({"lr": 0.05}, noise=0.01, seeds=1))
    assert set(result.ranking["verdict"]) == {"undetermined"}
    assert result.ranking["reason"].str.contains("noise cannot be measured").all()
    assert result.ranking["accuracy_p"].isna().all() and result.ranking["rank_low"].isna().all()
    assert result.levels["ci_low"].isna().all()


def test_a_factor_whose_other_levels_all_failed_stays_in_the_ranking() -> None:
    trials = ofat_table({}, noise=0.005, seeds=3)
    failed = trials["design_point"].str.startswith("dropout=")
    trials.loc[failed, ["state", "outcome", ACCURACY]] = ["FAIL", "failed", None]
    dropout = _row(_analyse(trials), "dropout")
    assert dropout["verdict"] == "no data" and pd.isna(dropout["rank"])
    assert dropout["reason"] == "all 6 of its non-baseline trials failed"


def test_one_seed_per_point_is_screened_by_the_pooled_linear_model() -> None:
    trials = ofat_table({"lr": 0.02}, noise=0.005, seeds=1, baseline_seeds=6)
    result = _analyse(trials)
    model = smf.ols(f"{ACCURACY} ~ C(design_point, Treatment('baseline'))",
                    data=trials.astype({ACCURACY: float})).fit()
    names = {p: f"C(design_point, Treatment('baseline'))[T.{p}]" for p in ("lr=0.01", "lr=0.1")}
    f_test = model.f_test([[float(name == n) for name in model.params.index]
                           for n in names.values()])
    assert _row(result, "lr")["accuracy_p"] == pytest.approx(float(f_test.pvalue), rel=1e-6)
    diffs = result.differences.set_index(["factor", "level"])
    for level, point in ((0.01, "lr=0.01"), (0.1, "lr=0.1")):
        assert diffs.loc[("lr", level), "difference"] == pytest.approx(model.params[names[point]])
        assert diffs.loc[("lr", level), "se"] == pytest.approx(model.bse[names[point]])
    assert result.noise.pooled_std == pytest.approx(np.sqrt(model.scale))
    assert not result.model.factors["lr"].own_variance


def test_replicated_levels_are_judged_by_their_own_noise() -> None:
    # lr=0.1 three times as noisy as the rest: its difference's standard error is its own
    # point's and the baseline's, each moderated toward the study's noise (PRIOR_DF_CAP df of
    # it at most: the points' variances differ by more than sampling explains), and its
    # interval is wider than the other level's
    rng = np.random.default_rng(4)
    trials = ofat_table({}, noise=0.005, seeds=3, baseline_seeds=6, rng=rng)
    noisy = trials["design_point"] == "lr=0.1"
    trials.loc[noisy, ACCURACY] = 0.7 + 3 * (trials.loc[noisy, ACCURACY] - 0.7)
    result = _analyse(trials)
    diffs = result.differences.set_index(["factor", "level"]).loc["lr"]
    seeds = trials.groupby("design_point")[ACCURACY]
    base = seeds.get_group("baseline")
    noise = result.noise
    assert 0 < noise.prior_df <= PRIOR_DF_CAP
    moderated = [(noise.prior_df * noise.prior_std ** 2 + (len(g) - 1) * g.var())
                 / (noise.prior_df + len(g) - 1) for g in (seeds.get_group("lr=0.01"),
                                                            seeds.get_group("lr=0.1"), base)]
    for level, variance in zip((0.01, 0.1), moderated, strict=False):
        own = seeds.get_group(f"lr={level}")
        assert diffs.loc[level, "se"] == pytest.approx(
            np.sqrt(variance / len(own) + moderated[2] / len(base)), rel=1e-9)
        assert diffs.loc[level, "difference"] == pytest.approx(own.mean() - base.mean())
    width = diffs["ci_high"] - diffs["ci_low"]
    # one critical value, each level's own (moderated) se: the noisy level's interval wider
    assert width[0.1] / width[0.01] == pytest.approx(diffs.loc[0.1, "se"] / diffs.loc[0.01, "se"])
    assert diffs.loc[0.1, "se"] > 1.2 * diffs.loc[0.01, "se"]
    assert result.model.factors["lr"].own_variance
    pooled = result.model.factors["lr"].screen  # the screening assumes one noise for both
    assert pooled["se"][0] == pytest.approx(pooled["se"][1])


def test_holm_matches_statsmodels_and_keeps_missing_values() -> None:
    p = pd.Series([0.01, np.nan, 0.04, 0.03, 0.2, 0.6])  # the last two adjust past 1: 1
    expected = multipletests(p.dropna(), method="holm")[1]
    assert holm(p).dropna().to_numpy() == pytest.approx(expected)
    assert np.isnan(holm(p)[1])
    assert list(holm(pd.Series([0.6, 0.7]))) == [1.0, 1.0]  # 1.2 and 0.7 -> capped at 1
    assert holm(pd.Series([], dtype=float)).empty  # nothing to test (e.g. no crossed pair)


def test_grid_levels_are_marginal_means_over_the_other_factors() -> None:
    result = _analyse(grid_table(interaction=0.0, noise=0.002), GRID)
    activation = _row(result, "activation")
    assert activation["verdict"] == "influential"
    assert activation["largest_difference"] == pytest.approx(0.02, abs=0.004)
    assert not result.ranking.set_index("factor").drop("activation")["verdict"].isin(
        CLAIMS).any()


def test_the_practical_threshold_decides_influential_or_small() -> None:
    trials = ofat_table({"activation": -0.03}, noise=0.002, seeds=5)
    assert _row(_analyse(trials), "activation")["verdict"] == "influential"
    strict = _row(_analyse(trials, practical_effect=0.05), "activation")
    assert strict["verdict"] == "small" and "5 points" in strict["reason"]


def test_the_analysis_tables_carry_every_factor_s_fitted_numbers() -> None:
    trials = ofat_table({"lr": -0.03}, noise=0.005, seeds=2, baseline_seeds=6,
                        diverged={"dropout=0.0": [0]})
    channels = trials.index[trials["design_point"].str.startswith("channels=")]
    trials.loc[channels, ["state", "outcome", ACCURACY]] = ["FAIL", "failed", None]  # no data
    trials.loc[trials.index[trials["design_point"] == "pooling=avg"][0],
               ["state", "outcome", ACCURACY]] = ["FAIL", "failed", None]
    analysis = rank_trials(trials, OFAT)
    ranking = analysis.ranking.set_index("factor")
    assert sorted(ranking.index) == sorted(LEVELS)  # the factor without data stops none after it
    assert ranking.loc["channels", "verdict"] == "no data"
    assert set(analysis.model.factors) == set(LEVELS) - {"channels"}  # fitted, every other
    assert analysis.pooled is True  # OFAT: one error over every design point
    assert ranking.loc["pooling", ["levels", "trials", "diverged", "failed"]].tolist() == [
        2, 7, 0, 1]  # its slice: the baseline's 6 seeds and avg's 2; one failed, no result
    assert ranking.loc["dropout", "diverged"] == 1
    assert np.isnan(ranking.loc["lr", "divergence_p"])  # nothing in lr's slice diverged
    # only the baseline diverged: every level's Fisher p is 1, and Bonferroni keeps it at 1
    baseline_diverged = ofat_table({}, noise=0.005, seeds=2, baseline_seeds=6,
                                   diverged={"baseline": [0]})
    assert (rank_trials(baseline_diverged, OFAT).ranking["divergence_p"] == 1.0).all()
    assert {str(ranking[c].dtype) for c in ("rank", "rank_low", "rank_high")} == {"Int64"}
    differences = analysis.differences
    assert list(differences.columns) == ["factor", "level", "difference", "se", "ci_low",
                                         "ci_high", "p"]
    model = analysis.model
    assert len(differences) == sum(len(f.others) for f in model.factors.values())
    for name, fit_ in model.factors.items():
        rows = differences[differences["factor"] == name]
        assert rows["level"].tolist() == list(fit_.others)
        assert rows["difference"].to_numpy() == pytest.approx(fit_.differences)
        assert rows["p"].to_numpy() == pytest.approx(fit_.p_each)
        half = fit_.q_effect * fit_.se
        assert rows["ci_low"].to_numpy() == pytest.approx(fit_.differences - half)
        assert rows["ci_high"].to_numpy() == pytest.approx(fit_.differences + half)
    measured = analysis.levels.dropna(subset=["mean"])
    assert set(measured["factor"]) == set(model.factors)  # channels: no accuracy, divergence only


def test_factors_with_equal_effects_share_the_best_rank() -> None:
    ranking = rank_trials(ofat_table({}, noise=0.0, seeds=2), OFAT).ranking
    assert ranking["rank"].tolist() == [1] * len(LEVELS)
    # and so do their rank intervals: every redraw ties them all at rank 1 (not 4, the mean)
    assert (ranking["rank_low"] == 1).all() and (ranking["rank_high"] == 1).all()


def test_rank_intervals_are_the_parametric_redraws_ranks_and_say_themselves() -> None:
    analysis = rank_trials(ofat_table({"lr": -0.02, "activation": -0.01}, noise=0.01, seeds=2,
                                      rng=np.random.default_rng(3)), OFAT)
    ranks = analysis.model.parametric_redraws().round(RANK_DECIMALS).rank(
        axis=1, ascending=False, method="min")
    ranking = analysis.ranking.set_index("factor")
    for factor in ranking.index:
        assert ranking.loc[factor, "rank_low"] == ranks[factor].quantile(0.025,
                                                                          interpolation="lower")
        assert ranking.loc[factor, "rank_high"] == ranks[factor].quantile(0.975,
                                                                           interpolation="higher")
    assert ranking["rank_high"].max() > ranking["rank_low"].min()  # not all one point
    row = analysis.ranking.iloc[0]
    assert rank_text(row) == f"{row['rank']} ({row['rank_low']}-{row['rank_high']})"
    no_interval = row.copy()
    no_interval[["rank_low", "rank_high"]] = pd.NA
    assert rank_text(no_interval) == str(row["rank"])
    assert rank_text(pd.Series({"rank": pd.NA, "rank_low": pd.NA, "rank_high": pd.NA})) == "n/a"


def test_a_level_whose_trials_all_diverged_keeps_its_divergence_row_with_no_accuracy() -> None:
    trials = ofat_table({}, noise=0.01, seeds=2, diverged={"lr=0.1": [0, 1]})
    levels = rank_trials(trials, OFAT).levels.set_index(["factor", "level"])
    assert levels.loc[("lr", 0.1), "n"] == 0 and np.isnan(levels.loc[("lr", 0.1), "mean"])
    assert levels.loc[("lr", 0.1), ["diverged", "trials"]].tolist() == [2, 2]
    assert str(levels["n"].dtype) == "int64"



def test_a_study_where_every_trial_diverged_keeps_every_table_s_columns() -> None:
    trials = ofat_table({}, noise=0.01, seeds=2)
    trials[["outcome", ACCURACY]] = ["diverged", 0.1]
    analysis = rank_trials(trials, OFAT)
    assert analysis.model.factors == {} and analysis.differences.empty
    assert list(analysis.differences.columns) == ["factor", "level", "difference", "se",
                                                  "ci_low", "ci_high", "p"]
    assert (analysis.ranking["diverged"] == analysis.ranking["trials"]).all()


@pytest.mark.parametrize("tail", [24, 25])
def test_rank_intervals_leave_out_less_than_2_5_percent_of_the_redraws_at_each_end(
        monkeypatch: pytest.MonkeyPatch, tail: int) -> None:
    # 1000 redraws ranking the factors in LEVELS order; in `tail` of them the first falls to
    # rank 2, and in another `tail` the fifth ties with the first for rank 1 (a gap of 4 ranks)
    factors = list(LEVELS)
    effects = np.tile(np.arange(len(factors), 0, -1, dtype=float), (1000, 1))
    effects[:tail, [0, 1]] = effects[:tail, [1, 0]]
    effects[-tail:, 4] = effects[-tail:, 0]
    monkeypatch.setattr(FittedModel, "parametric_redraws",
                        lambda self: pd.DataFrame(effects, columns=factors))
    analysis = rank_trials(ofat_table({}, noise=0.01, seeds=2), OFAT)
    inside = tail >= 25  # a rank held by 2.5% of the redraws stays inside the interval
    intervals = analysis.ranking.set_index("factor")[["rank_low", "rank_high"]]
    assert intervals.loc[factors[0]].tolist() == [1, 2 if inside else 1]
    assert intervals.loc[factors[4]].tolist() == [1 if inside else 5, 5]
