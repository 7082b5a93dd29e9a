"""How many seeds would decide an undecided factor, and where: the power calculation behind the
report's advice ("about N seeds per design point would decide it") and behind the seeds that
adaptive replication adds (study.stats.replication).

A factor is decided when its own-noise (Behrens-Fisher) intervals clear the practical threshold.
The plan takes the selection-corrected effect as the truth and each cell's variance at its upper
PLANNING_BOUND confidence bound, never below the pooled variance's (a cell of one seed: the
pooled one's), and asks for the fewest seeds at which the intervals would clear the threshold
with the chance POWER, their critical value on the df those seeds bring:

- an effect planned above the threshold is shown *influential* by its largest difference alone,
  so the seeds go to that level's cells and the reference's; the other levels need only enough
  seeds that their own noise does not widen the simultaneous critical value, and the plan takes
  the number of theirs that costs the fewest trials in all;
- an effect planned below it is shown *small* or *negligible* only by every level's interval, so
  every cell gets the same seeds, enough that all the intervals clear at once;
- an effect planned above the threshold that no effect at all could also show (the factor's
  test does not reject it: a few seeds, a noisy level) gets both: the first plan's seeds, and
  at every cell at least those of the second for an effect of zero. Planned on the effect seen
  alone, the seeds decide it only where that effect is real, and under no effect the focused
  seeds show nothing either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from study.stats.critical import PLANNING_DRAWS, fiducial_max, fiducial_quantile
from study.stats.fit import FactorFit, fiducial_se

MAX_SEEDS = 1000  # seeds-needed estimates above this say "more than"
# the divergence advice tries every count in turn (a Fisher test per count and level): its own,
# lower cap keeps a report's worst case near half a second per factor
MAX_DIVERGENCE_SEEDS = 200
POWER = 0.8  # the chance that the advised seeds decide a factor, where the plan is the truth
PLANNING_BOUND = 0.75  # the advice plans on each variance's upper 75% confidence bound



@dataclass(frozen=True)
class Plan:
    """The seeds that would decide a factor: `seeds` at the cells of the levels `focus` (every
    level, or the largest difference's and the reference's), at least `others` at the rest
    (None: no rest); `cells`: each cell's seeds in all (a cell that has more keeps them)."""

    cells: dict[Any, int]
    seeds: int
    focus: list[Any]
    others: int | None = None


def _seeds_to_decide(fit: FactorFit, confidence: float, gap: float, focus: int | None = None,
                     others: int = 0) -> int | None:
    """Seeds per cell (a cell that has more keeps them) at which, with the chance POWER, the
    simultaneous interval from the cells' own noise would clear the practical threshold that now
    lies `gap` from the planned difference: (q + z) * se below the gap, q from the df those
    seeds bring (and the df the study's noise lends each cell), z the normal's POWER quantile
    where one interval must clear, the POWER quantile of the largest standardized error where
    every level's must (all of them at once, not each with the chance POWER), each cell's
    variance its upper PLANNING_BOUND confidence bound, at least the pooled variance's (a cell
    of one seed: that). focus None:
    every cell gets the seeds and every level's interval must clear; else only the cells of
    contrast `focus` get them and only its interval must clear, every other cell having at
    least `others`. None when more than MAX_SEEDS would be needed. The half-width falls as
    seeds grow: a bisection finds the fewest."""
    pooled = fit.s ** 2 * fit.df / sps.chi2.ppf(1 - PLANNING_BOUND, fit.df)
    own = fit.variance * (fit.n - 1) / sps.chi2.ppf(1 - PLANNING_BOUND, fit.n - 1)  # NaN: 1 seed
    # a cell whose few seeds happened to agree is planned no quieter than the design's noise:
    # seeds that lose points now and then (heavy tails) show it in the pooled error first
    variance = np.fmax(own, pooled)
    z = sps.norm.ppf(POWER)
    growing = np.ones(len(fit.n), bool) if focus is None else fit.contrasts[focus] != 0
    rest = np.maximum(fit.n, others)

    def half_width(seeds: int) -> float:
        n = np.where(growing, np.maximum(fit.n, seeds), rest)
        scaled = fiducial_se(fit.contrasts, n, variance)
        draws = fiducial_max(scaled, n - 1 + fit.prior_df, PLANNING_DRAWS)
        q = fiducial_quantile(draws, confidence)
        se = np.sqrt((scaled ** 2).sum(axis=1))
        if focus is not None:  # one interval clears one side: the normal's quantile
            return float((q + z) * se[focus])
        # every level's error at once: the POWER quantile of the largest standardized one
        return float((q + fiducial_quantile(draws, POWER)) * se.max())

    low, high = max(2, int(fit.n[growing].min()) + 1), MAX_SEEDS
    if half_width(high) >= gap:
        return None
    while low < high:  # the fewest seeds whose half-width is below the gap lies in [low, high]
        middle = (low + high) // 2
        if half_width(middle) < gap:
            high = middle
        else:
            low = middle + 1
    return low


def _focused_plan(fit: FactorFit, confidence: float, gap: float) -> Plan | None:
    """The cheapest plan that shows the largest difference's interval clearing the threshold:
    its cells get the seeds it needs given the other cells' seeds, tried at their own (at least
    two, to show their noise) and doubling from there."""
    focus = int(np.argmax(np.abs(fit.differences)))
    growing = fit.contrasts[focus] != 0
    if growing.all():  # one level besides the reference: its interval is every level's
        return _uniform_plan(fit, confidence, gap)
    best: Plan | None = None
    others = max(2, int(fit.n[~growing].min()))
    while others <= MAX_SEEDS:
        seeds = _seeds_to_decide(fit, confidence, gap, focus, others)
        if seeds is not None:
            target = np.where(growing, np.maximum(fit.n, seeds), np.maximum(fit.n, others))
            if best is None or target.sum() < sum(best.cells.values()):
                levels = [fit.reference, fit.others[focus]]
                best = Plan(dict(zip(fit.cells, target.astype(int).tolist(), strict=True)),
                            seeds, [level for level in fit.levels if level in levels], others)
            if others >= seeds:  # more at the other levels than at the one that decides
                break
        others *= 2
    return best


def _uniform_plan(fit: FactorFit, confidence: float, gap: float) -> Plan | None:
    """The plan that shows every level's interval clearing the threshold: every cell gets the
    same seeds."""
    seeds = _seeds_to_decide(fit, confidence, gap)
    if seeds is None:
        return None
    return Plan({cell: max(seeds, int(n)) for cell, n in zip(fit.cells, fit.n, strict=True)},
                seeds, list(fit.levels))


def advised_plan(fit: FactorFit, threshold: float, alpha: float) -> Plan | None:
    """The seeds per cell (design point) that would decide the factor at error rate `alpha`,
    None beyond MAX_SEEDS: planned at its selection-corrected effect (the largest observed
    difference overstates the truth), its largest difference's 1 - alpha interval clearing the
    threshold from above, or every level's 1 - 2 alpha interval from below; and from below at
    an effect of zero too where the factor's test does not reject that."""
    planned = max(0.0, fit.corrected)
    if planned < threshold:
        return _uniform_plan(fit, 1 - 2 * alpha, threshold - planned)
    focused = _focused_plan(fit, 1 - alpha, planned - threshold)
    if fit.p < alpha:  # an effect for sure: the seeds that show it above the threshold
        return focused
    # no effect could show as much (a few seeds, a noisy level): the seeds must also show the
    # factor negligible were there none, or they decide it only when the difference is real
    absent = _uniform_plan(fit, 1 - 2 * alpha, threshold)
    if focused is None or absent is None:
        return None
    if absent.seeds >= focused.seeds:
        return absent
    if focused.others is None:  # every cell is the focus's: it has the more seeds already
        return focused
    cells = {cell: max(n, absent.cells[cell]) for cell, n in focused.cells.items()}
    return Plan(cells, focused.seeds, focused.focus, max(focused.others, absent.seeds))


def advice_text(plan: Plan | None, per: str, verb: str = "decide") -> str:
    """`about 40 seeds per design point would decide it`, naming the levels where the plan
    gives only some of them that many."""
    if plan is None:
        return f"more than {MAX_SEEDS} {per} would be needed"
    if plan.others is None:
        return f"about {plan.seeds} {per} would {verb} it"
    return (f"about {plan.seeds} {per} at its levels {' and '.join(map(str, plan.focus))}, at "
            f"least {plan.others} at the others, would {verb} it")


def divergence_seeds(rows: pd.DataFrame, tests: int, alpha: float) -> int | None:
    """Seeds per level at which the observed divergence rates would differ significantly from
    the baseline's (Fisher, Bonferroni over the tests); None beyond MAX_DIVERGENCE_SEEDS."""
    base = rows[rows["baseline"]].iloc[0]
    others = rows[~rows["baseline"] & (rows["rate"] != base["rate"])]
    for seeds in range(int(rows["trials"].min()) + 1, MAX_DIVERGENCE_SEEDS + 1):
        kb = round(base["rate"] * seeds)
        for rate in others["rate"]:
            k = round(rate * seeds)
            if sps.fisher_exact([[k, seeds - k], [kb, seeds - kb]]).pvalue < alpha / tests:
                return seeds
    return None


def divergence_text(seeds: int | None, per: str) -> str:
    return (f"about {seeds} {per} would decide it" if seeds
            else f"more than {MAX_DIVERGENCE_SEEDS} {per} would be needed")
