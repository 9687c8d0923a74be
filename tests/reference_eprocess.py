"""An independent reference for the engine's e-values, written from the formulas alone.

The engine (`analyzer.stats.eprocess`) mixes over a fixed discrete grid of shifts. This module
integrates the continuous mixture it stands for (an equal mixture of half-normal laws of scale 0.5
and 1.5 on the log-odds shift δ) by the trapezoid rule on a much finer grid, and writes the
binomial likelihood ratio directly from its definition. Tests compare the two, so a wrong sign, a
wrong scale or a wrong likelihood in the engine shows up as a disagreement.
"""

from __future__ import annotations

import math

import numpy as np

SCALES = (0.5, 1.5)
_FINE = np.linspace(0.0, 12.0, 24001)


def _half_normal_mixture(delta: np.ndarray) -> np.ndarray:
    density = np.zeros_like(delta)
    for s in SCALES:
        density += 0.5 * 2.0 / (s * math.sqrt(2 * math.pi)) * np.exp(-0.5 * (delta / s) ** 2)
    return density


def _log1pexp(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def log_e_value(successes, trials, log_odds, *, upward: bool) -> float:  # type: ignore[no-untyped-def]
    """log ∫ Π_i [θ_i(δ)^s_i (1−θ_i(δ))^(k_i−s_i) / θ_i(0)^s_i (1−θ_i(0))^(k_i−s_i)] dF(δ)
    over the intervals given, with logit θ_i(δ) = o_i ± δ."""
    s = np.atleast_1d(np.asarray(successes, dtype=float))
    k = np.atleast_1d(np.asarray(trials, dtype=float))
    o = np.broadcast_to(np.asarray(log_odds, dtype=float), s.shape)
    sign = 1.0 if upward else -1.0
    d = sign * _FINE
    # log θ^s (1−θ)^(k−s) = s·x − k·log(1 + e^x) with x the log-odds
    loglik = (s[:, None] * (o[:, None] + d) - k[:, None] * _log1pexp(o[:, None] + d)).sum(axis=0)
    loglik0 = float((s * o - k * _log1pexp(o)).sum())
    log_ratio = loglik - loglik0
    top = float(log_ratio.max())
    integrand = np.exp(log_ratio - top) * _half_normal_mixture(_FINE)
    return top + math.log(float(np.trapezoid(integrand, _FINE)))


_COARSE = np.linspace(0.0, 10.0, 4001)


def log_e_values_per_look(successes, trials, log_odds, *, upward: bool) -> np.ndarray:  # type: ignore[no-untyped-def]
    """`log_e_value` after every interval at once (trapezoid rule on a grid of 4,001 shifts)."""
    s = np.asarray(successes, dtype=float)
    k = np.asarray(trials, dtype=float)
    o = np.broadcast_to(np.asarray(log_odds, dtype=float), s.shape)
    d = (1.0 if upward else -1.0) * _COARSE
    x = o[:, None] + d[None, :]
    per = s[:, None] * d[None, :] - k[:, None] * (_log1pexp(x) - _log1pexp(o)[:, None])
    cum = np.cumsum(per, axis=0)
    top = cum.max(axis=1, keepdims=True)
    integrand = np.exp(cum - top) * _half_normal_mixture(_COARSE)[None, :]
    return top[:, 0] + np.log(np.trapezoid(integrand, _COARSE, axis=1))
