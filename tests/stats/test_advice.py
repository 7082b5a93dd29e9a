"""Where the advised seeds go (study.stats.advice): the focused plan's shape on factors of one
and of two levels besides the baseline, the seeds added where no effect could show as much, and
how the report says it. The plan's defining property (the fewest seeds that clear the
threshold) is tested with the verdicts (tests/stats/test_verdicts.py), the looks that add it in
tests/stats/test_replication.py."""

from dataclasses import replace

import numpy as np

from study.stats.advice import MAX_SEEDS, Plan, advice_text, advised_plan
from study.stats.ranking import LIKELY, rank_trials
from study.stats.synthetic import ofat_spec, ofat_table, seed_noise

LEVELS = {"pooling": ["avg"], "lr": [0.01, 0.1]}


def _undecided_fits(shift: float, sigma: float, rng: int,
                    undecided: tuple[str, ...] = ("lr", "pooling")) -> dict:
    """The fits of `shift` planted at pooling=avg and lr=0.1, three seeds each and six at the
    baseline, seed std sigma; the `undecided` factors checked undecided."""
    spec = replace(ofat_spec(LEVELS), seeds=[0, 1, 2], baseline_seeds=list(range(6)))
    table = seed_noise(ofat_table({"pooling=avg": shift, "lr=0.1": shift}, noise=0.0, seeds=3,
                                  levels=LEVELS, baseline_seeds=6), "gaussian", sigma,
                       np.random.default_rng(rng))
    analysis = rank_trials(table, spec)
    verdicts = analysis.ranking.set_index("factor")["verdict"]
    assert set(verdicts[list(undecided)]) <= {*LIKELY.values(), "undetermined"}
    return analysis.model.factors


def test_a_loss_above_the_threshold_gets_seeds_at_its_level_and_the_baseline_only() -> None:
    # 2-point losses at seed std 0.5 point: an effect for sure (each factor's test rejects no
    # effect), undecided whether above the 1-point threshold
    fits = _undecided_fits(-0.02, 0.005, 6)
    assert fits["lr"].p < 0.05 and fits["pooling"].p < 0.05
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
    assert advice_text(None, "trials per level") == (
        f"more than {MAX_SEEDS} trials per level would be needed")


def test_a_loss_that_no_effect_could_show_also_gets_the_seeds_that_would_show_none() -> None:
    # 4-point losses at seed std 1.5 points: lr's test does not reject no effect (its levels'
    # own noise, moderated), so its advice must decide it either way: the focused plan's seeds,
    # and at every point at least those that would show every level within the threshold
    # were there no effect (the plan of a factor observed at zero)
    fits = _undecided_fits(-0.04, 0.015, 0, undecided=("lr",))
    lr = fits["lr"]
    assert lr.p > 0.05 and lr.corrected > 0.01
    focused, guarded = advised_plan(replace(lr, p=0.0), 0.01, 0.05), advised_plan(lr, 0.01, 0.05)
    flat = replace(lr, differences=np.zeros_like(lr.differences))  # no difference observed
    none = advised_plan(flat, 0.01, 0.05)
    assert flat.corrected <= 0 and none.others is None and none.seeds < focused.seeds
    assert guarded == Plan({cell: max(n, none.cells[cell]) for cell, n in focused.cells.items()},
                           focused.seeds, focused.focus, max(focused.others, none.seeds))
    assert guarded.others > focused.others
