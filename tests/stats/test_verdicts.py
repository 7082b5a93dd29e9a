"""Where each verdict rule (study.stats.ranking) tips over, on planted tables whose answer is
worked out by hand: one factor, lr, at two levels beside the baseline, every point's seeds at
exactly the planted mean plus a fixed pattern of sample std sigma, so that the difference from
the baseline, its standard error and the degrees of freedom are known; the critical values come
from study.stats.critical's Behrens-Fisher law (checked against its exact values in
test_critical.py). Each rule is tested on both sides of its boundary."""

import functools
import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from study.stats.advice import (
    MAX_DIVERGENCE_SEEDS,
    MAX_SEEDS,
    PLANNING_BOUND,
    POWER,
    Plan,
    _seeds_to_decide,
    advice_text,
    advised_plan,
    divergence_seeds,
)
from study.stats.critical import (
    FIDUCIAL_DRAWS,
    PLANNING_DRAWS,
    fiducial_max,
    fiducial_quantile,
)
from study.stats.fit import ALPHA, FactorFit
from study.stats.frames import ACCURACY
from study.stats.ranking import rank_trials
from study.stats.synthetic import ofat_spec, ofat_table, sampled_table, table_spec
from study.stats.variance import PRIOR_DF_CAP

LEVELS = {"lr": [0.01, 0.1]}
SPEC = ofat_spec(LEVELS)
EPSILON = 1e-4  # how far from a boundary the threshold is put: far above the numbers' errors


def _pattern(seeds: int) -> np.ndarray:
    """`seeds` deviations of mean 0 and sample std 1 (one seed: none)."""
    pattern = np.arange(seeds) - (seeds - 1) / 2
    return pattern / pattern.std(ddof=1) if seeds > 1 else pattern


def planted(shifts: dict[str, float], sigma: float, seeds: int,
            diverged: dict[str, list[int]] | None = None) -> pd.DataFrame:
    """Every point's seeds at 0.7 + its shift + sigma * a pattern of mean 0 and sample std 1."""
    table = ofat_table(shifts, noise=0.0, seeds=seeds, levels=LEVELS, diverged=diverged)
    converged = table["outcome"] == "complete"
    table.loc[converged, ACCURACY] += sigma * _pattern(seeds)[
        table.loc[converged, "seed"].astype(int)]
    return table


def planted_points(shifts: dict[str, float], points: dict[str, tuple[int, float]],
                   levels: dict[str, list] = LEVELS) -> pd.DataFrame:
    """Like `planted`, each design point with its own (seeds, sigma) (points: id -> them)."""
    table = ofat_table(shifts, noise=0.0, seeds=max(seeds for seeds, _ in points.values()),
                       levels=levels)
    keep = np.zeros(len(table), dtype=bool)
    for point, (seeds, sigma) in points.items():
        rows = (table["design_point"] == point) & (table["seed"] < seeds)
        table.loc[rows, ACCURACY] += sigma * _pattern(seeds)
        keep |= rows
    return table[keep]


CONTRASTS = np.array([[-1.0, 1.0, 0.0], [-1.0, 0.0, 1.0]])  # cells: baseline, lr=0.01, lr=0.1


def critical(sigma: float, seeds: int, level: float, draws: int = FIDUCIAL_DRAWS) -> float:
    """The simultaneous critical value of both levels' differences when every point has
    `seeds` seeds of sample std sigma: the Behrens-Fisher law, each cell on its seeds - 1 df
    and the PRIOR_DF_CAP df the study's noise lends it (three points of one variance: the
    moderated variance is theirs)."""
    scaled = CONTRASTS * sigma / np.sqrt(seeds)
    return fiducial_quantile(fiducial_max(scaled, np.full(3, seeds - 1.0 + PRIOR_DF_CAP), draws),
                             level)


def by_hand(shifts: dict[str, float], sigma: float, seeds: int, level: float) -> tuple:
    """(largest |difference|, the effect's lower bound, the equivalence bound) worked out:
    every point's sample std sigma over `seeds` seeds, so each difference's standard error is
    sigma sqrt(2 / seeds)."""
    d = np.array([shifts.get(f"lr={v}", 0.0) for v in LEVELS["lr"]])
    se, q = sigma * np.sqrt(2 / seeds), critical(sigma, seeds, level)
    return np.abs(d).max(), np.max(np.abs(d) - q * se), np.max(np.abs(d) + q * se)


def planned_half_width(variance: np.ndarray, df: np.ndarray, n: np.ndarray, seeds: int,
                       level: float = 0.95, focus: int | None = None, others: int = 0,
                       floor: float = 0.0, prior_df: float = PRIOR_DF_CAP) -> float:
    """The advice's planning rule written out: at `seeds` seeds per point (a point with more
    keeps them), the larger of the two differences' (q + z) * se, q the Behrens-Fisher law's
    simultaneous critical value on the df those seeds bring, z the POWER point of the same law
    (both errors small at once), each point's variance raised to its upper PLANNING_BOUND
    confidence bound on its df, at least `floor`, the law's df those seeds' and the `prior_df`
    the study's noise lends each point (none without a prior). With a `focus` difference: only
    its points get the seeds, the other at least `others`, and only its (q + z) * se counts, z the
    normal's POWER point (one error, one side)."""
    growing = np.ones(3, bool) if focus is None else CONTRASTS[focus] != 0
    n = np.where(growing, np.maximum(n, seeds), np.maximum(n, others))
    bound = np.maximum(variance * df / sps.chi2.ppf(1 - PLANNING_BOUND, df), floor)
    scaled = CONTRASTS * np.sqrt(bound / n)
    draws = fiducial_max(scaled, n - 1.0 + prior_df, PLANNING_DRAWS)
    q = fiducial_quantile(draws, level)
    se = np.sqrt((scaled ** 2).sum(axis=1))
    if focus is None:
        return (q + fiducial_quantile(draws, POWER)) * se.max()
    return (q + sps.norm.ppf(POWER)) * se[focus]


def assert_focused_plan(fit: FactorFit, variance: np.ndarray, df: np.ndarray, gap: float,
                        prior_df: float = PRIOR_DF_CAP) -> Plan:
    """The advice above the threshold by its defining property, as for an effect for sure
    (its test rejects no effect; `advised` adds what an uncertain one gets): the level of the
    largest difference and the baseline get the fewest seeds whose difference clears the gap
    (one fewer does not, unless it is two, the fewest that show a point's noise), the other
    level the plan's `others`, and the plan costs no more trials than every point at the seeds
    that clear every difference."""
    plan = advised_plan(replace(fit, p=0.0), 0.01, ALPHA)
    focus = int(np.argmax(np.abs(fit.differences)))
    top, other = ("lr=0.1", "lr=0.01") if focus else ("lr=0.01", "lr=0.1")
    assert plan.focus == ([0.05, 0.1] if focus else [0.01, 0.05])
    assert plan.cells == {"baseline": max(plan.seeds, fit.n[0]), top: max(plan.seeds, 1),
                          other: max(plan.others, fit.n[2 - focus])}
    half = functools.partial(planned_half_width, variance, df, fit.n, focus=focus,
                             others=plan.others, prior_df=prior_df)
    assert half(plan.seeds) < gap and (plan.seeds == 2 or gap <= half(plan.seeds - 1))
    uniform = _seeds_to_decide(fit, 0.95, gap)
    assert uniform is None or sum(plan.cells.values()) <= 3 * max(uniform, *fit.n)
    return plan


def advised(fit: FactorFit, focused: Plan) -> Plan:
    """The advice for `fit` from its plan as an effect for sure (`assert_focused_plan`): where
    its test does not reject no effect, every point also gets the seeds that would show it
    negligible were there none (every level's 90% interval within the threshold, planned at
    an effect of zero), the plan's `others` at least those."""
    absent = _seeds_to_decide(fit, 1 - 2 * ALPHA, 0.01)
    if fit.p < ALPHA:
        return focused
    if absent >= focused.seeds:
        return Plan({cell: max(absent, int(n)) for cell, n in zip(fit.cells, fit.n, strict=True)},
                    absent, list(fit.levels))
    return Plan({cell: max(n, absent) for cell, n in focused.cells.items()}, focused.seeds,
                focused.focus, max(focused.others, absent))


def verdict(table: pd.DataFrame, threshold: float) -> pd.Series:
    return rank_trials(table, SPEC, threshold).ranking.set_index("factor").loc["lr"]


def test_the_fit_is_the_one_worked_out_by_hand() -> None:
    shifts, sigma, seeds = {"lr=0.1": -0.04, "lr=0.01": 0.01}, 0.01, 4
    row = verdict(planted(shifts, sigma, seeds), 0.01)
    _, low, high = by_hand(shifts, sigma, seeds, 0.95)
    _, _, equivalence = by_hand(shifts, sigma, seeds, 0.90)
    assert row["largest_difference"] == pytest.approx(-0.04, abs=1e-12)
    assert (row["effect_ci_low"], row["effect_ci_high"]) == pytest.approx((low, high), abs=1e-9)
    assert row["equivalence_bound"] == pytest.approx(equivalence, abs=1e-9)
    assert row["raw_range"] == pytest.approx(0.05, abs=1e-12)  # 0.01 above, 0.04 below
    assert (row["best_level"], row["worst_level"], row["largest_level"]) == (0.01, 0.1, 0.1)
    null = verdict(planted({}, sigma, seeds), 0.01)  # no level differs: nothing to clear
    assert null["effect_ci_low"] == 0 and null["effect"] == 0
    lone = verdict(planted(shifts, sigma, 1), 0.01)  # one seed everywhere: no noise estimate
    assert np.isnan(lone["effect"]) and lone["reason"] == (
        "no design point has two converged seeds, so the noise cannot be measured: run more "
        "seeds")


def test_influential_needs_the_whole_interval_of_the_effect_above_the_threshold() -> None:
    shifts, sigma, seeds = {"lr=0.1": -0.04}, 0.01, 4
    table, (_, low, _) = planted(shifts, sigma, seeds), by_hand(shifts, sigma, seeds, 0.95)
    assert 0.01 < low < 0.03  # significant, its lower bound inside the effect
    below = verdict(table, low - EPSILON)
    assert below["verdict"] == "influential"
    assert verdict(table, 0.01)["reason"] == (
        "its largest difference from the baseline is at least 1 point")
    assert verdict(table, below["effect_ci_low"])["verdict"] == "influential"  # at least: on it
    above = verdict(table, 0.031)
    assert above["verdict"] == "undetermined" and re.fullmatch(
        r"the interval of its effect straddles 3\.1 points: (about \d+ seeds per design point "
        r"would decide it|more than \d+ seeds per design point would be needed)", above["reason"])


def test_small_needs_every_level_within_the_threshold_by_the_90_percent_intervals() -> None:
    shifts, sigma, seeds = {"lr=0.1": -0.004}, 0.001, 4
    table = planted(shifts, sigma, seeds)
    _, low, _ = by_hand(shifts, sigma, seeds, 0.95)
    _, _, equivalence = by_hand(shifts, sigma, seeds, 0.90)
    assert verdict(table, 0.01)["accuracy_p_holm"] < 0.05 and low < equivalence - EPSILON
    small = verdict(table, 0.01)
    assert (small["verdict"], small["reason"]) == (
        "small", "it differs from the baseline, but every level by less than 1 point")
    assert verdict(table, equivalence + EPSILON)["verdict"] == "small"
    # inside the bound from the levels' own noise, what the pooled noise shows is likely
    assert verdict(table, small["equivalence_bound"])["verdict"] == "likely small"  # less than
    fit = rank_trials(table, SPEC, 0.01).model.factors["lr"]
    pooled = np.max(np.abs(fit.differences) + fit.screen["q_equivalence"] * fit.screen["se"])
    assert pooled < equivalence  # the pooled noise's 9 df against the cells' 3 + the prior's
    near = verdict(table, (pooled + equivalence) / 2)
    assert near["verdict"] == "likely small" and near["reason"].startswith(
        "small under the noise pooled over the design points (it differs from the "
        "baseline, but every level by less than")


def test_negligible_needs_every_level_shown_within_the_threshold() -> None:
    shifts, sigma, seeds = {"lr=0.1": 0.001}, 0.002, 6
    table = planted(shifts, sigma, seeds)
    _, _, equivalence = by_hand(shifts, sigma, seeds, 0.90)
    assert verdict(table, 0.01)["accuracy_p_holm"] > 0.05
    negligible = verdict(table, 0.02)
    assert (negligible["verdict"], negligible["reason"]) == (
        "negligible", "every level is within 2 points of the baseline (equivalence test) and "
                      "diverges or stalls no more often")
    assert verdict(table, equivalence + EPSILON)["verdict"] == "negligible"
    assert verdict(table, negligible["equivalence_bound"])["verdict"] == "likely negligible"
    near = verdict(table, equivalence - EPSILON)
    assert near["verdict"] == "likely negligible" and re.fullmatch(
        r"negligible under the noise pooled over the design points \(every level is "
        r"within [\d.]+ points of the baseline \(equivalence test\) and diverges or stalls no "
        r"more often\), but not yet under its levels' own noise, which may differ from the rest: "
        r"about \d+ seeds per design point would confirm it", near["reason"])


def test_not_significant_alone_is_never_negligible() -> None:
    # underpowered: a real two-point loss that two seeds cannot show
    row = verdict(planted({"lr=0.1": -0.02}, 0.02, 2), 0.01)
    assert row["accuracy_p_holm"] > 0.05 and row["verdict"] == "undetermined"
    # no accuracy difference at all, but a level diverges more often, not yet significantly
    row = verdict(planted({}, 0.001, 6, diverged={"lr=0.1": [0]}), 0.01)
    assert row["equivalence_bound"] < 0.01 and row["divergence_p_holm"] > 0.05
    assert row["verdict"] == "undetermined" and row["reason"] == (
        "some level diverges or stalls more often than the baseline, not yet significantly: "
        "about 33 seeds per design point would decide it")
    # at 1/6 against 0: 6 of 33 against 0 of 33 gives Fisher's p < 0.05 / 2 tests, 5 of 32 not
    assert sps.fisher_exact([[6, 27], [0, 33]]).pvalue < 0.025 <= sps.fisher_exact(
        [[5, 27], [0, 32]]).pvalue
    # 3 of 3 diverged at one level, the other compared in accuracy: two tests, so Fisher's p
    # must be below 0.025: 5 seeds (p = 0.008), not 4 (p = 0.029)
    row = verdict(planted({}, 0.001, 3, diverged={"lr=0.1": [0, 1, 2]}), 0.01)
    assert row["reason"] == ("some level diverges or stalls more often than the baseline, not yet "
                             "significantly: about 5 seeds per design point would decide it")


def test_a_significant_divergence_difference_is_influential_and_one_seed_less_is_not() -> None:
    # six of six seeds diverge at lr=0.1, none at the baseline: Fisher's p = 0.0022; the
    # factor's divergence test is Bonferroni over its two levels' Fisher tests, then Holm's
    # step over the factor's two tests (accuracy: p = 1 here) doubles it again
    table = planted({}, 0.001, 6, diverged={"lr=0.1": list(range(6))})
    row = verdict(table, 0.01)
    fisher = sps.fisher_exact([[6, 0], [0, 6]]).pvalue
    assert row["verdict"] == "influential"
    assert "diverges or stalls more often at 0.1 (6/6" in row["reason"]
    assert row["divergence_p"] == pytest.approx(2 * fisher) and row["accuracy_p"] == 1
    assert row["divergence_p_holm"] == pytest.approx(4 * fisher)
    # five of six: Fisher's p = 0.015 alone, 0.061 after both steps
    five = verdict(planted({}, 0.001, 6, diverged={"lr=0.1": list(range(5))}), 0.01)
    assert 4 * sps.fisher_exact([[5, 1], [0, 6]]).pvalue == pytest.approx(
        five["divergence_p_holm"]) and five["divergence_p_holm"] > 0.05
    assert five["verdict"] == "undetermined"


def test_levels_report_wilson_intervals_fisher_and_adjusted_p_exactly() -> None:
    table = planted({"lr=0.1": -0.015}, 0.01, 6, diverged={"lr=0.01": [0, 1]})
    result = rank_trials(table, SPEC, 0.01)
    levels = result.levels.set_index(["factor", "level"])
    low, high = proportion_confint(2, 6, alpha=0.05, method="wilson")
    assert (levels.loc[("lr", 0.01), "rate_low"], levels.loc[("lr", 0.01), "rate_high"]) == \
        pytest.approx((low, high), abs=1e-12)
    assert levels.loc[("lr", 0.01), "fisher_p"] == pytest.approx(
        sps.fisher_exact([[2, 4], [0, 6]]).pvalue)
    # the per-level adjusted p: P(max |T| >= its |t|), T the differences standardized under
    # the Behrens-Fisher law (each point's mean off by its standard error, from its moderated
    # variance, times a Student t on its moderated df), here by an independent Monte Carlo of
    # 400,000 draws
    diffs = result.differences.set_index("level")
    t = (diffs["difference"].abs() / diffs["se"]).to_numpy()
    assert 2 < t.max() < 4  # p near 0.05
    rng, seeds, fit = np.random.default_rng(99), {}, result.model.factors["lr"]
    for point in ("baseline", "lr=0.01", "lr=0.1"):
        at = fit.cells.index(point)
        seeds[point] = np.sqrt(fit.moderated[at] / fit.n[at]) * rng.standard_t(
            fit.moderated_df[at], 400_000)
    base = seeds.pop("baseline")
    biggest = np.max([np.abs(draws - base) / se
                      for draws, se in zip(seeds.values(), diffs["se"], strict=True)], axis=0)
    for level, t_level in zip(LEVELS["lr"], t, strict=True):
        exact = (biggest >= t_level).mean()
        error = 4 * np.sqrt(exact * (1 - exact) / FIDUCIAL_DRAWS)  # the code's Monte Carlo
        assert diffs.loc[level, "p"] == pytest.approx(exact, abs=error)
    assert verdict(table, 0.01)["accuracy_p"] == pytest.approx(diffs["p"].min(), rel=1e-12)


def test_the_seeds_that_would_decide_it_decide_it_and_one_fewer_does_not() -> None:
    # the plan: the selection-corrected effect is the truth (the largest observed difference
    # overstates it), each point's variance its upper confidence bound; at the advised seeds
    # the effect's interval clears the threshold with the chance POWER, at one fewer it does
    # not (planned_half_width: the rule written out)
    shifts, sigma = {"lr=0.1": -0.04}, 0.015
    table = planted(shifts, sigma, 2)
    row = verdict(table, 0.01)
    fit = rank_trials(table, SPEC, 0.01).model.factors["lr"]
    planned = row["effect"]
    assert row["verdict"] == "undetermined" and 0.01 < planned == fit.corrected < 0.04
    plan = assert_focused_plan(fit, np.full(3, sigma ** 2), np.full(3, 1.0), planned - 0.01)
    # one seed each besides the first cannot rule out no effect: the advice also holds the
    # seeds that would show none
    assert fit.p > ALPHA and advised_plan(fit, 0.01, ALPHA) == advised(fit, plan) != plan
    assert row["reason"].endswith(advice_text(advised(fit, plan), "seeds per design point"))

    def half(seeds: int, level: float = 0.95) -> float:  # 2 seeds of sample std sigma each
        return planned_half_width(np.full(3, sigma ** 2), np.full(3, 1.0), fit.n, seeds, level)

    # the same truth planted with the advised seeds is decided
    points = {point: (seeds, sigma) for point, seeds in advised(fit, plan).cells.items()}
    assert verdict(planted_points(shifts, points), 0.01)["verdict"] == "influential"
    # one seed more is enough, and the search ends at MAX_SEEDS: exactly there, or beyond;
    # the advice is always more seeds than the fewest today, however wide the gap
    assert _seeds_to_decide(fit, 0.95, half(3) * 1.0001) == _seeds_to_decide(fit, 0.95, 1) == 3
    assert _seeds_to_decide(fit, 0.95, half(3) * 0.9999) == 4
    assert _seeds_to_decide(fit, 0.95, half(MAX_SEEDS) * 1.0001) == MAX_SEEDS
    assert _seeds_to_decide(fit, 0.95, half(MAX_SEEDS) * 0.9999) is None
    # below the threshold once the selection is taken off (to zero, or not): every level
    # shown within the threshold by the 90% intervals at the advised seeds
    for shift, quiet in ((0.002, 0.004), (0.006, 0.002)):
        row = verdict(planted({"lr=0.1": shift}, quiet, 2), 0.01)
        assert row["verdict"] == "undetermined" and 0 <= row["effect"] < shift
        needed = int(row["reason"].split("about ")[1].split(" ")[0])
        quiet_half = functools.partial(planned_half_width, np.full(3, quiet ** 2),
                                       np.full(3, 1.0), fit.n, level=0.90)
        assert quiet_half(needed) < 0.01 - row["effect"] <= quiet_half(needed - 1)


def test_a_point_whose_seeds_happen_to_agree_is_planned_at_the_pooled_noise() -> None:
    # three baseline seeds that agree (luck, or heavy-tailed noise whose bad seed has not come
    # yet) and a seed std of 1 point at both levels: the baseline is planned at the pooled
    # variance's upper bound, not at its own (almost none), which would advise fewer seeds
    points = {"baseline": (3, 1e-6), "lr=0.01": (3, 0.01), "lr=0.1": (3, 0.01)}
    table = planted_points({}, points)
    row = verdict(table, 0.01)
    fit = rank_trials(table, SPEC, 0.01).model.factors["lr"]
    assert row["verdict"] == "undetermined" and row["effect"] == 0 and fit.df == 6
    needed = int(row["reason"].split("about ")[1].split(" ")[0])
    variance, df = np.array([1e-12, 1e-4, 1e-4]), np.full(3, 2.0)
    floor = fit.s ** 2 * fit.df / sps.chi2.ppf(1 - PLANNING_BOUND, fit.df)
    half = functools.partial(planned_half_width, variance, df, fit.n, level=0.90)
    assert half(needed, floor=floor) < 0.01 <= half(needed - 1, floor=floor)
    assert half(needed - 1) < 0.01  # its own variance's bound alone would advise fewer


@pytest.mark.parametrize(("diverged", "why"), [
    ({"baseline": [0, 1, 2], "lr=0.01": [0, 1, 2], "lr=0.1": [0, 1, 2]},
     "none of its trials converged, so no accuracy can be compared"),
    ({"baseline": [0, 1, 2]}, "its baseline level has no converged trial, so no difference from "
                              "the baseline is defined"),
    ({"lr=0.01": [0, 1, 2], "lr=0.1": [0, 1, 2]}, "only its level 0.05 has converged trials")])
def test_a_factor_without_an_accuracy_comparison_says_why_and_what_would_decide_it(
        diverged, why) -> None:
    row = verdict(planted({}, 0.001, 3, diverged=diverged), 0.01)
    assert row["verdict"] == "undetermined" and np.isnan(row["accuracy_p"])
    if len(diverged) == 3:  # every level diverges alike: no number of seeds tells them apart
        assert row["reason"] == (
            f"{why}; divergence does not yet differ significantly: more than "
            f"{MAX_DIVERGENCE_SEEDS} seeds per design point would be needed")
        return
    # 3 of 3 against 0 of 3 diverged: Fisher's p = 0.1; with one test in the family, 4 seeds
    # would make it 0.029 < 0.05 (the advice's defining property: 4 decide, 3 do not)
    assert sps.fisher_exact([[4, 0], [0, 4]]).pvalue < 0.05 <= sps.fisher_exact(
        [[3, 0], [0, 3]]).pvalue
    assert row["reason"] == (f"{why}; divergence does not yet differ significantly: about 4 "
                             "seeds per design point would decide it")


def test_a_factor_without_a_finished_trial_at_its_levels_has_no_data_and_says_why() -> None:
    table = planted({}, 0.001, 3)
    others = table.index[table["design_point"] != "baseline"]
    table.loc[others, ["state", "outcome", ACCURACY]] = ["RUNNING", "running", None]
    table.loc[others[0], ["state", "outcome"]] = ["FAIL", "failed"]
    row = verdict(table, 0.01)
    assert (row["verdict"], row["reason"]) == ("no data",
                                               "no finished trial at a non-baseline level yet")
    table.loc[others, ["state", "outcome"]] = ["FAIL", "failed"]
    assert verdict(table, 0.01)["reason"] == "all 6 of its non-baseline trials failed"


def test_without_a_finished_baseline_trial_nothing_is_compared_and_it_says_so() -> None:
    table = planted({"lr=0.1": -0.05}, 0.001, 3)
    baseline = table.index[table["design_point"] == "baseline"]
    table.loc[baseline, ["state", "outcome", ACCURACY]] = ["RUNNING", "running", None]
    row = verdict(table, 0.01)
    assert (row["verdict"], row["reason"]) == (
        "undetermined", "its baseline level has no converged trial, so no difference from the "
                        "baseline is defined; nor is divergence (no finished trial at the "
                        "baseline level)")


def test_equal_accuracies_have_no_defined_adjusted_p() -> None:
    table = planted({}, 0.0, 3)  # no difference, no noise: 0 / 0
    for study in (table, _only_seeds(table, "lr=0.1", [0])):  # own noise, then the pooled
        result = rank_trials(study, SPEC, 0.01)
        assert result.model.factors["lr"].own_variance == (study is table)
        assert result.differences["p"].isna().all()


def test_the_divergence_advice_ends_at_its_cap_exactly() -> None:
    # against a baseline that never diverges, 6 diverged of n is significant (Fisher, alone)
    # where 5 is not, so a rate r is decided first at the n where round(r n) reaches 6
    cap = MAX_DIVERGENCE_SEEDS
    assert sps.fisher_exact([[6, cap - 6], [0, cap]]).pvalue < 0.05 < \
        sps.fisher_exact([[5, cap - 5], [0, cap]]).pvalue

    def advice(rate: float) -> int | None:
        return divergence_seeds(pd.DataFrame({"baseline": [True, False], "rate": [0.0, rate],
                                               "trials": [3, 3]}), 1, ALPHA)

    assert advice(5.5 / (cap - 0.4)) == cap
    assert advice(5.5 / (cap + 0.6)) is None


def test_a_sampled_design_s_advice_is_in_trials_per_level() -> None:
    # no design point is replicated: each factor's level bins get a one-way model of their own
    space = table_spec("optuna", {"lr": [0.001, 0.5], "activation": ["relu", "tanh"]})
    ranking = rank_trials(sampled_table(space, 40, 0.01, np.random.default_rng(0)), space,
                          0.01).ranking
    undecided = ranking.loc[ranking["verdict"] == "undetermined", "reason"]
    assert len(undecided) and undecided.str.fullmatch(
        r"the interval of its effect straddles 1 point: (about \d+ trials per level would "
        r"decide it|more than \d+ trials per level would be needed)").all()


def _only_seeds(table: pd.DataFrame, point: str, seeds: list[int]) -> pd.DataFrame:
    return table[(table["design_point"] != point) | table["seed"].isin(seeds)]


def test_a_level_without_two_converged_seeds_is_named_and_its_factor_only_likely() -> None:
    table = planted({"lr": -0.08}, 0.002, 3)
    confirm = ("about {} seeds per design point at its levels {}, at least {} at the others, "
               "would confirm it")
    looks = ("influential under the noise pooled over the design points (its largest "
             "difference from the baseline is at least 1 point), but ")
    for kept, text in (({"lr=0.1": [0]}, "its level 0.1 has fewer than two converged seeds, so "
                                         "its own noise is unknown: "),
                       ({"lr=0.1": [0], "lr=0.01": [1]},
                        "its levels 0.01, 0.1 have fewer than two converged seeds, so their own "
                        "noise is unknown: ")):
        short = table
        for point, seeds in kept.items():
            short = _only_seeds(short, point, seeds)
        row = verdict(short, 0.01)
        fit = rank_trials(short, SPEC, 0.01).model.factors["lr"]
        assert not fit.own_variance and fit.unreplicated_levels() == sorted(
            float(p.split("=")[1]) for p in kept)
        # the advice by its defining property: each replicated point's own variance, the
        # pooled one at a one-seed point (its own is unknown)
        variance = np.where(fit.n >= 2, fit.variance, fit.s ** 2)
        df = np.where(fit.n >= 2, fit.n - 1, fit.df)
        plan = assert_focused_plan(fit, variance, df, row["effect"] - 0.01, prior_df=0.0)
        half = functools.partial(planned_half_width, variance, df, fit.n, prior_df=0.0)
        assert _seeds_to_decide(fit, 0.95, half(6) * 1.0001) == 6
        assert (row["verdict"], row["reason"]) == (
            "likely influential", looks + text + confirm.format(
                plan.seeds, " and ".join(map(str, plan.focus)), plan.others))
    two = rank_trials(_only_seeds(table, "lr=0.1", [0, 1]), SPEC, 0.01).model.factors["lr"]
    assert two.own_variance and two.unreplicated_levels() == []  # two seeds show their noise


def test_a_level_noisier_than_the_rest_is_judged_by_its_own_noise() -> None:
    # lr=0.1 five points down, at a sample std of 2 points over 2 seeds; the baseline (6 seeds)
    # and lr=0.01 (3 seeds) at 0.1 point: the noise pooled over the points (8 df) shows an
    # influential loss, lr=0.1's own noise (1 df) does not yet, moderated or not: likely
    # influential, and the seeds per point that would confirm it planned on each point's own
    # variance
    points = {"baseline": (6, 0.001), "lr=0.01": (3, 0.001), "lr=0.1": (2, 0.02)}
    table = planted_points({"lr=0.1": -0.05}, points)
    result = rank_trials(table, SPEC, 0.01)
    fit, row = result.model.factors["lr"], result.ranking.set_index("factor").loc["lr"]
    variance = np.array([sigma ** 2 for _, sigma in points.values()])
    n = np.array([seeds for seeds, _ in points.values()])
    assert fit.own_variance and fit.variance == pytest.approx(variance, rel=1e-9)
    # its moderated variance: the prior's df (estimated: the points' variances differ far
    # more than sampling explains, so fewer than the cap) toward the study's noise
    prior = result.model.noise.prior_std ** 2
    moderated = (fit.prior_df * prior + variance * (n - 1)) / (fit.prior_df + n - 1)
    assert 0 < fit.prior_df < PRIOR_DF_CAP and fit.moderated == pytest.approx(moderated, rel=1e-9)
    assert result.differences.set_index("level").loc[0.1, "se"] == pytest.approx(
        np.sqrt(fit.moderated[2] / 2 + fit.moderated[0] / 6), rel=1e-9)
    assert fit.screen["p"] < 0.01 < fit.p  # the pooled F-test, the levels' own law
    plan = advised(fit, assert_focused_plan(fit, variance, n - 1.0, row["effect"] - 0.01,
                                            fit.prior_df))
    assert row["verdict"] == "likely influential" and row["reason"] == (
        "influential under the noise pooled over the design points (its largest "
        "difference from the baseline is at least 1 point), but not yet under its levels' own "
        "noise, which may differ from the rest: "
        + advice_text(plan, "seeds per design point", "confirm"))
    assert plan.others is None  # showing no effect needs more seeds than showing this one


def test_a_factor_with_a_one_seed_level_gets_dunnett_s_p_values_on_the_pooled_noise() -> None:
    # lr=0.1 keeps one seed: the differences are judged under the noise pooled over the
    # replicated points, which is scipy's Dunnett test of the same samples (its error pooled
    # over every group; a one-seed group adds nothing to it)
    table = _only_seeds(planted({"lr=0.1": -0.006, "lr=0.01": 0.003}, 0.004, 3), "lr=0.1", [2])
    result = rank_trials(table, SPEC, 0.01)
    assert not result.model.factors["lr"].own_variance
    samples = {point: table.loc[table["design_point"] == point, ACCURACY].to_numpy()
               for point in ("baseline", "lr=0.01", "lr=0.1")}
    dunnett = sps.dunnett(samples["lr=0.01"], samples["lr=0.1"], control=samples["baseline"],
                          random_state=0)
    p = result.differences.set_index("level")["p"]
    assert 0.01 < dunnett.pvalue.min() < dunnett.pvalue.max() < 0.9  # neither end
    assert p.loc[[0.01, 0.1]].to_numpy() == pytest.approx(dunnett.pvalue, abs=1e-3)


def test_a_significant_divergence_needs_no_level_s_own_noise() -> None:
    # 6 of 7 seeds diverge at lr=0.1, whose one converged seed cannot show its own noise: the
    # divergence test (Fisher) needs no variance, so the factor is influential, not likely
    table = planted({}, 0.001, 7, diverged={"lr=0.1": list(range(6))})
    result = rank_trials(table, SPEC, 0.01)
    row = result.ranking.set_index("factor").loc["lr"]
    assert not result.model.factors["lr"].own_variance and row["divergence_p_holm"] < 0.05
    assert (row["verdict"], row["reason"]) == (
        "influential", "diverges or stalls more often at 0.1 (6/7 trials) than at the baseline")


def test_a_factor_with_a_one_seed_level_is_never_claimed_whatever_its_holm_step() -> None:
    # two factors: lr has its own noise (quiet points: Behrens-Fisher p = 0.001) while
    # activation=tanh has one seed; lr=0.01's 3-point seed std inflates the pooled noise. The
    # claims' Holm step (lr's own p beside activation's pooled p) lets activation's pooled test
    # through, the pooled family's step (lr's pooled p) does not: either way a factor with a
    # one-seed level is a candidate, likely, never a claim
    levels = {"lr": [0.01, 0.1], "activation": ["tanh"]}
    table = planted_points({"lr=0.1": -0.03, "activation": -0.039},
                           {"baseline": (6, 0.001), "lr=0.01": (3, 0.03), "lr=0.1": (3, 0.001),
                            "activation=tanh": (1, 0.0)}, levels)
    result = rank_trials(table, ofat_spec(levels), 0.001)
    lr, activation = (result.model.factors[f] for f in ("lr", "activation"))
    assert lr.own_variance and not activation.own_variance
    p = activation.p
    assert max(2 * lr.p, p) < 0.05 <= min(2 * p, 2 * lr.screen["p"])  # the two Holm steps
    row = result.ranking.set_index("factor").loc["activation"]
    assert row["verdict"] == "likely influential" and row["reason"].startswith(
        "influential under")


def test_influential_needs_its_own_noise_only_at_the_level_that_shows_it() -> None:
    # lr=0.1 eight points down over 3 seeds, the baseline's 6 seeds and activation=tanh's 3 give
    # the moderation its three replicated points; lr=0.01 has one seed. The loss is claimed from
    # lr=0.1's and the baseline's own (moderated) noise, lr=0.01 still counting in the law's
    # multiplicity; where lr=0.1 also has one seed, only the pooled noise shows it: likely
    levels = {"lr": [0.01, 0.1], "activation": ["tanh"]}
    points = {"baseline": (6, 0.004), "lr=0.01": (1, 0.0), "lr=0.1": (3, 0.004),
              "activation=tanh": (3, 0.004)}
    result = rank_trials(planted_points({"lr=0.1": -0.08}, points, levels), ofat_spec(levels),
                         0.01)
    fit, row = result.model.factors["lr"], result.ranking.set_index("factor").loc["lr"]
    assert not fit.own_variance and fit.claimable.tolist() == [False, True]
    assert fit.p == fit.p_each[1] and len(fit.p_each) == 2  # both levels in the law
    assert (row["verdict"], row["reason"]) == (
        "influential", "its largest difference from the baseline is at least 1 point")
    short = rank_trials(planted_points({"lr=0.1": -0.08}, points | {"lr=0.1": (1, 0.0)}, levels),
                        ofat_spec(levels), 0.01).ranking.set_index("factor").loc["lr"]
    assert short["verdict"] == "likely influential"
