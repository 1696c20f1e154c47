"""The examples in the docstrings of config, folders, data, viz, metrics and timing run, so they
cannot go stale."""

from __future__ import annotations

import doctest
import types

import matplotlib
import matplotlib.pyplot as plt
import pytest

from coursekit import _model_state, config, data, folders, metrics, timing, viz

matplotlib.use("Agg")  # viz examples draw figures; no display in tests


@pytest.mark.parametrize(
    "module",
    [_model_state, config, folders, data, viz, metrics, timing],
    ids=lambda module: module.__name__,
)
def test_docstring_examples_run(module: types.ModuleType, monkeypatch, capsys):
    monkeypatch.chdir(config.REPO_ROOT)  # examples name paths such as data/synthetic
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    try:
        for test in doctest.DocTestFinder().find(module):
            runner.run(test, out=report.append)
    finally:
        plt.close("all")
    result = runner.summarize(verbose=False)
    assert result.failed == 0, "".join(report)
    assert result.attempted >= 5  # the examples exist (a +SKIP on all of them would hide rot)
