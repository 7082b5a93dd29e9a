"""Small seeded versions of docs/statistics.md's simulations (scripts/simulate_stats.py): each
fails when the property its table shows breaks: a look that cannot claim spending error rate,
level means judged by the pooled noise, power at the full budget's design lost."""

from dataclasses import replace

import numpy as np
import pytest

from scripts.simulate_stats import EFFECT_CLAIMS, PLANTED, SPEC, simulate
from study.stats.fit import ALPHA, fit, study_alpha
from study.stats.synthetic import ofat_spec, ofat_table, seed_noise


@pytest.mark.slow
@pytest.mark.simulation
def test_a_first_look_that_cannot_claim_spends_nothing() -> None:
    # the quick budget's design, one seed per point: its first look never claims, even where
    # the pooled noise (the baseline's 6 seeds) shows lr=0.5 and sigmoid as effects, so the
    # 5% is split over the three looks that can claim, not four
    rng, likely = np.random.default_rng(42), []
    for _ in range(10):
        verdicts = simulate("1 + 6", PLANTED, "unequal", 0.01, rng)[0].ranking["verdict"]
        assert not verdicts.isin(EFFECT_CLAIMS).any()
        likely.append(verdicts.str.startswith("likely").any())
    assert np.mean(likely) >= 0.5
    quick = replace(SPEC, seeds=[0], baseline_seeds=list(range(6)), looks=4)
    assert study_alpha(quick) == pytest.approx(ALPHA / 3)
    assert study_alpha(replace(quick, seeds=[0, 1, 2])) == pytest.approx(ALPHA / 4)
    # one trial at a level against 20 at the baseline could diverge significantly: it can claim
    assert study_alpha(replace(quick, baseline_seeds=list(range(20)))) == pytest.approx(ALPHA / 4)


@pytest.mark.slow
@pytest.mark.simulation
def test_level_means_cover_a_level_three_times_as_noisy_as_the_rest() -> None:
    # lr=0.5 three times as noisy, 3 seeds per point and 6 at the baseline: its 95% level-mean
    # interval from its own seeds covers its mean as often as the quiet level's; from the
    # noise pooled over the points it would cover about 70%
    spec, covered = ofat_spec({"lr": [0.01, 0.5]}), {0.01: [], 0.5: []}
    rng = np.random.default_rng(3)
    for _ in range(200):
        table = seed_noise(ofat_table({}, noise=0.0, seeds=3, levels={"lr": [0.01, 0.5]},
                                      baseline_seeds=6), "unequal", 0.01, rng)
        for row in fit(table, spec).factors["lr"].level_rows():
            if row["level"] in covered:
                covered[row["level"]].append(row["ci_low"] <= 0.7 <= row["ci_high"])
    assert np.mean(covered[0.5]) >= 0.93 and np.mean(covered[0.01]) >= 0.93


@pytest.mark.slow
@pytest.mark.simulation
def test_the_full_budget_s_design_finds_a_five_point_loss() -> None:
    # the planted truth at sigma 1 point, Gaussian, 3 seeds per point and 6 at the baseline:
    # sigmoid (5 points down) is influential in at least 80% of studies (the table: 88%); on
    # each point's own variance alone (2 df) it was 2 of 100
    rng = np.random.default_rng(80)
    found = [simulate("3 + 6", PLANTED, "gaussian", 0.01, rng)[0].ranking.set_index("factor")
             .loc["activation", "verdict"] == "influential" for _ in range(30)]
    assert np.mean(found) >= 0.8
