"""Turn the official Oxford 102 Flowers files into train/valid ImageFolder folders.

The official files are ``102flowers.tgz`` (``jpg/image_00001.jpg`` ...), ``imagelabels.mat``
(label 1..102 of every image) and ``setid.mat`` (image ids of the trnid/valid/tstid
splits). The lessons want ``train/<1..102>/`` and ``valid/<1..102>/`` plus
``cat_to_name.json``:

    >>> convert_flowers102(Path("raw/jpg"), Path("raw/imagelabels.mat"),
    ...                    Path("raw/setid.mat"), Path("out"))  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from data_scripts.errors import DataScriptError, LayoutError
from data_scripts.files import write_label_map
from data_scripts.registry import FLOWERS102_CLASS_NAMES

#: Official split ids behind each folder. The official "trnid" split has only 10 images
#: per class, so train also takes the 6,149 "tstid" images: a large train and a small
#: valid split, like the flower_data folders the transfer-learning lesson follows.
FLOWERS_SPLITS: dict[str, tuple[str, ...]] = {"train": ("trnid", "tstid"), "valid": ("valid",)}


def load_mat(path: Path) -> dict[str, Any]:
    """Read a MATLAB ``.mat`` file with SciPy (imported here: only flowers102 needs it).

    >>> load_mat(Path("imagelabels.mat"))["labels"][:3]  # doctest: +SKIP
    array([77, 77, 77], dtype=uint8)
    """
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataScriptError(
            "Reading the flowers102 labels (.mat files) needs SciPy, which is not installed. "
            "Fix: pip install scipy   (then run the same command again)."
        ) from None
    try:
        return loadmat(path, squeeze_me=True)
    except (ValueError, OSError) as error:
        raise DataScriptError(
            f"{path} is not a readable .mat file ({error}). Fix: download it again."
        ) from error


def convert_flowers102(image_dir: Path, labels_mat: Path, setid_mat: Path, output: Path) -> Path:
    """Build ``output/{train,valid}/<label>/`` and ``cat_to_name.json`` from the official files.

    The images are moved (not copied) out of ``image_dir``, a scratch extraction.

    >>> convert_flowers102(raw / "jpg", raw / "imagelabels.mat", raw / "setid.mat", out)  # doctest: +SKIP
    PosixPath('out')
    """
    labels = np.atleast_1d(load_mat(labels_mat)["labels"])
    split_ids = load_mat(setid_mat)
    for folder, keys in FLOWERS_SPLITS.items():
        for image_id in _image_ids(split_ids, keys, setid_mat):
            source = image_dir / f"image_{image_id:05d}.jpg"
            if not source.is_file():
                raise LayoutError(
                    f"{source} is listed in {setid_mat.name} but missing. The image archive "
                    "is incomplete. Fix: download 102flowers.tgz again."
                )
            label = int(labels[image_id - 1])  # image ids and labels are both 1-based
            destination = output / folder / str(label)
            destination.mkdir(parents=True, exist_ok=True)
            shutil.move(source, destination / source.name)
    write_label_map(output, FLOWERS102_CLASS_NAMES)
    return output


def _image_ids(split_ids: dict[str, Any], keys: tuple[str, ...], setid_mat: Path) -> list[int]:
    missing = [key for key in keys if key not in split_ids]
    if missing:
        raise LayoutError(
            f"{setid_mat} has no {', '.join(missing)} entry; it is not the official setid.mat. "
            "Fix: download it again."
        )
    return [int(i) for key in keys for i in np.atleast_1d(split_ids[key])]
