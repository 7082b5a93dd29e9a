"""Simultaneous critical values (study.stats.critical) against what is known exactly: Student's t
for one comparison, scipy.stats.dunnett's many-to-one intervals and p-values, Sidak's bound,
Dunnett's integral by adaptive quadrature (for the quasi-Monte Carlo path too), and the
Behrens-Fisher law of one difference by quadrature."""

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from study.stats.critical import (
    FIDUCIAL_DRAWS,
    MAX_LOADING,
    adjusted_p,
    fiducial_max,
    fiducial_p,
    fiducial_quantile,
    max_abs_t_cdf,
    max_t_quantile,
    null_max_z,
    shared_reference_loadings,
)
from tests.conftest import compose


def _many_to_one(levels: int, n: int, n_reference: int) -> np.ndarray:
    """The contrasts' covariance (in units of the error variance) of `levels` levels with n
    seeds each against a reference with n_reference: OFAT's shape."""
    return np.full((levels, levels), 1 / n_reference) + np.eye(levels) / n


def _correlation(cov: np.ndarray) -> np.ndarray:
    sd = np.sqrt(np.diag(cov))
    return cov / np.outer(sd, sd)


def test_one_comparison_gets_student_t_s_two_sided_quantile() -> None:
    for df in (3, 10, 40):
        cov = np.array([[2.0]])  # the scale of the contrast cancels in t
        assert max_t_quantile(cov, df, 0.95) == pytest.approx(sps.t.ppf(0.975, df), rel=1e-9)
        assert adjusted_p(cov, df, np.array([2.5]))[0] == pytest.approx(
            2 * sps.t.sf(2.5, df), abs=1e-9)


@pytest.mark.parametrize(("levels", "n", "n_reference"), [(2, 1, 6), (5, 1, 6), (2, 3, 6),
                                                          (3, 3, 3)])
def test_quantiles_and_p_values_are_dunnett_s_exact_ones(levels, n, n_reference) -> None:
    # scipy.stats.dunnett on samples of this shape: its intervals' half-width over the
    # standard error is the exact critical value, whatever the data
    rng = np.random.default_rng(0)
    samples, reference = [rng.normal(size=n) for _ in range(levels)], rng.normal(size=n_reference)
    groups = [*samples, reference]
    df = sum(len(g) for g in groups) - len(groups)
    s = np.sqrt(sum(((g - g.mean()) ** 2).sum() for g in groups) / df)
    cov = _many_to_one(levels, n, n_reference)
    se = s * np.sqrt(np.diag(cov))
    result = sps.dunnett(*samples, control=reference)
    for level in (0.95, 0.90):
        ci = result.confidence_interval(level)
        exact = (ci.high - ci.low) / (2 * se)
        # scipy's own integration of the same law is coarser (up to 0.02 here): see below
        assert max_t_quantile(cov, df, level) == pytest.approx(exact.mean(), abs=0.02)
    t = np.array([g.mean() - reference.mean() for g in samples]) / se
    assert adjusted_p(cov, df, t) == pytest.approx(result.pvalue, abs=0.002)
    # from both sides: above one comparison's t and below Sidak's independent bound
    q = max_t_quantile(cov, df, 0.95)
    assert sps.t.ppf(0.975, df) < q < sps.t.ppf(1 - (1 - 0.95 ** (1 / levels)) / 2, df)


def test_the_quantile_at_one_seed_per_point_and_six_at_the_baseline_is_dunnett_s() -> None:
    # the quick budget's pooling factor: two comparisons sharing a six-seed baseline, 5 df:
    # Dunnett's exact 95% value is 3.086 (4 million draws of max |t|: 3.0866; P(<= 3.086) =
    # 0.94996), where a Monte Carlo of 4000 draws gave 2.968 and scipy.stats.dunnett's
    # intervals use 3.069
    assert max_t_quantile(_many_to_one(2, 1, 6), 5, 0.95) == pytest.approx(3.086, abs=5e-4)


def test_comparisons_sharing_one_reference_have_product_correlations_and_others_do_not() -> None:
    # levels of 1, 3 and 12 seeds against a six-seed reference: corr_ij = l_i l_j with
    # l_i = sqrt(n_i / (n_i + 6)); a sign flips with a comparison's direction
    n = np.array([1.0, 3.0, 12.0])
    corr = _correlation(np.full((3, 3), 1 / 6) + np.diag(1 / n))
    assert shared_reference_loadings(corr) == pytest.approx(np.sqrt(n / (n + 6)), abs=1e-12)
    flip = np.diag([1.0, -1.0, 1.0])
    assert shared_reference_loadings(flip @ corr @ flip) == pytest.approx(
        np.sqrt(n / (n + 6)) * [1, -1, 1], abs=1e-12)
    # not one shared reference (a chain), and a reference far noisier than the levels
    chain = np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.5], [0.1, 0.5, 1.0]])
    assert shared_reference_loadings(chain) is None
    loading = np.sqrt(60 / 62)
    assert loading > MAX_LOADING
    assert shared_reference_loadings(_correlation(_many_to_one(3, 60, 2))) is None


def test_loadings_near_one_take_the_quasi_monte_carlo_and_cover_95_percent_exactly() -> None:
    # 60 seeds per level against 2 at the reference: loadings 0.98, where the integrand in the
    # reference's error is a step; the quasi-Monte Carlo's quantile is within 0.002
    q95 = max_t_quantile(_many_to_one(3, 60, 2), 5, 0.95)
    assert _coverage_by_quadrature(q95, 3, 60, 2, 5) == pytest.approx(0.95, abs=0.001)


def test_comparisons_of_no_shared_reference_take_the_quasi_monte_carlo_and_cover_95() -> None:
    # successive differences: level 1 - reference, level 2 - level 1, level 3 - level 2 (1 seed
    # each, 6 at the reference, 5 df): coverage of the quantile by 400,000 seeded draws of
    # max |t|, within 4.4 standard errors
    mix = np.array([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, -1.0, 1.0]])
    cov, df, draws = mix @ _many_to_one(3, 1, 6) @ mix.T, 5, 400_000
    assert shared_reference_loadings(_correlation(cov)) is None
    z = np.random.default_rng(1).multivariate_normal(np.zeros(3), cov, draws)
    scale = np.sqrt(np.random.default_rng(2).chisquare(df, draws) / df)
    t = np.abs(z / np.sqrt(np.diag(cov)) / scale[:, None]).max(axis=1)
    assert np.mean(t <= max_t_quantile(cov, df, 0.95)) == pytest.approx(0.95, abs=0.0015)


def test_the_null_maximum_is_e_abs_z_and_grows_with_more_comparisons() -> None:
    assert null_max_z(np.array([[1.0]])) == pytest.approx(np.sqrt(2 / np.pi), rel=0.03)
    assert null_max_z(np.array([[4.0]])) == pytest.approx(2 * np.sqrt(2 / np.pi), rel=0.03)
    shared = np.full((5, 5), 0.5) + 0.5 * np.eye(5)  # five levels sharing one baseline
    independent = np.eye(5)
    assert null_max_z(np.eye(1)) < null_max_z(shared) < null_max_z(independent)


def _coverage_by_quadrature(q: float, levels: int, n: int, n_reference: int, df: int) -> float:
    """P(max |t| <= q) for many-to-one comparisons, by deterministic quadrature rather than any
    sampling: given the reference's standardized mean z and the error's scale s (s^2 ~ chi2/df),
    the comparisons are independent, so the probability is a double integral (Dunnett 1955):
    Gauss-Hermite over z, adaptive quadrature over s."""
    lam = np.sqrt(n / (n + n_reference))  # each comparison's correlation with the reference
    width = np.sqrt(1 - lam ** 2)
    z, weights = np.polynomial.hermite_e.hermegauss(160)
    weights = weights / np.sqrt(2 * np.pi)  # E[f(z)] for z ~ N(0, 1)

    def given_s(s: float) -> float:
        inside = (sps.norm.cdf((lam * z + q * s) / width)
                  - sps.norm.cdf((lam * z - q * s) / width)) ** levels
        return weights @ inside * 2 * df * s * sps.chi2.pdf(df * s ** 2, df)  # s's density

    return integrate.quad(given_s, 0, np.inf, epsabs=1e-10, limit=200)[0]


@pytest.mark.parametrize(("n", "n_reference", "df"), [(1, 6, 5), (3, 6, 53)])
def test_the_default_design_s_intervals_cover_95_percent_computed_exactly(n, n_reference,
                                                                          df) -> None:
    # every factor of conf/sweep/ofat.yaml (2 to 5 levels besides the baseline's), at one seed
    # per point and six at the baseline (df 5) and three and six (24 points x 2 + 5 df)
    levels = {len(values) - 1 for values in compose().sweep.levels.values()}
    assert levels == {2, 3, 4, 5}
    for k in sorted(levels):
        q95 = max_t_quantile(_many_to_one(k, n, n_reference), df, 0.95)
        coverage = _coverage_by_quadrature(q95, k, n, n_reference, df)
        print(f"{k} levels, {n} + {n_reference} seeds, df {df}: q95 {q95:.4f}, "
              f"coverage {coverage:.5f}")
        assert coverage == pytest.approx(0.95, abs=1e-4)  # exact, where 0.948 is asked


def _behrens_fisher_cdf(q: float, u: tuple[float, float], df: tuple[int, int]) -> float:
    """P(|u1 T1 - u2 T2| / sqrt(u1^2 + u2^2) <= q), T1, T2 independent Student t: the
    Behrens-Fisher law of one standardized difference, by quadrature over T1."""
    se = np.hypot(*u)

    def inside(x: float) -> float:
        return sps.t.pdf(x, df[0]) * (sps.t.cdf((u[0] * x + q * se) / u[1], df[1])
                                      - sps.t.cdf((u[0] * x - q * se) / u[1], df[1]))

    return integrate.quad(inside, -np.inf, np.inf, epsabs=1e-10)[0]


@pytest.mark.slow
@pytest.mark.parametrize(("u", "df"), [((1.0, 1.0), (2, 5)), ((3.0, 0.4), (2, 5)),
                                       ((0.5, 2.0), (9, 1))])
def test_the_behrens_fisher_law_of_one_difference_is_the_exact_one(u, df) -> None:
    # a level of noise u1 (its mean's standard error) against the baseline's u2: the Monte
    # Carlo's 95% and 90% points and p-values hold the exact law's probabilities within four
    # standard errors of 20,000 draws
    draws = fiducial_max(np.array([[u[0], -u[1]]]), np.array(df, dtype=float))
    tolerance = 4 * np.sqrt(0.05 * 0.95 / FIDUCIAL_DRAWS)
    for level in (0.95, 0.90):
        q = fiducial_quantile(draws, level)
        assert _behrens_fisher_cdf(q, u, df) == pytest.approx(level, abs=tolerance)
    for t in (1.0, 3.0, 6.0):
        exact = 1 - _behrens_fisher_cdf(t, u, df)
        assert fiducial_p(draws, np.array([t]))[0] == pytest.approx(
            exact, abs=4 * np.sqrt(exact * (1 - exact) / FIDUCIAL_DRAWS) + 1e-4)
    assert np.isnan(fiducial_p(draws, np.array([np.nan]))[0])
    # with many df on both sides the law is the normal's: |z| beyond 1.96 in 5%
    normal = fiducial_max(np.array([[u[0], -u[1]]]), np.array([1e6, 1e6]))
    assert fiducial_quantile(normal, 0.95) == pytest.approx(1.96, abs=0.05)


def test_the_fiducial_quantile_is_a_draw_at_or_above_the_level_and_p_counts_ties() -> None:
    # the critical value is the draw at or above the level's fraction (never interpolated
    # down), and a comparison's p-value counts the draws at least as large as its |t|
    draws = np.array([3.0, 1.0, 2.0, 4.0])
    assert fiducial_quantile(draws, 0.5) == 3.0
    assert fiducial_quantile(draws, 0.26) == 2.0
    p = fiducial_p(draws, np.array([2.0, -4.0, 5.0, np.nan]))
    assert p[:3] == pytest.approx([(3 + 1) / 5, (1 + 1) / 5, 1 / 5], abs=1e-15)
    assert np.isnan(p[3])


def test_the_quasi_monte_carlo_law_is_the_same_number_every_time() -> None:
    """Comparisons that share no reference (a grid's) are integrated by quasi-Monte Carlo with
    a fixed seed: a report rewritten from the same study prints the same p-values."""
    corr = np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.6], [-0.2, 0.6, 1.0]])
    assert shared_reference_loadings(corr) is None  # not the exact Dunnett case
    assert max_abs_t_cdf(2.5, corr, 7) == max_abs_t_cdf(2.5, corr, 7)
