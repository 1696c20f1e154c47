"""Get, check, sample and generate the course's datasets and pretrained weights.

Command line: ``python -m data_scripts --help`` (installed as ``course-data``). The same
jobs as functions:

    >>> from data_scripts import make_synthetic, verify_dataset
    >>> verify_dataset(str(make_synthetic())).ok  # doctest: +SKIP
    True
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it. Modules load on first use, so that
#: ``python -m data_scripts --help`` answers without importing torch.
_EXPORTS: dict[str, str] = {
    "ChecksumError": "data_scripts.errors",
    "DataScriptError": "data_scripts.errors",
    "DownloadError": "data_scripts.errors",
    "LayoutError": "data_scripts.errors",
    "UnsafeArchiveError": "data_scripts.errors",
    "get_dataset": "data_scripts.get",
    "check_layout": "data_scripts.layout",
    "verify_dataset": "data_scripts.layout",
    "DATASET_NAMES": "data_scripts.registry",
    "dataset_spec": "data_scripts.registry",
    "SubsetReport": "data_scripts.subset",
    "make_subset": "data_scripts.subset",
    "SYNTHETIC_CLASS_NAMES": "data_scripts.registry",
    "make_synthetic": "data_scripts.synthetic",
    "cached_weights": "data_scripts.weights",
    "fetch_weights": "data_scripts.weights",
    "install_weights_from": "data_scripts.weights",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use (PEP 562).

    >>> import data_scripts; data_scripts.make_synthetic.__name__
    'make_synthetic'
    """
    if name not in _EXPORTS:
        raise AttributeError(f"module 'data_scripts' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
