"""Statistics of influence, as plain data: which factors change test accuracy, or make training
diverge, by more than seed-to-seed noise explains, and by how much.

One model for the whole study. A fixed design (ofat, grid) is analysed as
`accuracy ~ C(design_point)` over its converged trials, so every comparison uses the error
variance pooled over all replicated design points. A level's mean is a contrast of point means
(OFAT: the level's own point; grid: the average of the points at that level), and each level is
compared with the factor's baseline level. Sampled designs (optuna, hydra) have no replicated
points: each factor's levels (quartile bins of sampled values) get a one-way model of their own.
The model and its estimates are study.contrasts; this module judges and ranks the factors.

Per factor (`analyse` returns all of it as an `Analysis` of DataFrames):
- accuracy: an F-test of "every level equals the baseline" (the Wald test of its contrasts) and
  each level's difference from the baseline with Dunnett-type simultaneous intervals (the
  critical value of max |t| over the factor's comparisons, by Monte Carlo from their correlation);
- divergence: each level's rate with a Wilson interval, Fisher's exact test against the baseline;
- the effect: the largest |difference from the baseline|, less what that maximum averages when
  nothing has an effect (so a factor with more levels gains no head start), clipped at zero, with
  the interval of the largest true difference implied by the simultaneous intervals;
- omega-squared; a rank interval from redrawing the study under the fitted model;
- a verdict (VERDICTS) with its reason, at the practical threshold `practical_effect`.
The factor tests (accuracy, and divergence where any trial diverged) are Holm-corrected together:
OFAT's factors share the baseline point, so their tests are correlated; Holm needs no independence.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from study.contrasts import (
    LEVEL_COLUMNS,
    Comparison,
    FactorEstimates,
    comparisons,
    divergence,
    estimate,
    factor_slices,
    level_rows,
    omega_squared,
)
from study.spec import StudySpec

ALPHA = 0.05  # family-wise error rate over the factor tests (Holm)
PRACTICAL_EFFECT = 0.01  # accuracy: one point; the default of analysis.practical_effect
MAX_SEEDS = 200  # seeds-needed estimates above this say "more than"
RANK_DECIMALS = 12  # effects equal to this many decimals share a rank (float noise is no effect)
VERDICTS = ("influential", "small", "negligible", "undetermined", "no data")


@dataclass
class Analysis:
    """Everything the report shows about influence; every undefined number is NaN."""

    ranking: pd.DataFrame  # one row per varied factor, in rank order
    levels: pd.DataFrame  # per (factor, level): accuracy and divergence
    differences: pd.DataFrame  # per (factor, non-baseline level): difference from the baseline
    noise: dict[str, float]  # error std, its df, the baseline's std and seeds
    practical_effect: float
    pooled: bool  # one model over all design points (fixed designs), else one per factor


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


def _seeds_to_decide(comp: Comparison, q: float, gap: float) -> int | None:
    """Seeds per design point (a point that has more, like a replicated baseline, keeps them) at
    which, at the observed noise and differences, the effect's interval (half-width q * se)
    would clear the practical threshold that now lies `gap` from the largest observed
    difference; None when more than MAX_SEEDS would be needed."""
    c = comp.contrasts
    for seeds in range(int(comp.n.min()) + 1, MAX_SEEDS + 1):
        se = comp.s * np.sqrt(np.max(np.diag((c / np.maximum(comp.n, seeds)) @ c.T)))
        if q * se < gap:
            return seeds
    return None


def _divergence_seeds(rows: pd.DataFrame, tests: int) -> int | None:
    """Seeds per level at which the observed divergence rates would differ significantly from
    the baseline's (Fisher, Bonferroni over the tests); None beyond MAX_SEEDS."""
    base = rows[rows["baseline"]].iloc[0]
    others = rows[~rows["baseline"] & (rows["rate"] != base["rate"])]
    for seeds in range(int(rows["trials"].min()) + 1, MAX_SEEDS + 1):
        kb = round(base["rate"] * seeds)
        for rate in others["rate"]:
            k = round(rate * seeds)
            if sps.fisher_exact([[k, seeds - k], [kb, seeds - kb]]).pvalue < ALPHA / tests:
                return seeds
    return None


def _seeds_text(seeds: int | None, per: str) -> str:
    return (f"about {seeds} {per} would decide it" if seeds
            else f"more than {MAX_SEEDS} {per} would be needed")


def _verdict(row: dict, comp: Comparison | None, div: pd.DataFrame, threshold: float,
             tests: int) -> tuple[str, str]:
    """(verdict, reason) from the factor's tests, effect interval and divergence."""
    points = f"{100 * threshold:g} point{'s' if threshold != 0.01 else ''}"
    per = ("seeds per design point" if comp is None or comp.error_id == "pooled"
           else "trials per level")
    sig_acc, sig_div = row["accuracy_p_holm"] < ALPHA, row["divergence_p_holm"] < ALPHA
    worse = div[~div["baseline"]]
    base_rate = div.loc[div["baseline"], "rate"]
    more_divergence = not base_rate.empty and (worse["rate"] > base_rate.iloc[0]).any()
    if sig_div:
        top = worse.loc[worse["fisher_p"].idxmin()]
        return "influential", (f"diverges more often at {top['level']} ({top['diverged']}/"
                               f"{top['trials']} trials) than at the baseline")
    if comp is None:
        return "undetermined", ("no level but the baseline has a converged trial; divergence "
                                "does not yet differ significantly: "
                                + _seeds_text(_divergence_seeds(div, tests), per))
    if comp.df == 0:
        return "undetermined", ("no design point has two converged seeds, so the noise cannot "
                                "be measured: run more seeds")
    if sig_acc and row["effect_ci_low"] >= threshold:
        return "influential", f"its largest difference from the baseline is at least {points}"
    if sig_acc and row["equivalence_bound"] < threshold:
        return "small", f"it differs from the baseline, but every level by less than {points}"
    if not sig_acc and row["equivalence_bound"] < threshold and not more_divergence:
        return "negligible", (f"every level is within {points} of the baseline (equivalence "
                              "test) and diverges no more often")
    if more_divergence and not sig_acc:
        return "undetermined", ("some level diverges more often than the baseline, not yet "
                                "significantly: " + _seeds_text(_divergence_seeds(div, tests), per))
    largest = abs(row["largest_difference"])
    decide = (_seeds_to_decide(comp, row["q95"], largest - threshold) if largest >= threshold
              else _seeds_to_decide(comp, row["q90"], threshold - largest))
    return "undetermined", (f"the interval of its effect straddles {points}: "
                            + _seeds_text(decide, per))


def _factor_row(comp: Comparison) -> tuple[dict, FactorEstimates]:
    est = estimate(comp)
    d, se = est.differences, est.se
    largest = int(np.argmax(np.abs(d)))
    corrected = float(np.abs(d).max() - est.null_mean)  # NaN without a noise estimate
    means = dict(zip(comp.levels, comp.weights @ comp.mean, strict=True))
    return {
        "factor": comp.factor,
        "corrected": corrected,  # ranks; can be below zero
        "effect": corrected if np.isnan(corrected) else max(0.0, corrected),
        "effect_ci_low": float(np.max(np.clip(np.abs(d) - est.q95 * se, 0, None))),
        "effect_ci_high": float(np.max(np.abs(d) + est.q95 * se)),
        "equivalence_bound": float(np.max(np.abs(d) + est.q90 * se)),
        "largest_level": comp.others[largest], "largest_difference": float(d[largest]),
        "raw_range": float(max(means.values()) - min(means.values())),
        "best_level": max(means, key=means.get), "worst_level": min(means, key=means.get),
        "omega_squared": omega_squared(comp), "accuracy_p": est.p,
        "q95": est.q95, "q90": est.q90,
    }, est


RANKING_COLUMNS = [
    "rank", "rank_low", "rank_high", "factor", "effect", "effect_ci_low", "effect_ci_high",
    "equivalence_bound", "largest_level", "largest_difference", "raw_range", "best_level",
    "worst_level", "omega_squared", "accuracy_p", "accuracy_p_holm", "divergence_p",
    "divergence_p_holm", "levels", "trials", "diverged", "failed", "verdict", "reason"]


def _no_data_row(part: pd.DataFrame, factor: str, spec: StudySpec) -> dict:
    others = part[part[factor] != spec.factors[factor].baseline]
    failed = int((others["state"] != "COMPLETE").sum())
    reason = (f"all {len(others)} of its non-baseline trials failed" if len(others) and
              failed == len(others) else "no finished trial at a non-baseline level yet")
    return {"factor": factor, "verdict": "no data", "reason": reason}


def _rank_intervals(comps: dict[str, Comparison], estimates: dict[str, FactorEstimates],
                    draws: int = 1000) -> pd.DataFrame:
    """95% intervals of each factor's rank, from redrawing every cell mean (and the error std)
    under the fitted model and ranking the redrawn effects. A parametric redraw rather than
    resampling seeds: it works with one seed per design point, where resampling cannot vary."""
    rng = np.random.default_rng(1)
    cells = sorted({c for comp in comps.values() for c in comp.cells})
    z = dict(zip(cells, rng.standard_normal((len(cells), draws)), strict=True))
    errors = {comp.error_id: (comp.s, comp.df) for comp in comps.values()}
    scale = {eid: s * np.sqrt(rng.chisquare(df, draws) / df) for eid, (s, df) in errors.items()}
    effects = {}
    for name, comp in comps.items():
        noise = np.stack([z[c] for c in comp.cells]) / np.sqrt(comp.n)[:, None]
        means = comp.mean[:, None] + noise * scale[comp.error_id]
        effects[name] = np.abs(comp.contrasts @ means).max(axis=0) - estimates[name].null_mean
    table = pd.DataFrame(effects)
    ranks = table.round(RANK_DECIMALS).rank(axis=1, ascending=False, method="min")
    return pd.DataFrame({"rank_low": ranks.quantile(0.025, interpolation="lower"),
                         "rank_high": ranks.quantile(0.975, interpolation="higher")}).astype(int)


def analyse(trials: pd.DataFrame, spec: StudySpec, noise: dict[str, float],
            practical_effect: float = PRACTICAL_EFFECT) -> Analysis:
    """The study's influence analysis (see the module's docstring)."""
    slices = factor_slices(trials, spec)
    comps = comparisons(trials, spec, slices)
    div = divergence(spec, slices)
    divs = {factor: div[div["factor"] == factor] for factor in slices}
    rows, estimates, per_level, diff_rows = [], {}, [], []
    for factor in slices:
        comp, factor_div = comps.get(factor), divs[factor]
        if comp is None and len(factor_div) < 2:
            rows.append(_no_data_row(slices[factor], factor, spec))
            continue
        row = {"factor": factor}
        if comp is not None:
            row, estimates[factor] = _factor_row(comp)
            per_level += level_rows(comp)
            est = estimates[factor]
            diff_rows += [{"factor": factor, "level": level, "difference": d, "se": se,
                           "ci_low": d - est.q95 * se, "ci_high": d + est.q95 * se, "p": p}
                          for level, d, se, p in zip(comp.others, est.differences, est.se,
                                                     est.p_each, strict=True)]
        tested = factor_div["fisher_p"].dropna()
        row |= {"divergence_p": min(1.0, tested.min() * len(tested)) if len(tested) else np.nan,
                "levels": len(factor_div), "trials": int(factor_div["trials"].sum()),
                "diverged": int(factor_div["diverged"].sum()),
                "failed": int((slices[factor]["state"] != "COMPLETE").sum())}
        rows.append(row)
    ranking = pd.DataFrame(rows, columns=[c for c in RANKING_COLUMNS if c not in
                                          ("rank", "rank_low", "rank_high")]
                           + ["corrected", "q95", "q90"])
    family = pd.concat([ranking["accuracy_p"], ranking["divergence_p"]], ignore_index=True)
    adjusted = holm(family)
    ranking["accuracy_p_holm"] = adjusted.iloc[:len(ranking)].to_numpy()
    ranking["divergence_p_holm"] = adjusted.iloc[len(ranking):].to_numpy()
    tests = int(family.notna().sum()) or 1
    decided = [(row["verdict"], row["reason"]) if row["verdict"] == "no data" else _verdict(
        row.to_dict(), comps.get(row["factor"]), divs[row["factor"]], practical_effect, tests)
        for _, row in ranking.iterrows()]
    ranking["verdict"] = [verdict for verdict, _ in decided]
    ranking["reason"] = [reason for _, reason in decided]
    ranking = ranking.sort_values("corrected", ascending=False, na_position="last",
                                  ignore_index=True)
    # equal effects share a rank (e.g. all-equal accuracies); an undefined effect has none
    ranking.insert(0, "rank", ranking["corrected"].round(RANK_DECIMALS).rank(method="min",
                                                                              ascending=False)
                   .astype("Int64"))
    intervals = (_rank_intervals({f: comps[f] for f in estimates}, estimates)
                 if estimates and all(comps[f].df for f in estimates) else pd.DataFrame())
    for position, column in enumerate(("rank_low", "rank_high"), start=1):
        values = (ranking["factor"].map(intervals[column]) if not intervals.empty
                  else [pd.NA] * len(ranking))
        ranking.insert(position, column, pd.array(values, dtype="Int64"))
    levels = _merge_levels(pd.DataFrame(per_level, columns=LEVEL_COLUMNS), div)
    return Analysis(ranking[RANKING_COLUMNS], levels,
                    pd.DataFrame(diff_rows, columns=["factor", "level", "difference", "se",
                                                     "ci_low", "ci_high", "p"]),
                    noise, practical_effect, spec.kind.fixed)


def _merge_levels(levels: pd.DataFrame, div: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (converged trials) and divergence (finished trials) per level, in design order:
    a level whose trials all diverged has a divergence row and no accuracy."""
    merged = div.merge(levels, on=["factor", "level"], how="left")
    merged["n"] = merged["n"].fillna(0).astype(int)
    return merged[["factor", "level", "baseline", "n", "mean", "ci_low", "ci_high", "diverged",
                   "trials", "rate", "rate_low", "rate_high", "fisher_p"]]
