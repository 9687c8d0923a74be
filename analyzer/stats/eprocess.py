"""One-sided mixture e-processes for binomial counts: the evidence behind every sequential check.

Model. In interval i, `k_i` trials give `s_i` successes, each with probability θ_i whose log-odds
is `o_i + δ`: `o_i` is known (the null) and δ is the unknown shift. Two uses share it:

* an SLO gate: canary bad requests out of canary requests, `o_i = logit(max_rate)`;
* a comparison (Lindon & Malek's conditional test): the canary's bad requests out of both
  versions' bad requests in the same interval. With canary share of traffic π_i and rate ratio
  r = canary rate / baseline rate, a bad request is the canary's with probability
  θ_i(r) = π_i·r / (π_i·r + 1 − π_i), i.e. log-odds logit(π_i) + log r. With r0 the ratio the
  null allows, `o_i = logit(π_i) + log r0` and δ = log(r / r0). Conditioning on each interval's
  bad total makes the test exact on counts and blind to anything that moves both versions'
  rates together (incidents, traffic ramps, the weight steps themselves).

Evidence. For a shift δ the likelihood ratio of interval i against the null is
    ℓ_i(δ) = s_i·δ − k_i·(softplus(o_i + δ) − softplus(o_i)),
and for δ ≥ 0 its expectation under any θ at or below the null is at most 1: per trial it is
θ·θ₁/θ₀ + (1 − θ)(1 − θ₁)/(1 − θ₀) with θ₁ > θ₀ the shifted probability, increasing in θ and
equal to 1 at θ = θ₀. So for every fixed δ ≥ 0 the product
exp(Σ ℓ_i(δ)) is a non-negative supermartingale under "θ_i ≤ null for every i", and so is any
mixture over δ fixed in advance. Ville's inequality then gives, for the e-process E_t:

    P(E_t ≥ 1/α at any look t) ≤ α        (Ville 1939; Ramdas et al., "Game-theoretic statistics
                                            and safe anytime-valid inference", Stat. Sci. 2023)

The FAIL direction mixes δ > 0 (evidence that the canary is worse than the null allows), the
PASS direction mixes δ < 0 against a null at the pass threshold (evidence that it is better).
The mixing law over |δ| is an equal mixture of two half-normals, scales 0.5 and 1.5 on the log
scale (a 1.6× and a 4.5× shift are typical of each), discretised on a fixed grid; a discrete
prior fixed in advance is itself an exact mixture, so the guarantee holds without approximation.

The null may change from interval to interval (`o_i` is per interval) as long as it is fixed
before the interval's data are seen (predictable); each factor still has mean at most 1.

Everything is vectorised: counts are arrays whose last axis is the interval; any leading axes
(runs of a benchmark) are carried through.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

_STEP = 0.05
_GRID: FloatArray = (np.arange(120, dtype=np.float64) + 0.5) * _STEP  # |δ| in (0, 6)
_SCALES = (0.5, 1.5)


def _log_weights() -> FloatArray:
    density = np.zeros_like(_GRID)
    for scale in _SCALES:
        density += np.exp(-0.5 * (_GRID / scale) ** 2) / scale
    w = density / density.sum()
    return np.asarray(np.log(w), dtype=np.float64)


_LOG_WEIGHTS: FloatArray = _log_weights()
LOGIT_CLIP = 30.0
MAX_EXTRA_REQUESTS = 1e10


def logit(p: npt.ArrayLike) -> FloatArray:
    """log(p / (1 − p)), clipped to ±30 so that certain events stay finite."""
    pp = np.clip(np.asarray(p, dtype=np.float64), 1e-13, 1.0 - 1e-13)
    return np.asarray(np.clip(np.log(pp) - np.log1p(-pp), -LOGIT_CLIP, LOGIT_CLIP), dtype=np.float64)


def _softplus(x: FloatArray) -> FloatArray:
    return np.asarray(np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x))), dtype=np.float64)


def interval_log_lr(
    successes: npt.ArrayLike, trials: npt.ArrayLike, log_odds: npt.ArrayLike, *, upward: bool
) -> FloatArray:
    """ℓ_i(δ) for every interval and every grid shift: shape (..., intervals, grid)."""
    s = np.asarray(successes, dtype=np.float64)[..., None]
    k = np.asarray(trials, dtype=np.float64)[..., None]
    o = np.asarray(log_odds, dtype=np.float64)[..., None]
    d = _GRID if upward else -_GRID
    s = np.clip(np.minimum(s, k), 0.0, None)
    return np.asarray(s * d - k * (_softplus(o + d) - _softplus(o)), dtype=np.float64)


def mix_log_lr(cumulative: FloatArray) -> FloatArray:
    """log Σ_j w_j exp(cumulative[..., j]) over the grid axis."""
    x = cumulative + _LOG_WEIGHTS
    top = np.max(x, axis=-1, keepdims=True)
    return np.asarray(top[..., 0] + np.log(np.exp(x - top).sum(axis=-1)), dtype=np.float64)


@dataclass(frozen=True)
class EProcess:
    """log e-values after every interval (last axis) and, for the last one, the log-likelihood
    ratio at every grid shift (used to ask how much more data a decision needs)."""

    log_e: FloatArray
    last_log_lr: FloatArray


def binomial_e_process(
    successes: npt.ArrayLike, trials: npt.ArrayLike, log_odds: npt.ArrayLike, *, upward: bool
) -> EProcess:
    """The mixture e-process of the module docstring after each interval (cumulative)."""
    cumulative = np.cumsum(interval_log_lr(successes, trials, log_odds, upward=upward), axis=-2)
    return EProcess(log_e=mix_log_lr(cumulative), last_log_lr=cumulative[..., -1, :])


_DOUBLINGS: FloatArray = 16.0 * 2.0 ** np.arange(31, dtype=np.float64)  # 16 … 1.7e10 requests
_REFINE = 100  # points between the last two doublings: to 0.5 % of the answer


def extra_requests_for(
    last_log_lr: FloatArray,
    level: float,
    extra: Callable[[FloatArray], tuple[FloatArray, FloatArray, FloatArray | float]],
    *,
    upward: bool,
) -> int | None:
    """The fewest further requests after which the e-process would reach `level` (a log e-value)
    if the data kept coming at today's rates; None past 1e10 requests (not at these rates).

    `extra(x)` returns (successes, trials, log_odds) of blocks of x further requests, for an
    array of x (elementwise). The evidence grows with x, so the answer is found in two
    vectorised passes: the doublings 16, 32, … bracket it, then 100 points between the last two
    pin it to 0.5 %.
    """

    def reached(x: FloatArray) -> npt.NDArray[np.bool_]:
        s, k, o = extra(x)
        o_arr = np.broadcast_to(np.asarray(o, dtype=np.float64), x.shape)
        step = interval_log_lr(s, k, o_arr, upward=upward)
        return np.asarray(mix_log_lr(last_log_lr + step) >= level)

    if float(mix_log_lr(last_log_lr)) >= level:
        return 0
    doubling = reached(_DOUBLINGS)
    if not doubling.any():
        return None
    j = int(np.argmax(doubling))
    hi = float(_DOUBLINGS[j])
    if hi > MAX_EXTRA_REQUESTS:
        return None
    lo = 0.0 if j == 0 else float(_DOUBLINGS[j - 1])
    points = np.linspace(lo, hi, _REFINE + 1)[1:]  # the last one (hi) is reached
    return int(np.ceil(points[int(np.argmax(reached(points)))]))
