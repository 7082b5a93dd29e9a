"""Which trials compare a factor's levels and against which level (study.stats.slices): the
rules at their edges."""

import numpy as np
import pandas as pd

from study.stats.slices import MAX_LEVELS, level_labels, reference_level, studied
from study.stats.synthetic import GRID, OFAT, ofat_spec, table_spec


def test_numeric_levels_are_binned_only_beyond_max_levels_and_ties_do_not_break_the_bins() -> None:
    values = pd.Series(np.arange(MAX_LEVELS, dtype=float))
    assert level_labels(values).tolist() == values.tolist()  # exactly MAX_LEVELS: kept
    assert level_labels(pd.Series(np.arange(MAX_LEVELS + 1.0))).nunique() == 4
    skewed = pd.Series([0.0] * 20 + list(range(1, MAX_LEVELS + 2)))  # two quartile edges at 0
    assert 1 < level_labels(skewed).nunique() < 4


def test_a_factor_varied_over_one_level_is_not_studied() -> None:
    assert studied(table_spec("ofat", {"lr": [0.05]})) == []
    assert studied(ofat_spec({"lr": [0.1]})) == ["lr"]


def test_the_reference_is_the_baseline_none_when_it_is_missing_or_the_first_level() -> None:
    assert reference_level(OFAT, "lr", [0.01, 0.05, 0.1]) == 0.05
    assert reference_level(OFAT, "lr", [0.01, 0.1]) is None  # the baseline point never finished
    assert reference_level(GRID, "lr", [0.01, 0.1]) == 0.01  # a grid without the baseline level
    sampled = table_spec("optuna", {"lr": [0.001, 0.05, 0.5]})  # the baseline inside the range
    bins = ["(0.001, 0.01]", "(0.01, 0.1]", "(0.1, 0.5]"]
    assert reference_level(sampled, "lr", bins) == bins[0]
