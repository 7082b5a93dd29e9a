"""Which trials compare a factor's levels, and in which order the levels are shown.

In an OFAT study a factor's levels are compared on its own slice: the trials whose other factors
are all at the baseline. In grid and sampled studies they are marginal means over all trials
(numeric factors with many distinct values are binned into quartiles). Levels appear in the
spec's design order, never alphabetically.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from study.design.spec import StudySpec

MAX_LEVELS = 8  # more distinct values than this (sampled numeric factors) are binned


def studied(spec: StudySpec) -> list[str]:
    """The factors the study compares levels of: varied, over more than one level (a hydra
    study marks every factor varied, whether its jobs changed it or not)."""
    return [f for f in spec.varied if len(spec.factors[f].levels) > 1]


def _at_baseline(trials: pd.DataFrame, spec: StudySpec) -> dict[str, np.ndarray]:
    """Per factor: which trials have it at its baseline level; a missing value (a failed trial
    that never recorded its parameters, in a nullable column) does not exclude a trial."""
    return {f: (trials[f] == spec.baseline[f]).to_numpy(bool, na_value=True)
            for f in spec.factors}


def factor_slice(trials: pd.DataFrame, factor: str, spec: StudySpec,
                 at_baseline: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The trials that compare this factor's levels (see the module's rules); `at_baseline`:
    `_at_baseline` of the trials, where the caller slices them for every factor."""
    if not spec.plan.on_slices:
        return trials
    others = [f for f in spec.factors if f != factor]
    if not others:
        return trials
    at_baseline = at_baseline or _at_baseline(trials, spec)
    return trials[np.logical_and.reduce([at_baseline[f] for f in others])]


def level_labels(values: pd.Series) -> pd.Series:
    """The levels to compare: the values, or quartile bins for many distinct numeric values."""
    if values.nunique() <= MAX_LEVELS or not pd.api.types.is_numeric_dtype(values):
        return values
    return pd.qcut(values, 4, duplicates="drop").astype(str)


def level_slice(trials: pd.DataFrame, factor: str, spec: StudySpec,
                at_baseline: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The factor's slice with the level each trial is compared at, in a `level` column."""
    part = factor_slice(trials, factor, spec, at_baseline)
    return part.assign(level=level_labels(part[factor]))


def factor_slices(trials: pd.DataFrame, spec: StudySpec) -> dict[str, pd.DataFrame]:
    """Each studied factor's slice of the trials (every state), with its `level` column."""
    at_baseline = _at_baseline(trials, spec) if spec.plan.on_slices else None
    return {factor: level_slice(trials, factor, spec, at_baseline) for factor in studied(spec)}


def level_order(spec: StudySpec, factor: str, present: list[Any]) -> list[Any]:
    """The levels present, in the spec's design order; others (bins of sampled values, levels
    the spec does not list) after them, sorted."""
    listed = [level for level in spec.factors[factor].levels if level in present]
    return listed + sorted(level for level in present if level not in listed)


def reference_level(spec: StudySpec, factor: str, present: list[Any]) -> Any:
    """The level every other one is compared with: the baseline; None when the design has the
    baseline level but it is not among the `present` ones (no difference from it is defined, and
    none is taken from another level); the first level in design order where the design has no
    baseline level (a grid without it, bins of sampled values)."""
    baseline = spec.factors[factor].baseline
    if baseline in present:
        return baseline
    if spec.plan.fixed and baseline in spec.factors[factor].levels:
        return None
    return present[0]
