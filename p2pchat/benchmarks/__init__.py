"""The parts of ``python -m p2pchat.bench``: TLS set-up, helper servers, the measures, the report.

``p2pchat/bench.py`` is the command; each module here holds one kind of measure.
Other measures join through :mod:`p2pchat.benchmarks.extras` (one registration each).
"""
