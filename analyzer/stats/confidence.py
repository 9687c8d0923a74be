"""Always-valid confidence sequences for a rate (a fraction of requests).

Formula (Robbins' mixture martingale; Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Ann. Statist. 49(2), 2021, §3, beta-binomial
mixture; Waudby-Smith & Ramdas' prior-posterior-ratio form):

For S bad requests out of n and a candidate rate p, mix the likelihood ratio over a prior G that is
fixed before any data is seen:

    M_n(p) = ∫ q^S (1-q)^(n-S) dG(q)  /  ( p^S (1-p)^(n-S) )

Under rate p this is a nonnegative martingale with mean 1, so Ville's inequality gives
P(there is a look n with M_n(p) >= 1/alpha) <= alpha, and

    C_n = { p : M_n(p) < 1/alpha }

covers the true rate at every look at once, however often one looks. With G a mixture of Beta
distributions the numerator is a sum of beta functions, B(a + S, b + n - S) / B(a, b), independent of
p, and since the log-likelihood is concave in p, C_n is one interval [lower, upper]. The bounds are
exact for any counts (no normal approximation), so they stay honest at zero or few events.

G is an equal-weight mixture of Beta(1, b_k) with means `prior_rates`; every check uses the default
scale mixture (0.01 %, 0.1 %, 1 %, 10 %), which stays sensible whatever the service's rate is and
costs log 4 ≈ 1.4 nats over a prior centred on the true rate. Because the estimate S/n maximises the likelihood, it
always lies inside the interval.

All functions are vectorised: they take numpy arrays (or floats) of counts and return arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analyzer.stats.special import log_beta, log_sum_exp, x_log1p_y, x_log_y

SCALE_FREE_PRIOR: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
_TINY = 1e-15

ArrayLike = npt.ArrayLike
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RateBounds:
    """An always-valid confidence interval for a rate at one look (or arrays of them)."""

    rate: FloatArray
    lower: FloatArray
    upper: FloatArray


def log_marginal(
    bad: ArrayLike, total: ArrayLike, prior_rates: Sequence[float] = SCALE_FREE_PRIOR
) -> FloatArray:
    """log ∫ q^S (1-q)^(n-S) dG(q) for G an equal-weight mixture of Beta(1, (1-m)/m), m in prior_rates."""
    s = np.asarray(bad, dtype=np.float64)[..., None]
    n = np.asarray(total, dtype=np.float64)[..., None]
    means = np.asarray(prior_rates, dtype=np.float64)
    if np.any((means <= 0) | (means >= 1)):
        raise ValueError("prior rates must lie in (0, 1)")
    b = (1.0 - means) / means
    terms = log_beta(1.0 + s, b + n - s) - log_beta(1.0, b)
    return np.asarray(log_sum_exp(terms, axis=-1) - np.log(len(means)), dtype=np.float64)


def _log_marginal_scalar(s: float, n: float, prior_rates: Sequence[float]) -> float:
    """`log_marginal` for one count, with math.lgamma (same formula, no array overhead)."""
    terms = []
    for mean in prior_rates:
        if not 0.0 < mean < 1.0:
            raise ValueError("prior rates must lie in (0, 1)")
        b = (1.0 - mean) / mean
        terms.append(_betaln(1.0 + s, b + n - s) - _betaln(1.0, b))
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms)) - math.log(len(terms))


def _betaln(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def log_mixture_martingale(
    bad: ArrayLike,
    total: ArrayLike,
    p: ArrayLike,
    prior_rates: Sequence[float] = SCALE_FREE_PRIOR,
) -> FloatArray:
    """log M_n(p), the mixture martingale of the module docstring."""
    s = np.asarray(bad, dtype=np.float64)
    n = np.asarray(total, dtype=np.float64)
    return np.asarray(log_marginal(s, n, prior_rates) - _log_likelihood(s, n, p), dtype=np.float64)


def _log_likelihood(s: FloatArray, n: FloatArray, p: ArrayLike) -> FloatArray:
    pp = np.clip(np.asarray(p, dtype=np.float64), _TINY, 1.0 - _TINY)
    return np.asarray(x_log_y(s, pp) + x_log1p_y(n - s, -pp), dtype=np.float64)


def _validate(bad: ArrayLike, total: ArrayLike) -> tuple[FloatArray, FloatArray]:
    s = np.atleast_1d(np.asarray(bad, dtype=np.float64))
    n = np.atleast_1d(np.asarray(total, dtype=np.float64))
    if np.any(~np.isfinite(s)) or np.any(~np.isfinite(n)):
        raise ValueError("counts must be finite numbers (NaN or Inf is missing data)")
    if np.any(s < 0) or np.any(n < 0):
        raise ValueError("counts must not be negative")
    # Prometheus' increase() extrapolates, so a bad count may exceed its total by a hair.
    return np.minimum(s, n), n


def rate_bounds(
    bad: ArrayLike,
    total: ArrayLike,
    alpha: float,
    prior_rates: Sequence[float] = SCALE_FREE_PRIOR,
) -> RateBounds:
    """Two-sided always-valid bounds for the rate bad/total; miscoverage <= alpha over all looks.

    The bounds are where the log-likelihood falls to log(marginal) + log(alpha). On the log-odds
    scale x the log-likelihood S x - n log(1 + e^x) is concave, so Newton's method started outside
    the interval stays outside at every step and converges to the crossing from there: every
    iterate is a valid (conservative) bound, and the last is exact to ~1e-12 on the log-odds scale.
    With total == 0 the bounds are [0, 1]: no data, no knowledge.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must lie in (0, 1)")
    s, n = _validate(bad, total)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(n > 0, s / np.where(n > 0, n, 1.0), 0.0)
    if s.size == 1:
        s0, n0 = float(s.reshape(-1)[0]), float(n.reshape(-1)[0])
        level0 = _log_marginal_scalar(s0, n0, prior_rates) + math.log(alpha)
        up, down = _crossings_scalar(s0, n0, level0)
        upper, lower = np.full(s.shape, up), np.full(s.shape, down)
    else:
        level = log_marginal(s, n, prior_rates) + np.log(alpha)  # log L(p) <= level: outside
        upper = _crossings(s, n, level, upward=True)
        lower = _crossings(s, n, level, upward=False)
    upper = np.where(n > 0, np.where(s >= n, 1.0, upper), 1.0)
    lower = np.where((n > 0) & (s > 0), lower, 0.0)
    return RateBounds(rate=rate, lower=lower, upper=upper)


_EDGE = math.log((1.0 - _TINY) / _TINY)
_NEWTON_STEPS = 100
_NEWTON_TOLERANCE = 1e-12


def _crossings(s: FloatArray, n: FloatArray, level: FloatArray, *, upward: bool) -> FloatArray:
    """Vectorised Newton iteration from outside (see `rate_bounds`); returns rates."""
    x = np.full(np.broadcast(s, n).shape, _EDGE if upward else -_EDGE)
    for _ in range(_NEWTON_STEPS):
        softplus = np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))
        g = s * x - n * softplus - level
        slope = s - n / (1.0 + np.exp(-x))
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(slope != 0, g / slope, 0.0)
        step = np.where(np.isfinite(step), step, 0.0)
        x = np.clip(x - step, -_EDGE, _EDGE)
        if np.all(np.abs(step) < _NEWTON_TOLERANCE):
            break
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def _crossings_scalar(s: float, n: float, level: float) -> tuple[float, float]:
    """The same Newton iteration for one count, in plain floats (the common case at one look)."""
    out = []
    for start in (_EDGE, -_EDGE):
        x = start
        for _ in range(_NEWTON_STEPS):
            softplus = max(x, 0.0) + math.log1p(math.exp(-abs(x)))
            g = s * x - n * softplus - level
            slope = s - n / (1.0 + math.exp(-x))
            if slope == 0.0:
                break
            step = g / slope
            x = min(max(x - step, -_EDGE), _EDGE)
            if abs(step) < _NEWTON_TOLERANCE:
                break
        out.append(1.0 / (1.0 + math.exp(-x)))
    return out[0], out[1]
