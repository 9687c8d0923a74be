"""Errors of the analysis file that every floor of the analyzer can raise."""

from __future__ import annotations


class SpecError(Exception):
    """An analysis file that cannot be used; the message names the file, the key and the problem."""
