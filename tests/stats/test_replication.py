"""Adaptive replication's looks (study.stats.replication): where a look adds seeds, what it
leaves out and why, that every look tests at its share of the error rate, and by seeded
simulation that adding seeds until decided keeps that rate wherever it stops."""

from dataclasses import replace

import numpy as np
import pytest

from study.design.spec import Look
from study.stats import replication
from study.stats.advice import MAX_SEEDS, advised_plan
from study.stats.fit import ALPHA
from study.stats.ranking import LIKELY, rank_trials
from study.stats.replication import GROWTH, describe, plan_look, with_added_seeds
from study.stats.synthetic import (
    ofat_spec,
    ofat_table,
    replicated_until_decided,
    seed_noise,
)

LEVELS = {"lr": [0.01, 0.1], "activation": ["tanh"], "pooling": ["avg"]}
NOISY = {"lr": [0.5]}  # seed_noise's "unequal" point lr=0.5: 3x the std
CLAIMS = ("influential", "small")  # what a null factor must not be called


def _quick_study(shifts: dict[str, float], sigma: float, seed: int = 0, looks: int = 3,
                 diverged: dict[str, list[int]] | None = None):
    """The quick design (one seed per point, six at the baseline) with seed noise sigma."""
    spec = replace(ofat_spec(LEVELS), seeds=[0], baseline_seeds=list(range(6)), looks=looks)
    table = seed_noise(ofat_table(shifts, noise=0.0, seeds=1, levels=LEVELS, baseline_seeds=6,
                                  diverged=diverged), "gaussian", sigma,
                       np.random.default_rng(seed))
    return spec, table, rank_trials(table, spec)


def _advised_cells(analysis) -> dict[str, dict[str, int]]:
    """Each factor's advised seeds per design point, as a look of the quick study plans them
    (the 1-point threshold, the error rate of two looks)."""
    return {factor: advised_plan(fit, 0.01, ALPHA / 2).cells
            for factor, fit in analysis.model.factors.items()}


def test_a_look_adds_each_undecided_factor_s_advised_seeds_at_its_points() -> None:
    spec, table, analysis = _quick_study({"lr=0.1": -0.04}, 0.005)
    verdicts = analysis.ranking.set_index("factor")["verdict"]
    assert set(verdicts) <= {*LIKELY.values(), "undetermined"}  # one seed: nothing decided
    look = plan_look(analysis, spec, len(table), 10_000, None, None)
    # three looks, of which the first (one seed per point) cannot claim: two share the 5%
    assert look.look == 1 and look.stop is None and look.alpha == pytest.approx(ALPHA / 2)
    assert look.trials == len(table) and look.undecided == list(analysis.ranking["factor"])
    for fit in analysis.model.factors.values():
        plan = advised_plan(fit, analysis.practical_effect, analysis.model.alpha)
        for point, seeds in plan.cells.items():  # the baseline is shared: it gets the most
            assert look.added.get(point, 0) + len(spec.point_seeds(point)) >= seeds
            if point != "baseline":
                assert look.added[point] + 1 == seeds
    # lr's loss is planned above the threshold: its largest difference's level and the
    # baseline get the seeds that would show it, its other level fewer
    lr = advised_plan(analysis.model.factors["lr"], 0.01, analysis.model.alpha)
    assert lr.focus == [0.05, 0.1] and look.added["lr=0.01"] + 1 == lr.others < lr.seeds
    grown = with_added_seeds(spec, look)
    assert grown.point_seeds("lr=0.1") == list(range(look.added["lr=0.1"] + 1))
    assert grown.point_seeds("baseline")[:6] == list(range(6))
    assert grown.total_trials() == spec.total_trials() + sum(look.added.values())
    assert grown.look_log == [look.to_dict()] and grown.identity() == spec.identity()
    # a second look's seeds follow the first's at each point; the first's are kept
    second = replace(look, look=2, added={"lr=0.1": 2})
    twice = with_added_seeds(grown, second)
    first = look.added["lr=0.1"]
    assert twice.added_seeds["lr=0.1"] == list(range(1, first + 3))
    assert twice.point_seeds("lr=0.1") == list(range(first + 3))
    assert [entry["look"] for entry in twice.look_log] == [1, 2]


def test_a_factor_too_noisy_to_plan_for_grows_by_a_step_and_is_not_left_out() -> None:
    # three points of noise against a one-point threshold: the advice asks for more seeds than
    # it plans for (or than a step), so a look grows the points GROWTH-fold instead: what the
    # next look learns moves the effect's estimate away from the threshold or confirms it
    spec, table, analysis = _quick_study({}, 0.03)
    look = plan_look(analysis, spec, len(table), 10_000, None, None)
    steps = 0
    for fit in analysis.model.factors.values():
        plan = advised_plan(fit, 0.01, ALPHA / 2)
        advised = plan.seeds if plan else None
        target = min(advised or MAX_SEEDS, GROWTH * int(fit.n.max()))
        steps += target < (advised or MAX_SEEDS + 1)
        assert all(look.added.get(point, 0) + n >= target for point, n in zip(
            fit.cells, fit.n, strict=True))
        assert all(look.added.get(point, 0) + n == target for point, n in zip(
            fit.cells, fit.n, strict=True) if point != "baseline")
    assert steps == len(analysis.model.factors) and not look.skipped
    assert look.added["baseline"] == GROWTH * 6 - 6


def test_a_point_whose_seeds_diverged_gets_more_to_make_up_for_them() -> None:
    spec, table, analysis = _quick_study({"lr=0.1": -0.04}, 0.005, diverged={"baseline": [4, 5]})
    look = plan_look(analysis, spec, len(table), 10_000, None, None)
    most = max(advised_plan(fit, 0.01, ALPHA / 2).seeds
               for fit in analysis.model.factors.values())
    assert analysis.model.factors["lr"].n[0] == 4  # the baseline's converged seeds
    assert look.added["baseline"] == most - 4


def test_a_look_within_a_budget_takes_the_cheapest_factors_and_says_why_not_the_rest() -> None:
    spec, table, analysis = _quick_study({"lr=0.1": -0.04}, 0.005)
    full = plan_look(analysis, spec, len(table), 10_000, None, None)
    # what each factor alone costs, in trials (every point costs one baseline trial here)
    plans = _advised_cells(analysis)
    alone = {factor: sum(max(0, seeds - len(spec.point_seeds(p))) for p, seeds in plan.items())
             for factor, plan in plans.items()}
    cheapest, dearest = min(alone, key=alone.get), max(alone.values())
    assert alone[cheapest] < dearest < alone[cheapest] + dearest  # only one factor fits
    # the dearest factor alone would fit too: cheapest first buys the cheaper one
    look = plan_look(analysis, spec, len(table), dearest, None, None)
    assert look.added == {p: seeds - len(spec.point_seeds(p)) for p, seeds in
                          plans[cheapest].items() if seeds > len(spec.point_seeds(p))}
    assert set(look.added) <= set(full.added)
    assert set(look.skipped) == set(alone) - {cheapest}
    assert all("sweep.max_trials" in why for why in look.skipped.values())
    # minutes: at 2 s per baseline trial, as many seconds as the dearest factor's
    timed = plan_look(analysis, spec, len(table), 10_000, 2.0 * dearest, 2.0)
    assert timed.added == look.added and "sweep.max_minutes" in next(iter(
        timed.skipped.values()))
    assert plan_look(analysis, spec, len(table), 10_000, 60.0, None).stop is not None  # no rate
    exactly = plan_look(analysis, spec, len(table), alone[cheapest], None, None)
    assert exactly.added == look.added  # a factor whose seeds are exactly the trials left
    nothing = plan_look(analysis, spec, len(table), 0, None, None)
    assert nothing.added == {} and nothing.stop.startswith("no undecided factor's seeds fit")


def test_the_last_planned_look_and_a_decided_study_add_nothing() -> None:
    spec, table, analysis = _quick_study({"lr=0.1": -0.04}, 0.005, looks=2)
    second = replace(spec, look_log=[{"look": 1, "trials": len(table) - 1}])
    look = plan_look(analysis, second, len(table), 10_000, None, None)
    assert look.look == 2 and look.added == {} and look.stop == "the 2 planned looks are taken"
    # a rerun that brought no trial takes its last look again, spending no test
    again = plan_look(analysis, replace(spec, look_log=[{"look": 1, "trials": len(table)}]),
                      len(table), 10_000, None, None)
    assert again.look == 1 and again.added
    twice = replace(spec, looks=3, look_log=[{"look": 1, "trials": 3},
                                             {"look": 2, "trials": len(table)}])
    assert plan_look(analysis, twice, len(table), 10_000, None, None).look == 2
    decided = replace(analysis, ranking=analysis.ranking.assign(verdict="negligible"))
    done = plan_look(decided, spec, len(table), 10_000, None, None)
    assert done.added == {} and done.stop == "every factor is decided" and done.undecided == []


def test_every_look_tests_at_its_share_of_the_error_rate() -> None:
    analysis, spec = replicated_until_decided({"lr=0.1": -0.03}, LEVELS, 1, 6, 3, "gaussian",
                                              0.005, np.random.default_rng(2))
    assert 2 <= len(spec.look_log) <= spec.looks
    assert [entry["look"] for entry in spec.look_log] == list(range(1, len(spec.look_log) + 1))
    # Bonferroni over the looks that can claim: not the first, of one seed per point
    assert all(entry["alpha"] == ALPHA / (spec.looks - 1) for entry in spec.look_log)
    assert analysis.model.alpha * (spec.looks - 1) == pytest.approx(ALPHA)
    assert spec.look_log[-1]["stop"] and all(e["added"] for e in spec.look_log[:-1])
    assert analysis.ranking.set_index("factor").loc["lr", "verdict"] == "influential"


@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.simulation
def test_adding_seeds_until_decided_claims_no_more_than_the_rate_under_unequal_noise() -> None:
    # null studies of one factor whose level lr=0.5 is three times as noisy as the baseline,
    # starting at one seed there and six at the baseline; at a threshold of zero every
    # significant difference is a claim, so no factor is ever decided negligible and the looks
    # go on adding seeds: whichever look a study stops at (decided, or out of trials), a claim
    # is as rare as the error rate allows: 1 of these 40 studies, where testing every look at
    # 5% (peeking) claims in 7
    rng, claimed, looks = np.random.default_rng(5), [], []
    for _ in range(40):
        analysis, spec = replicated_until_decided({}, NOISY, 1, 6, 4, "unequal", 0.01, rng,
                                                  max_trials=200, practical_effect=0.0)
        claimed.append(analysis.ranking["verdict"].isin(CLAIMS).any())
        looks.append(len(spec.look_log))
    assert np.mean(claimed) <= ALPHA and max(looks) == 4 and np.mean(looks) >= 3


def test_factors_are_taken_cheapest_first_in_work_where_their_points_cost_differently(
        monkeypatch) -> None:
    spec, table, analysis = _quick_study({"lr=0.1": -0.04}, 0.005)
    plans = _advised_cells(analysis)
    trials = {factor: {p: seeds - len(spec.point_seeds(p)) for p, seeds in plan.items()
                       if p != "baseline" and seeds > len(spec.point_seeds(p))}
              for factor, plan in plans.items()}
    by_trials = sorted(trials, key=lambda f: sum(trials[f].values()))
    fewer, more, priced_out = by_trials[0], by_trials[-1], by_trials[1]
    n_fewer, n_more = sum(trials[fewer].values()), sum(trials[more].values())
    assert 0 < n_fewer < n_more
    # the factor with more trials has points at a fraction of a baseline trial's cost: less
    # work than the other, which alone fits the minutes left, and both together do not
    cheap = 0.5 * n_fewer / n_more
    costs = {"baseline": 0.0} | {p: cheap for p in trials[more]} | {
        p: 1.0 for p in trials[fewer]} | {p: 1000.0 for p in trials[priced_out]}
    monkeypatch.setattr(replication, "point_costs", lambda _: costs)
    look = plan_look(analysis, spec, len(table), 10_000, 2.0 * n_fewer, 2.0)
    assert {p: n for p, n in look.added.items() if p != "baseline"} == trials[more]
    assert set(look.skipped) == {fewer, priced_out}
    exact = sum(n * cheap for n in trials[more].values())  # minutes for exactly its work
    assert plan_look(analysis, spec, len(table), 10_000, 2.0 * exact, 2.0).added == look.added


def test_the_shared_baseline_keeps_the_most_seeds_any_factor_asked_for(monkeypatch) -> None:
    spec, table, analysis = _quick_study({"lr=0.1": -0.03, "activation=tanh": -0.02}, 0.005)
    plans = _advised_cells(analysis)
    most = max(plans, key=lambda f: plans[f]["baseline"])
    # every factor asks the baseline for more than its 6 seeds, the others for fewer than a
    # look's step (GROWTH times 6) and most
    assert 6 < max(plan["baseline"] for f, plan in plans.items() if f != most) < GROWTH * 6
    assert plans[most]["baseline"] > GROWTH * 6
    # the factor that asks the baseline for the most seeds is the cheapest: it is taken first
    costs = {p: 0.0 if factor == most else 1.0 for factor, plan in plans.items() for p in plan
             if p != "baseline"} | {"baseline": 0.0}
    monkeypatch.setattr(replication, "point_costs", lambda _: costs)
    look = plan_look(analysis, spec, len(table), 10_000, None, None)
    assert look.added["baseline"] + 6 == min(plans[most]["baseline"], GROWTH * 6)  # a step


def test_a_factor_without_a_comparison_is_left_out_with_its_reason() -> None:
    # activation's and pooling's one level diverged: no accuracy difference to plan seeds for
    spec, table, analysis = _quick_study({"lr=0.1": -0.04}, 0.005, diverged={
        "activation=tanh": [0], "pooling=avg": [0]})
    assert set(analysis.model.factors) == {"lr"}
    look = plan_look(analysis, spec, len(table), 10_000, None, None)
    assert look.skipped == dict.fromkeys(("activation", "pooling"),
                                         "no accuracy comparison to plan seeds for")
    assert {"lr=0.01", "lr=0.1"} <= set(look.added)


def test_a_look_is_one_log_line_that_says_what_it_adds_or_why_it_stops() -> None:
    look = Look(2, 40, 0.025, ["lr", "pooling"], added={"lr=0.1": 3, "baseline": 5})
    assert describe(look) == ("look 2 (40 trials, tested at 0.025): 2 undecided (lr, pooling); "
                              "adds 8 trials at 2 design points")
    done = Look(3, 48, 0.025, [], stop="every factor is decided")
    assert describe(done) == ("look 3 (48 trials, tested at 0.025): 0 undecided (none); stops: "
                              "every factor is decided")
