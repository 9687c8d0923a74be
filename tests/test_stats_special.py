"""The numpy special functions against math.lgamma and scipy.special, over the ranges the bounds use."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

from analyzer.stats.special import log_beta, log_gamma, log_sum_exp, x_log1p_y, x_log_y


def test_log_gamma_agrees_with_math_lgamma_from_tiny_to_huge_arguments() -> None:
    xs = np.concatenate(
        [np.geomspace(1e-6, 1.0, 200), np.linspace(1.0, 30.0, 400), np.geomspace(30.0, 1e12, 200)]
    )
    ours = log_gamma(xs)
    expected = np.array([math.lgamma(x) for x in xs])
    assert np.allclose(ours, expected, rtol=1e-12, atol=1e-12)


def test_log_gamma_is_exact_at_integers_and_half_integers() -> None:
    assert float(log_gamma(1.0)) == pytest.approx(0.0, abs=1e-13)
    assert float(log_gamma(2.0)) == pytest.approx(0.0, abs=1e-13)
    assert float(log_gamma(11.0)) == pytest.approx(math.log(math.factorial(10)), rel=1e-14)
    assert float(log_gamma(0.5)) == pytest.approx(0.5 * math.log(math.pi), rel=1e-13)


def test_log_gamma_refuses_non_positive_arguments() -> None:
    with pytest.raises(ValueError):
        log_gamma([1.0, 0.0])
    with pytest.raises(ValueError):
        log_gamma(float("nan"))


def test_log_beta_agrees_with_scipy_over_the_bounds_grid() -> None:
    rng = np.random.default_rng(7)
    a = 1.0 + rng.integers(0, 5_000, size=500).astype(float)
    b = rng.choice([9.0, 99.0, 999.0, 9_999.0], size=500) + rng.integers(0, 10**7, size=500)
    assert np.allclose(log_beta(a, b), special.betaln(a, b), rtol=1e-11, atol=1e-9)


def test_log_sum_exp_and_the_zero_safe_logs_match_scipy() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(scale=400.0, size=(50, 4))
    assert np.allclose(log_sum_exp(v, axis=-1), special.logsumexp(v, axis=-1), rtol=1e-13)
    assert np.all(np.isneginf(log_sum_exp(np.full((2, 3), -np.inf))))
    x = np.array([0.0, 0.0, 3.0, 5.0])
    y = np.array([0.0, 0.5, 0.25, 1e-300])
    assert np.allclose(x_log_y(x, y), special.xlogy(x, y))
    assert np.allclose(x_log1p_y(x, -y), special.xlog1py(x, -y))
