"""Which factors matter: the ranking and verdicts of a fitted study (study.stats.fit), as plain
data. `analyse(model)` returns an `Analysis` of DataFrames; every undefined number is NaN.

Per factor: the F-test and Dunnett-type simultaneous intervals of its accuracy contrasts,
Wilson intervals and Fisher's exact tests of its divergence, the selection-corrected effect with
its interval, omega-squared, a rank interval from the model's redraws, and a verdict (VERDICTS)
with its reason at the practical threshold; the factor tests are Holm-corrected together. The
rules and their measured error rates: docs/statistics.md.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.design.spec import StudySpec
from study.stats.advice import (
    Plan,
    advice_text,
    advised_plan,
    divergence_seeds,
    divergence_text,
)
from study.stats.fit import (
    LEVEL_COLUMNS,
    POOLED,
    FactorFit,
    FittedModel,
    Noise,
    fit,
)
from study.stats.frames import converged
from study.stats.slices import level_order, reference_level

PRACTICAL_EFFECT = 0.01  # accuracy: one point; the default of analysis.practical_effect
RANK_DECIMALS = 12  # effects equal to this many decimals share a rank (float noise is no effect)
CLAIMS = ("influential", "small", "negligible")  # verdicts that claim something of accuracy
# what only the noise pooled over the design points supports: the claim, not yet made
LIKELY = {claim: f"likely {claim}" for claim in CLAIMS}
VERDICTS = (*CLAIMS, *LIKELY.values(), "undetermined", "no data")


@dataclass
class Analysis:
    """Everything the report shows about influence; every undefined number is NaN."""

    ranking: pd.DataFrame  # RANKING_COLUMNS, one row per studied factor, in rank order
    levels: pd.DataFrame  # per (factor, level): accuracy and divergence
    differences: pd.DataFrame  # per (factor, non-baseline level): difference from the baseline
    practical_effect: float
    model: FittedModel  # what the numbers come from

    @property
    def noise(self) -> Noise:
        return self.model.noise

    @property
    def pooled(self) -> bool:
        """One model over all design points (fixed designs), else one per factor."""
        return self.model.pooled


def rank_text(row: pd.Series) -> str:
    """`2 (1-3)`: a ranking row's rank and its 95% interval; n/a for a factor without an
    effect."""
    if pd.isna(row["rank"]):
        return "n/a"
    if pd.isna(row["rank_low"]):
        return str(row["rank"])
    return f"{row['rank']} ({row['rank_low']}-{row['rank_high']})"


def holm(p: pd.Series) -> pd.Series:
    """Holm-adjusted p-values (NaN stays NaN). Written out because statsmodels' multipletests
    runs gc.collect() on every call: 0.1 s each with torch loaded, too slow for simulations."""
    adjusted = pd.Series(np.nan, index=p.index)
    valid = p.dropna().sort_values()
    if not valid.empty:
        steps = (len(valid) - np.arange(len(valid))) * valid.to_numpy()
        adjusted[valid.index] = np.minimum(1.0, np.maximum.accumulate(steps))
    return adjusted


def _accuracy_missing(part: pd.DataFrame, spec: StudySpec, factor: str) -> str:
    """Why the factor's accuracy is not compared (it has no fit), from its slice `part`."""
    levels = level_order(spec, factor, list(converged(part)["level"].unique()))
    if not levels:
        return "none of its trials converged, so no accuracy can be compared"
    if reference_level(spec, factor, levels) is None:
        return ("its baseline level has no converged trial, so no difference from the baseline "
                "is defined")
    return f"only its level {levels[0]} has converged trials"


def _verdict(row: dict, fit: FactorFit | None, div: pd.DataFrame, threshold: float,
             tests: int, missing: str, advice: Callable[[], Plan | None] | None, alpha: float
             ) -> tuple[str, str]:
    """(verdict, reason) from the factor's tests at error rate `alpha`, effect interval and
    divergence; `missing`: why there is no fit, where there is none; advice: the seeds per
    point that would decide an undetermined accuracy comparison (None: leave them unsaid)."""
    points = f"{100 * threshold:g} point{'s' if threshold != 0.01 else ''}"
    per = ("seeds per design point" if fit is None or fit.error_id == POOLED
           else "trials per level")
    sig_acc, sig_div = row["accuracy_p_holm"] < alpha, row["divergence_p_holm"] < alpha
    worse = div[~div["baseline"]]
    base_rate = div.loc[div["baseline"], "rate"]
    more_divergence = not base_rate.empty and (worse["rate"] > base_rate.iloc[0]).any()
    if sig_div:
        top = worse.loc[worse["fisher_p"].idxmin()]
        return "influential", (f"diverges or stalls more often at {top['level']} "
                               f"({top['diverged']}/{top['trials']} trials) than at the baseline")
    if fit is None:
        if not div["baseline"].any():
            return "undetermined", (f"{missing}; nor is divergence (no finished trial at the "
                                    "baseline level)")
        return "undetermined", (f"{missing}; divergence does not yet differ significantly: "
                                + divergence_text(divergence_seeds(div, tests, alpha), per))
    if fit.df == 0:
        return "undetermined", ("no design point has two converged seeds, so the noise cannot "
                                "be measured: run more seeds")
    if sig_acc and row["effect_ci_low"] >= threshold:
        return "influential", f"its largest difference from the baseline is at least {points}"
    if sig_acc and row["equivalence_bound"] < threshold:
        return "small", f"it differs from the baseline, but every level by less than {points}"
    if not sig_acc and row["equivalence_bound"] < threshold and not more_divergence:
        return "negligible", (f"every level is within {points} of the baseline (equivalence "
                              "test) and diverges or stalls no more often")
    if more_divergence and not sig_acc:
        return "undetermined", ("some level diverges or stalls more often than the baseline, "
                                "not yet significantly: "
                                + divergence_text(divergence_seeds(div, tests, alpha), per))
    if advice is None:
        return "undetermined", f"the interval of its effect straddles {points}"
    return "undetermined", (f"the interval of its effect straddles {points}: "
                            + advice_text(advice(), per))


def _judge(row: dict, screen_row: dict, fit: FactorFit | None, div: pd.DataFrame,
           threshold: float, tests: int, missing: str, alpha: float, advise: bool
           ) -> tuple[str, str]:
    """The verdict: a claim about accuracy needs the levels' own noise (their moderated
    variances, study.stats.variance): *influential* needs two converged seeds at the level that
    shows it and at the baseline, *small* and *negligible* at every cell; what only the noise
    pooled over the design points supports (`screen_row`: its intervals and Holm-adjusted p) is
    *likely* that (LIKELY). advise: say the seeds that would decide or confirm it."""
    # the seeds that would decide it under its levels' own noise, planned once: they are also
    # those that would confirm a likely verdict
    advice = (functools.cache(functools.partial(advised_plan, fit, threshold, alpha)) if advise
              else None)
    primary = _verdict(row, fit, div, threshold, tests, missing, advice, alpha)
    if fit is None or (primary[0] in CLAIMS and fit.own_variance) or (
            primary[0] == "influential" and (fit.claimable.any()
                                             or row["divergence_p_holm"] < alpha)):
        return primary  # decided (divergence's test needs no variance), or no fit
    verdict, reason = (_verdict(screen_row, fit, div, threshold, tests, missing, None, alpha)
                       if fit.claimable.any() else primary)
    if verdict not in CLAIMS:
        return primary
    confirm = advice_text(advice(), "seeds per design point", "confirm") if advice else "n/a"
    looks = f"{verdict} under the noise pooled over the design points ({reason}), but "
    short = fit.unreplicated_levels()
    if not short:
        return LIKELY[verdict], (looks + "not yet under its levels' own noise, which may differ "
                                 "from the rest: " + confirm)
    plural = len(short) > 1
    return LIKELY[verdict], (looks + f"its level{'s' if plural else ''} "
                             f"{', '.join(map(str, short))} {'have' if plural else 'has'} fewer "
                             f"than two converged seeds, so {'their' if plural else 'its'} own "
                             "noise is unknown: " + confirm)


def _intervals(d: np.ndarray, se: np.ndarray, q_effect: float, q_equivalence: float,
               claimable: np.ndarray | None = None) -> dict:
    """The effect's simultaneous 1 - alpha interval and the equivalence bound (1 - 2 alpha) of
    differences `d` with standard errors `se` and those critical values; the interval's lower
    end from the `claimable` levels (default: all)."""
    low = np.clip(np.abs(d) - q_effect * se, 0, None)
    return {"effect_ci_low": float(np.max(low if claimable is None else low[claimable])),
            "effect_ci_high": float(np.max(np.abs(d) + q_effect * se)),
            "equivalence_bound": float(np.max(np.abs(d) + q_equivalence * se))}


def _screen_rows(ranking: pd.DataFrame, fits: dict[str, FactorFit]) -> list[dict]:
    """The ranking's rows as the pooled noise has them: each fitted factor's intervals and
    accuracy p, Holm-adjusted together with the divergence tests (a family of their own)."""
    pooled_p = ranking["factor"].map(lambda f: fits[f].screen["p"] if f in fits else np.nan)
    adjusted = holm(pd.concat([pooled_p, ranking["divergence_p"]], ignore_index=True))
    rows = []
    for (_, row), p in zip(ranking.iterrows(), adjusted.iloc[:len(ranking)], strict=True):
        fit_ = fits.get(row["factor"])
        rows.append(row.to_dict() | ({"accuracy_p_holm": p} | _intervals(
            fit_.differences, fit_.screen["se"], fit_.screen["q_effect"],
            fit_.screen["q_equivalence"])
                                     if fit_ else {}))
    return rows


def _factor_row(fit: FactorFit) -> dict:
    d, se = fit.differences, fit.se
    largest = int(np.argmax(np.abs(d)))
    corrected = fit.corrected
    means = dict(zip(fit.levels, fit.weights @ fit.mean, strict=True))
    return {
        "factor": fit.factor,
        "effect": corrected if np.isnan(corrected) else max(0.0, corrected),
        **_intervals(d, se, fit.q_effect, fit.q_equivalence,
                     fit.claimable if fit.claimable.any() else None),
        "largest_level": fit.others[largest], "largest_difference": float(d[largest]),
        "raw_range": float(max(means.values()) - min(means.values())),
        "best_level": max(means, key=means.get), "worst_level": min(means, key=means.get),
        "omega_squared": fit.omega_squared(), "accuracy_p": fit.p,
    }


RANKING_COLUMNS = [
    "rank", "rank_low", "rank_high", "factor", "effect", "effect_ci_low", "effect_ci_high",
    "equivalence_bound", "largest_level", "largest_difference", "raw_range", "best_level",
    "worst_level", "omega_squared", "accuracy_p", "accuracy_p_holm", "divergence_p",
    "divergence_p_holm", "levels", "trials", "diverged", "failed", "verdict", "reason"]


def _no_data_row(part: pd.DataFrame, factor: str, baseline: object) -> dict:
    others = part[part[factor] != baseline]
    failed = int((others["state"] == "FAIL").sum())  # not one still waiting or running
    reason = (f"all {len(others)} of its non-baseline trials failed" if len(others) and
              failed == len(others) else "no finished trial at a non-baseline level yet")
    return {"factor": factor, "verdict": "no data", "reason": reason}


def _rank_intervals(model: FittedModel) -> pd.DataFrame:
    """95% intervals of each factor's rank, from ranking the effects of the model's parametric
    redraws (rather than resampling seeds: it works with one seed per design point)."""
    ranks = model.parametric_redraws().round(RANK_DECIMALS).rank(axis=1, ascending=False,
                                                                 method="min")
    return pd.DataFrame({"rank_low": ranks.quantile(0.025, interpolation="lower"),
                         "rank_high": ranks.quantile(0.975, interpolation="higher")}).astype(int)


def analyse(model: FittedModel, practical_effect: float = PRACTICAL_EFFECT, advise: bool = True
            ) -> Analysis:
    """The study's influence analysis (see the module's docstring); advise: plan the seeds that
    would decide each undecided factor for its reason (a power calculation: the simulations,
    which read only the verdicts, leave it out)."""
    divs = {factor: model.divergence[model.divergence["factor"] == factor]
            for factor in model.slices}
    rows, per_level, diff_rows = [], [], []
    for factor, part in model.slices.items():
        fit, factor_div = model.factors.get(factor), divs[factor]
        if fit is None and len(factor_div) < 2:
            rows.append(_no_data_row(part, factor, model.spec.factors[factor].baseline))
            continue
        row = {"factor": factor}
        if fit is not None:
            row = _factor_row(fit)
            per_level += fit.level_rows()
            diff_rows += [{"factor": factor, "level": level, "difference": d, "se": se,
                           "ci_low": d - fit.q_effect * se, "ci_high": d + fit.q_effect * se,
                           "p": p}
                          for level, d, se, p in zip(fit.others, fit.differences, fit.se,
                                                     fit.p_each, strict=True)]
        tested = factor_div["fisher_p"].dropna()
        row |= {"divergence_p": min(1.0, tested.min() * len(tested)) if len(tested) else np.nan,
                "levels": len(factor_div), "trials": int(factor_div["trials"].sum()),
                "diverged": int(factor_div["diverged"].sum()),
                "failed": int((part["state"] == "FAIL").sum())}
        rows.append(row)
    ranking = pd.DataFrame(rows, columns=[c for c in RANKING_COLUMNS if c not in
                                          ("rank", "rank_low", "rank_high")])
    family = pd.concat([ranking["accuracy_p"], ranking["divergence_p"]], ignore_index=True)
    adjusted = holm(family)
    ranking["accuracy_p_holm"] = adjusted.iloc[:len(ranking)].to_numpy()
    ranking["divergence_p_holm"] = adjusted.iloc[len(ranking):].to_numpy()
    tests = int(family.notna().sum()) or 1
    screens = _screen_rows(ranking, model.factors)
    decided = [(row["verdict"], row["reason"]) if row["verdict"] == "no data" else _judge(
        row.to_dict(), screen, model.factors.get(row["factor"]), divs[row["factor"]],
        practical_effect, tests, "" if row["factor"] in model.factors else  # only without a fit
        _accuracy_missing(model.slices[row["factor"]], model.spec, row["factor"]), model.alpha,
        advise)
        for (_, row), screen in zip(ranking.iterrows(), screens, strict=True)]
    ranking["verdict"] = [verdict for verdict, _ in decided]
    ranking["reason"] = [reason for _, reason in decided]
    corrected = ranking["factor"].map(
        {name: fit.corrected for name, fit in model.factors.items()}).astype(float)
    order = corrected.sort_values(ascending=False, na_position="last").index
    ranking = ranking.loc[order].reset_index(drop=True)
    corrected = corrected[order].reset_index(drop=True)
    # equal effects share a rank (e.g. all-equal accuracies); an undefined effect has none
    ranking.insert(0, "rank", corrected.round(RANK_DECIMALS).rank(method="min", ascending=False)
                   .astype("Int64"))
    ranked = model.factors and all(fit.df for fit in model.factors.values())
    intervals = _rank_intervals(model) if ranked else pd.DataFrame()
    for position, column in enumerate(("rank_low", "rank_high"), start=1):
        values = (ranking["factor"].map(intervals[column]) if not intervals.empty
                  else [pd.NA] * len(ranking))
        ranking.insert(position, column, pd.array(values, dtype="Int64"))
    levels = _merge_levels(pd.DataFrame(per_level, columns=LEVEL_COLUMNS), model.divergence)
    return Analysis(ranking[RANKING_COLUMNS], levels,
                    pd.DataFrame(diff_rows, columns=["factor", "level", "difference", "se",
                                                     "ci_low", "ci_high", "p"]),
                    practical_effect, model)


def rank_trials(trials: pd.DataFrame, spec: StudySpec,
                practical_effect: float = PRACTICAL_EFFECT, advise: bool = True) -> Analysis:
    """A study's trials (every state) fitted, ranked and judged (advise: as `analyse`)."""
    return analyse(fit(trials, spec), practical_effect, advise)


def _merge_levels(levels: pd.DataFrame, div: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (converged trials) and divergence (finished trials) per level, in design order:
    a level whose trials all diverged has a divergence row and no accuracy."""
    # object levels on both sides: where only numeric factors have an accuracy fit (every
    # trial of a categorical factor's levels diverged), pandas reads one side's as floats
    merged = div.astype({"level": object}).merge(levels.astype({"level": object}),
                                                   on=["factor", "level"], how="left")
    merged["n"] = merged["n"].fillna(0).astype(int)
    return merged[["factor", "level", "baseline", "n", "mean", "ci_low", "ci_high", "diverged",
                   "trials", "rate", "rate_low", "rate_high", "fisher_p"]]
