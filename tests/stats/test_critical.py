"""Simultaneous critical values (study.stats.critical) against what is known in closed form."""

import numpy as np
import pytest
from scipy import stats as sps

from study.stats.critical import max_t_draws, null_max_z


def test_one_comparison_gets_student_t_s_two_sided_quantile() -> None:
    for df in (3, 10, 40):
        draws = max_t_draws(np.array([[2.0]]), df)  # the scale of the contrast cancels in t
        assert np.quantile(draws, 0.95) == pytest.approx(sps.t.ppf(0.975, df), rel=0.05)


def test_the_null_maximum_is_e_abs_z_and_grows_with_more_comparisons() -> None:
    assert null_max_z(np.array([[1.0]]), 5) == pytest.approx(np.sqrt(2 / np.pi), rel=0.03)
    assert null_max_z(np.array([[4.0]]), 5) == pytest.approx(2 * np.sqrt(2 / np.pi), rel=0.03)
    shared = np.full((5, 5), 0.5) + 0.5 * np.eye(5)  # five levels sharing one baseline
    independent = np.eye(5)
    assert null_max_z(np.eye(1), 5) < null_max_z(shared, 5) < null_max_z(independent, 5)
