"""Shared test set-up: headless plotting, and no test writes into a learner's folders."""

from __future__ import annotations

import os

# Plots render off-screen in tests; set before anything imports pyplot.
os.environ.setdefault("MPLBACKEND", "Agg")
