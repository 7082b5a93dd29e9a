"""Adaptive replication, planned (`python -m study.sweep sweep.until=decided` runs it): after
the design's trials, look at the verdicts, add seeds at the design points of the factors still
*likely* something or *undetermined*, train them and look again, until every factor is decided, the
planned looks (`sweep.looks`) are taken, or the budget is spent (`sweep.max_trials` trials in
the study, `sweep.max_minutes` of this run).

Each look tests at ALPHA over the planned looks that can claim (study.stats.fit.study_alpha: a
first look of one seed per point cannot, so spends nothing): Bonferroni over the looks, so
whichever look the study stops at, a wrong claim has at most ALPHA chance; the spec
records the looks (part of the study's identity) and every look taken (`look_log`), so a rerun
continues the same sequence. Where the seeds go: each undecided factor needs the seeds per
design point that the report advises (study.stats.advice.advised_plan, a power calculation:
an effect above the threshold at its largest difference's level and the baseline, fewer at its
other levels), at most GROWTH times its most seeds per point in one look (planned from
one seed, an estimate near the threshold asks for hundreds: a step lets the next look see
better, where leaving the factor out would leave it undecided for good); the factors are taken
cheapest first, in baseline trials of work (the cost model, study.design.cost), since each
decides one factor with the planned power: the cheapest buys the most decided factors per unit
of work. Plain data: the sweep trains what a look adds and records it (study.sweep).
"""

from __future__ import annotations

from dataclasses import replace

from study.design.cost import point_costs
from study.design.spec import Look, StudySpec
from study.stats.advice import MAX_SEEDS, advised_plan
from study.stats.ranking import LIKELY, Analysis

UNDECIDED = (*LIKELY.values(), "undetermined")
GROWTH = 4  # a look grows a factor's points to at most this many times its most seeds


def plan_look(analysis: Analysis, spec: StudySpec, finished: int, trials_left: int,
              seconds_left: float | None, seconds_per_baseline: float | None) -> Look:
    """The look at a study's analysis of `finished` trials: which seeds to add where, within
    `trials_left` more trials and `seconds_left` of training (None: no cap) at the measured
    `seconds_per_baseline` trial (None: not yet known, so no time cap can be kept). A study
    whose last look saw as many trials takes that look again (a rerun after a budget stop): no
    data came in, so no new test is spent."""
    ranking, model = analysis.ranking, analysis.model
    undecided = list(ranking.loc[ranking["verdict"].isin(UNDECIDED), "factor"])
    number = len(spec.look_log) + 1
    if spec.look_log and spec.look_log[-1]["trials"] == finished:
        number -= 1
    look = Look(number, finished, model.alpha, undecided)
    if not undecided:
        look.stop = "every factor is decided"
        return look
    if look.look >= (spec.looks or 1):
        look.stop = f"the {spec.looks} planned looks are taken"
        return look
    costs = point_costs(spec)
    needs: dict[str, dict[str, int]] = {}
    for factor in undecided:
        fit = model.factors.get(factor)
        if fit is None:
            look.skipped[factor] = "no accuracy comparison to plan seeds for"
            continue
        plan = advised_plan(fit, analysis.practical_effect, model.alpha)
        cap = GROWTH * int(fit.n.max())
        wanted = {point: min(plan.cells[point] if plan else MAX_SEEDS, cap) for point in fit.cells}
        # converged seeds: a point whose seeds diverged gets more to make up for them
        needs[factor] = {point: wanted[point] - int(n) for point, n
                         in zip(fit.cells, fit.n, strict=True) if wanted[point] > n}
    added: dict[str, int] = {}
    for factor in sorted(needs, key=lambda f: sum(n * costs.get(p, 1.0)
                                                    for p, n in needs[f].items())):
        together = {**added, **{p: max(n, added.get(p, 0)) for p, n in needs[factor].items()}}
        work = sum(n * costs.get(p, 1.0) for p, n in together.items())
        if sum(together.values()) > trials_left:
            look.skipped[factor] = f"its seeds would pass sweep.max_trials ({trials_left} left)"
        elif seconds_left is not None and (seconds_per_baseline is None or
                                           work * seconds_per_baseline > seconds_left):
            look.skipped[factor] = "its seeds would not be trained within sweep.max_minutes"
        else:
            added = together
    look.added = added
    if not added:
        look.stop = "no undecided factor's seeds fit the budget (each one's reason: not added)"
    return look


def with_added_seeds(spec: StudySpec, look: Look) -> StudySpec:
    """The spec with the look recorded and its seeds added, each point's new seeds following
    its highest."""
    extra = dict(spec.added_seeds)
    for point, count in look.added.items():
        top = max(spec.point_seeds(point))
        extra[point] = [*extra.get(point, []), *range(top + 1, top + 1 + count)]
    earlier = [entry for entry in spec.look_log if entry["look"] != look.look]
    return replace(spec, added_seeds=extra, look_log=[*earlier, look.to_dict()])


def describe(look: Look) -> str:
    """The look in one log line."""
    what = (f"adds {sum(look.added.values())} trials at {len(look.added)} design points"
            if look.added else f"stops: {look.stop}")
    return (f"look {look.look} ({look.trials} trials, tested at {look.alpha:.3g}): "
            f"{len(look.undecided)} undecided ({', '.join(look.undecided) or 'none'}); {what}")
