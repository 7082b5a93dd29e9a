"""Statistics of influence, as DataFrames: is each factor's effect larger than seed-to-seed noise?

- `level_intervals`: mean test accuracy per (factor, level) with a 95% bootstrap CI over seeds.
- `factor_tests`: per factor, eta-squared, one-way ANOVA and Kruskal-Wallis p-values across its
  levels, both Holm-corrected over the factors tested.
- `influence`: the ranking: effect (best minus worst level mean) with a bootstrap CI, the tests,
  a verdict (VERDICTS) and ties between ranks whose effect intervals overlap.
- `interactions`: for designs that vary factors jointly (grid, optuna), a two-way ANOVA per pair
  of factors (interaction p-value and eta-squared) and the two-way tables of mean accuracy.
- `optuna_importances`: Optuna's fANOVA and PED-ANOVA evaluators, repeated on bootstrap resamples
  of the trials (and fANOVA forest seeds), as mean and spread.

Each factor's levels are compared on its slice of trials (study.analysis.factor_slice); the
factors, their levels and the baseline are the study spec's.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import optuna
import pandas as pd
from scipy import stats as sps
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm
from statsmodels.stats.multitest import multipletests

from study.analysis import ACCURACY, finished, level_labels, level_slice
from study.spec import StudySpec

ALPHA = 0.05  # family-wise error rate over the factors (Holm)
PRACTICAL_EFFECT = 0.01  # accuracy; a significant effect below one point is "small"
N_BOOTSTRAP = 2000
IMPORTANCE_COLUMNS = ["evaluator", "factor", "mean", "std", "repeats"]
VERDICTS = ("influential", "small", "not distinguishable from seed noise", "not testable")


def _groups(trials: pd.DataFrame, factor: str, spec: StudySpec) -> dict[object, np.ndarray]:
    """Test accuracies of the finished trials in the factor's slice, by level."""
    part = level_slice(finished(trials), factor, spec)
    return {level: g[ACCURACY].to_numpy() for level, g in part.groupby("level", sort=True)}


def _bootstrap_means(values: np.ndarray, rng: np.random.Generator, n_boot: int) -> np.ndarray:
    """Bootstrap replicates of the mean; NaN for a single value, which has no interval."""
    if len(values) < 2:
        return np.full(n_boot, np.nan)
    return values[rng.integers(0, len(values), (n_boot, len(values)))].mean(axis=1)


def level_intervals(trials: pd.DataFrame, spec: StudySpec, n_boot: int = N_BOOTSTRAP,
                    seed: int = 0) -> pd.DataFrame:
    """Mean accuracy per (factor, level) with a 95% percentile-bootstrap CI over its trials."""
    rng = np.random.default_rng(seed)
    rows = []
    for factor in spec.factors:
        for level, values in _groups(trials, factor, spec).items():
            boot = _bootstrap_means(values, rng, n_boot)
            rows.append({"factor": factor, "level": level, "n": len(values),
                         "mean": values.mean(), "ci_low": np.quantile(boot, 0.025),
                         "ci_high": np.quantile(boot, 0.975)})
    return pd.DataFrame(rows, columns=["factor", "level", "n", "mean", "ci_low", "ci_high"])


def factor_tests(trials: pd.DataFrame, spec: StudySpec) -> pd.DataFrame:
    """Eta-squared, ANOVA and Kruskal-Wallis p per factor, Holm-corrected over the factors."""
    rows = []
    for factor in spec.factors:
        groups = list(_groups(trials, factor, spec).values())
        if len(groups) < 2:
            continue
        values = np.concatenate(groups)
        ss_total = ((values - values.mean()) ** 2).sum()
        ss_between = sum(len(g) * (g.mean() - values.mean()) ** 2 for g in groups)
        testable = len(values) > len(groups) and ss_total > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # constant groups: scipy warns and returns nan
            anova = sps.f_oneway(*groups).pvalue if testable else np.nan
            kruskal = sps.kruskal(*groups).pvalue if testable else np.nan
        rows.append({"factor": factor, "levels": len(groups), "trials": len(values),
                     "eta_squared": ss_between / ss_total if ss_total > 0 else np.nan,
                     "anova_p": anova, "kruskal_p": kruskal})
    tests = pd.DataFrame(rows, columns=["factor", "levels", "trials", "eta_squared", "anova_p",
                                        "kruskal_p"])
    for column in ("anova_p", "kruskal_p"):
        tests[f"{column}_holm"] = _holm(tests[column])
    return tests


def _holm(p: pd.Series) -> pd.Series:
    adjusted = pd.Series(np.nan, index=p.index)
    valid = p.notna()
    if valid.any():
        adjusted[valid] = multipletests(p[valid], alpha=ALPHA, method="holm")[1]
    return adjusted


def verdict(p_holm: float, effect: float) -> str:
    if np.isnan(p_holm):
        return "not testable"
    if p_holm >= ALPHA:
        return "not distinguishable from seed noise"
    return "influential" if effect >= PRACTICAL_EFFECT else "small"


def influence(trials: pd.DataFrame, spec: StudySpec, n_boot: int = N_BOOTSTRAP,
              seed: int = 0) -> pd.DataFrame:
    """The ranking: one row per factor, largest effect first, with CIs, tests and verdicts."""
    rng = np.random.default_rng(seed)
    tests = factor_tests(trials, spec).set_index("factor")
    rows = []
    for factor in tests.index:
        groups = _groups(trials, factor, spec)
        means = {level: v.mean() for level, v in groups.items()}
        boot = np.stack([_bootstrap_means(v, rng, n_boot) for v in groups.values()])
        boot_effect = boot.max(axis=0) - boot.min(axis=0)
        best, worst = max(means, key=means.get), min(means, key=means.get)
        effect = means[best] - means[worst]
        row = tests.loc[factor]
        rows.append({"factor": factor, "effect": effect,
                     "effect_ci_low": np.quantile(boot_effect, 0.025),
                     "effect_ci_high": np.quantile(boot_effect, 0.975),
                     "best_level": best, "worst_level": worst, **row.to_dict(),
                     "verdict": verdict(row["anova_p_holm"], effect)})
    ranking = pd.DataFrame(rows)
    if ranking.empty:
        return ranking
    ranking = ranking.sort_values("effect", ascending=False, ignore_index=True)
    ranking[["levels", "trials"]] = ranking[["levels", "trials"]].astype(int)
    overlaps = ranking["effect_ci_high"].shift(-1).fillna(-np.inf) >= ranking["effect_ci_low"]
    ranking["tied_with_next"] = overlaps & (ranking.index < len(ranking) - 1)
    ranking.insert(0, "rank", _tied_ranks(ranking["tied_with_next"]))
    return ranking


def _tied_ranks(tied_with_next: pd.Series) -> list[int]:
    """Rank 1, 2, ... where a factor tied with the one above it shares that one's rank."""
    ranks, current = [], 1
    for i, tied in enumerate(tied_with_next):
        ranks.append(current)
        if not tied:
            current = i + 2
    return ranks


def varied_factors(trials: pd.DataFrame, spec: StudySpec) -> list[str]:
    done = finished(trials)
    return [f for f in spec.factors if done[f].nunique() > 1]


def interactions(trials: pd.DataFrame, spec: StudySpec
                 ) -> tuple[pd.DataFrame, dict[tuple[str, str], pd.DataFrame]]:
    """Two-way ANOVA with interaction for each pair of jointly varied factors, and each pair's
    table of mean accuracy (rows: first factor's levels, columns: second's)."""
    done = finished(trials)
    rows, tables = [], {}
    for a, b in itertools.combinations(varied_factors(trials, spec), 2):
        frame = pd.DataFrame({"a": level_labels(done[a]), "b": level_labels(done[b]),
                              "y": done[ACCURACY]})
        cells = frame.groupby(["a", "b"]).size()
        if (cells.groupby(level="a").size() >= 2).sum() < 2:
            continue  # not crossed: the pair is never varied jointly (e.g. OFAT's L shape)
        table = frame.pivot_table(index="a", columns="b", values="y", aggfunc="mean")
        tables[(a, b)] = table.rename(index=str, columns=str).rename_axis(index=a, columns=b)
        p, eta = np.nan, np.nan
        if len(frame) > len(cells) and frame["y"].var() > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                labelled = frame.astype({"a": str, "b": str})  # patsy reads no nullable ints
                table = anova_lm(ols("y ~ C(a) * C(b)", data=labelled).fit(), typ=2)
            p = table.loc["C(a):C(b)", "PR(>F)"]
            eta = table.loc["C(a):C(b)", "sum_sq"] / table["sum_sq"].sum()
        rows.append({"factor_a": a, "factor_b": b, "cells": len(cells),
                     "interaction_p": p, "interaction_eta_squared": eta})
    result = pd.DataFrame(rows, columns=["factor_a", "factor_b", "cells", "interaction_p",
                                         "interaction_eta_squared"])
    result["interaction_p_holm"] = _holm(result["interaction_p"])
    return result.sort_values("interaction_p", ignore_index=True), tables


def optuna_importances(study: optuna.Study, spec: StudySpec, repeats: int = 5) -> pd.DataFrame:
    """fANOVA and PED-ANOVA importances over `repeats` bootstrap resamples of the finished trials
    (fANOVA's forest seeded alike): mean and std per (evaluator, factor)."""
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE]
    params = [f for f in spec.factors if len({t.params.get(f) for t in trials}) > 1]
    if len(trials) < 10 or not params:
        return pd.DataFrame(columns=IMPORTANCE_COLUMNS)
    evaluators = {
        "fANOVA": lambda s: optuna.importance.FanovaImportanceEvaluator(seed=s),
        "PED-ANOVA": lambda s: optuna.importance.PedAnovaImportanceEvaluator(),
    }
    rng = np.random.default_rng(0)
    rows = []
    for r in range(repeats):
        resample = optuna.create_study(direction="maximize")
        resample.add_trials([trials[i] for i in rng.integers(0, len(trials), len(trials))])
        for name, make in evaluators.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scores = optuna.importance.get_param_importances(
                    resample, evaluator=make(r), params=params, normalize=True)
            rows += [{"evaluator": name, "factor": f, "importance": scores.get(f, 0.0),
                      "repeat": r} for f in params]
    raw = pd.DataFrame(rows)
    summary = raw.groupby(["evaluator", "factor"])["importance"].agg(["mean", "std", "count"])
    return summary.rename(columns={"count": "repeats"}).reset_index().sort_values(
        ["evaluator", "mean"], ascending=[True, False], ignore_index=True)
