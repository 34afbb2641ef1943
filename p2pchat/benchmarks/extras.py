"""Measures other parts of p2pchat add to the benchmark: one :class:`Extra` each, one line to register.

An extra runs once per benchmark run, after the built-in measures; its result is stored
under its JSON key, its rows join the table and its goals join ``goals_met``. For example
(a render measure of the terminal interface)::

    EXTRAS.append(Extra("render_5000_lines_s", measure_render, render_rows, render_goals))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Row = tuple[str, str, str, str, str]  # measure, p2pchat, TLS 1.3, TCP, ratio or note


@dataclass(frozen=True)
class Context:
    """What an extra may use: whether this is a --quick run, and a scratch directory of its own."""

    quick: bool
    directory: Path


@dataclass(frozen=True)
class Extra:
    key: str  # the JSON key of its result, beside round_trip_s and the others
    measure: Callable[[Context], Any]  # returns something JSON can hold
    rows: Callable[[Any], list[Row]] = lambda result: []
    goals: Callable[[Any], dict[str, bool]] = field(default=lambda result: {})


EXTRAS: list[Extra] = []
