"""Analyses for designs that vary factors jointly (grid, optuna), as DataFrames.

- `interactions`: a two-way ANOVA with interaction for each pair of jointly varied factors
  (interaction p-value, Holm-corrected, and eta-squared) and each pair's table of mean accuracy.
- `optuna_importances`: Optuna's fANOVA and PED-ANOVA evaluators, repeated on bootstrap
  resamples of the trials, each beside a permutation reference: the same evaluator on the same
  trials with their accuracies shuffled, i.e. the share that noise alone would get.

Both read the finished trials; study.stats.ranking ranks the factors, these only add to it.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import optuna
import pandas as pd
from statsmodels.formula.api import ols
from statsmodels.stats.anova import anova_lm

from study.design.spec import StudySpec
from study.stats.frames import ACCURACY, finished
from study.stats.ranking import holm
from study.stats.slices import level_labels

IMPORTANCE_COLUMNS = ["evaluator", "factor", "mean", "std", "shuffled_mean", "repeats"]
PED_ANOVA_QUANTILE = 0.1  # Optuna's default target_quantile: the top 10% of trials
PED_ANOVA_MIN_TOP = 5  # Optuna asks for at least this many trials above the quantile


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
    result["interaction_p_holm"] = holm(result["interaction_p"])
    return result.sort_values("interaction_p", ignore_index=True), tables


def _scores(trials: list[optuna.trial.FrozenTrial],
            evaluator: optuna.importance.BaseImportanceEvaluator,
            params: list[str]) -> dict[str, float]:
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per resample
    try:
        study = optuna.create_study(direction="maximize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    study.add_trials(trials)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PED-ANOVA is experimental
        try:
            return optuna.importance.get_param_importances(study, evaluator=evaluator,
                                                           params=params, normalize=True)
        except RuntimeError:  # fANOVA: "zero total variance" when a resample's values are equal
            return dict.fromkeys(params, float("nan"))


def optuna_importances(study: optuna.Study, spec: StudySpec, repeats: int = 5) -> pd.DataFrame:
    """fANOVA (and PED-ANOVA, given enough trials above its quantile) importances over `repeats`
    bootstrap resamples of the finished trials: mean and std per (evaluator, factor), and the mean
    share on accuracy-shuffled trials as the noise reference."""
    trials = [t for t in study.get_trials(deepcopy=False)
              if t.state == optuna.trial.TrialState.COMPLETE]
    params = [f for f in spec.factors if len({t.params.get(f) for t in trials}) > 1]
    if len(trials) < 10 or not params or len({t.value for t in trials}) < 2:
        return pd.DataFrame(columns=IMPORTANCE_COLUMNS)  # too few, or nothing to explain
    evaluators = {"fANOVA": lambda s: optuna.importance.FanovaImportanceEvaluator(seed=s)}
    if PED_ANOVA_QUANTILE * len(trials) >= PED_ANOVA_MIN_TOP:
        evaluators["PED-ANOVA"] = lambda s: optuna.importance.PedAnovaImportanceEvaluator(
            target_quantile=PED_ANOVA_QUANTILE)
    rng = np.random.default_rng(0)
    rows = []
    for r in range(repeats):
        resample = [trials[i] for i in rng.integers(0, len(trials), len(trials))]
        values = rng.permutation([t.value for t in resample])
        shuffled = [optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                              value=float(v)) for t, v in zip(resample, values,
                                                                              strict=True)]
        for name, make in evaluators.items():
            real, noise = _scores(resample, make(r), params), _scores(shuffled, make(r), params)
            rows += [{"evaluator": name, "factor": f, "importance": real.get(f, 0.0),
                      "shuffled": noise.get(f, 0.0)} for f in params]
    raw = pd.DataFrame(rows).groupby(["evaluator", "factor"])
    summary = raw["importance"].agg(["mean", "std", "count"]).assign(
        shuffled_mean=raw["shuffled"].mean())
    return summary.rename(columns={"count": "repeats"}).reset_index()[IMPORTANCE_COLUMNS]\
        .sort_values(["evaluator", "mean"], ascending=[True, False], ignore_index=True)
