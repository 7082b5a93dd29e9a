"""Where the advised seeds go (study.stats.advice): the focused plan's shape on factors of one
and of two levels besides the baseline, and how the report says it. The plan's defining
property (the fewest seeds that clear the threshold) is tested with the verdicts
(tests/stats/test_verdicts.py), the looks that add it in tests/stats/test_replication.py."""

from dataclasses import replace

import numpy as np

from study.stats.advice import advice_text, advised_plan
from study.stats.ranking import rank_trials
from study.stats.synthetic import ofat_spec, ofat_table, seed_noise

LEVELS = {"pooling": ["avg"], "lr": [0.01, 0.1]}


def test_a_loss_above_the_threshold_gets_seeds_at_its_level_and_the_baseline_only() -> None:
    # 3-point losses at pooling=avg and lr=0.1, three seeds each and six at the baseline, seed
    # std 1 point: both screened (each level's own noise does not yet show them)
    spec = replace(ofat_spec(LEVELS), seeds=[0, 1, 2], baseline_seeds=list(range(6)))
    table = seed_noise(ofat_table({"pooling=avg": -0.03, "lr=0.1": -0.03}, noise=0.0, seeds=3,
                                  levels=LEVELS, baseline_seeds=6), "gaussian", 0.01,
                       np.random.default_rng(2))
    analysis = rank_trials(table, spec)
    assert set(analysis.ranking["verdict"]) == {"screened"}
    fits = analysis.model.factors
    lr = advised_plan(fits["lr"], 0.01, 0.05)
    assert lr.focus == [0.05, 0.1] and lr.cells["lr=0.1"] == lr.seeds
    assert lr.cells["baseline"] == lr.seeds and 3 <= lr.cells["lr=0.01"] == lr.others < lr.seeds
    assert advice_text(lr, "seeds per design point") == (
        f"about {lr.seeds} seeds per design point at its levels 0.05 and 0.1, at least "
        f"{lr.others} at the others, would decide it")
    # pooling has one level besides the baseline: every point is the focus's, nothing else
    pooling = advised_plan(fits["pooling"], 0.01, 0.05)
    assert pooling.others is None and pooling.focus == ["max", "avg"]
    assert pooling.cells == {"baseline": pooling.seeds, "pooling=avg": pooling.seeds}
    assert advice_text(pooling, "seeds per design point", "confirm") == (
        f"about {pooling.seeds} seeds per design point would confirm it")
    assert advice_text(None, "trials per level") == "more than 200 trials per level would be needed"
