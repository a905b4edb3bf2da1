"""The `neo` command line: compile, run, inspect, targets."""
from __future__ import annotations

__version__ = "0.1.0"
