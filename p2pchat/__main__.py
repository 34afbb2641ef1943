"""python -m p2pchat"""

from .cli import run

raise SystemExit(run())
