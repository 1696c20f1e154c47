"""A generated ImageFolder dataset of drawn shapes and textures, so everything runs offline.

Twelve classes in folders "1".."12" with a ``cat_to_name.json`` (like flowers102, so the
"1", "10", "11", "12", "2" folder order shows up). Colours, positions, sizes, rotations,
background noise, image sizes (48-320 px, rarely square), modes (RGB, L, RGBA, P) and
formats (JPEG for RGB/L, PNG for all) vary, none of them tied to the class:

    >>> path = make_synthetic(tmp_path, train_per_class=4, valid_per_class=2, seed=0)  # doctest: +SKIP
    >>> sorted(p.name for p in (path / "train").iterdir())[:3]  # doctest: +SKIP
    ['1', '10', '11']
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from coursekit._safe_io import explained_write_errors
from data_scripts.errors import DataScriptError
from data_scripts.files import publish, resolve_data_root, scratch_dir, write_label_map
from data_scripts.registry import SYNTHETIC_CLASS_NAMES

SPLITS: tuple[str, ...] = ("train", "valid")
#: Cycled per image so every class gets every mode, whatever the counts.
MODES: tuple[str, ...] = ("RGB", "L", "RGBA", "P")
MIN_SIDE, MAX_SIDE = 48, 320
#: Written last, inside the folder; its content says which parameters built the folder.
MARKER = ".complete"
#: Bump when the drawing changes, so that old folders are rebuilt.
FORMAT_VERSION = 1

Size = tuple[int, int]
Painter = Callable[[Size, np.random.Generator], Image.Image]


def make_synthetic(
    root: Path | None = None,
    train_per_class: int = 30,
    valid_per_class: int = 10,
    seed: int = 0,
    *,
    force: bool = False,
) -> Path:
    """Generate ``<root>/synthetic`` (or do nothing when it is already complete) and return it.

    The same seed gives the same bytes. A folder built with other parameters is rebuilt;
    a folder that this function did not make is replaced only with ``force=True``.

    >>> make_synthetic(tmp_path, train_per_class=2, valid_per_class=1).name  # doctest: +SKIP
    'synthetic'
    """
    if train_per_class < 1 or valid_per_class < 1:
        raise DataScriptError("--train-per-class and --valid-per-class must be at least 1.")
    if seed < 0:
        raise DataScriptError(f"--seed must be 0 or more (got {seed}).")
    root = resolve_data_root(root)
    target = root / "synthetic"
    params = {
        "train_per_class": train_per_class,
        "valid_per_class": valid_per_class,
        "seed": seed,
        "format_version": FORMAT_VERSION,
    }
    existing = _marker_params(target)
    if existing == params and not force:
        print(
            f"Synthetic dataset already complete at {target} ({_describe(params)}); nothing to do."
        )
        return target
    if target.exists() and existing is None and not force:
        raise DataScriptError(
            f"{target} exists but was not made by this command (it has no {MARKER} file). "
            "Fix: move that folder away, or run again with --force to replace it."
        )
    fix = "use a data folder on another disk (--root DIR, or COURSE_DATA_ROOT). " + (
        f"Nothing was changed in {target}." if target.exists() else "Nothing was created."
    )
    with (
        explained_write_errors(f"the synthetic dataset into {root}", root, fix),
        scratch_dir(root, "synthetic") as scratch,
    ):
        build = scratch / "synthetic"
        per_split = dict(zip(SPLITS, (train_per_class, valid_per_class), strict=True))
        for split_number, (split, count) in enumerate(per_split.items()):
            _generate_split(build / split, split_number, count, seed)
        write_label_map(build, SYNTHETIC_CLASS_NAMES)
        (build / MARKER).write_text(json.dumps(params, indent=2) + "\n", encoding="utf-8")
        publish(build, target)
    print(f"Synthetic dataset ready at {target} ({_describe(params)}).")
    return target


def _describe(params: dict[str, int]) -> str:
    classes = len(SYNTHETIC_CLASS_NAMES)
    return (
        f"{classes} classes, {params['train_per_class']} train + {params['valid_per_class']} "
        f"valid images per class, seed {params['seed']}"
    )


def _marker_params(target: Path) -> dict[str, int] | None:
    try:
        return json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _generate_split(folder: Path, split_number: int, count: int, seed: int) -> None:
    for class_index in range(len(SYNTHETIC_CLASS_NAMES)):
        class_folder = folder / str(class_index + 1)
        class_folder.mkdir(parents=True)
        for number in range(count):
            # One generator per image: any image can be rebuilt alone, in any order.
            rng = np.random.default_rng([seed, split_number, class_index, number])
            mode = MODES[(class_index + number) % len(MODES)]
            save_sample(
                *draw_sample(class_index, rng), mode, rng, class_folder / f"img_{number:04d}"
            )


def draw_sample(class_index: int, rng: np.random.Generator) -> tuple[Image.Image, Image.Image]:
    """One RGB image of class ``class_index`` (0-based) and the mask of what was drawn.

    >>> image, mask = draw_sample(0, np.random.default_rng(0))
    >>> image.mode, mask.mode
    ('RGB', 'L')
    """
    size = (int(rng.integers(MIN_SIDE, MAX_SIDE + 1)), int(rng.integers(MIN_SIDE, MAX_SIDE + 1)))
    background_colour, shape_colour = _contrasting_colours(rng)
    mask = PAINTERS[class_index](size, rng)
    weight = np.asarray(mask, dtype=np.float32)[..., None] / 255.0
    pixels = background_colour * (1.0 - weight) + shape_colour * weight
    width, height = size
    pixels += rng.uniform(4.0, 20.0) * rng.standard_normal((height, width, 3), dtype=np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB"), mask


def save_sample(
    rgb: Image.Image, mask: Image.Image, mode: str, rng: np.random.Generator, stem: Path
) -> Path:
    """Save ``rgb`` in ``mode`` as JPEG or PNG (RGB/L) or PNG (RGBA/P); returns the path.

    >>> save_sample(*draw_sample(0, rng), "P", rng, Path("train/1/img_0000"))  # doctest: +SKIP
    PosixPath('train/1/img_0000.png')
    """
    if mode == "RGBA":
        converted = rgb.convert("RGBA")
        # The drawing stays opaque; the background gets some transparency.
        converted.putalpha(
            ImageChops.lighter(mask, Image.new("L", rgb.size, int(rng.integers(90, 256))))
        )
    elif mode == "P":
        colours = int(rng.integers(16, 65))
        converted = rgb.quantize(colours, method=Image.Quantize.FASTOCTREE)
    else:
        converted = rgb.convert(mode)
    if mode in ("RGB", "L") and rng.random() < 0.5:
        path = stem.with_suffix(".jpg")
        converted.save(path, quality=int(rng.integers(70, 96)))
    else:
        path = stem.with_suffix(".png")
        converted.save(path, compress_level=1)  # fast: noisy pixels hardly compress anyway
    return path


def _contrasting_colours(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two colours whose brightness differs enough to stay apart in greyscale ("L") too."""
    luma = np.array([0.299, 0.587, 0.114])
    while True:
        first, second = rng.integers(0, 256, size=(2, 3))
        if abs(float(luma @ first) - float(luma @ second)) >= 60:
            return first.astype(np.float32), second.astype(np.float32)


# ---- shapes: a polygon or disk at a random place, size and rotation ----------------------


def _placement(size: Size, rng: np.random.Generator) -> tuple[float, float, float]:
    width, height = size
    radius = rng.uniform(0.2, 0.45) * min(width, height)
    return rng.uniform(radius, width - radius), rng.uniform(radius, height - radius), radius


def _polygon_painter(unit_points: list[tuple[float, float]]) -> Painter:
    def paint(size: Size, rng: np.random.Generator) -> Image.Image:
        cx, cy, radius = _placement(size, rng)
        angle = rng.uniform(0.0, 2 * math.pi)
        cos, sin = math.cos(angle), math.sin(angle)
        points = [
            (cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos))
            for x, y in unit_points
        ]
        mask = Image.new("L", size, 0)
        ImageDraw.Draw(mask).polygon(points, fill=255)
        return mask

    return paint


def _regular_polygon(sides: int) -> list[tuple[float, float]]:
    return [
        (math.cos(2 * math.pi * k / sides), math.sin(2 * math.pi * k / sides)) for k in range(sides)
    ]


def _star(points: int = 5, inner: float = 0.42) -> list[tuple[float, float]]:
    corners = []
    for k in range(2 * points):
        reach = 1.0 if k % 2 == 0 else inner
        corners.append(
            (reach * math.cos(math.pi * k / points), reach * math.sin(math.pi * k / points))
        )
    return corners


def _cross(arm: float = 0.3) -> list[tuple[float, float]]:
    quarter = [(arm, 1.0), (arm, arm), (1.0, arm)]
    # Rotate the quarter outline by 0, 90, 180 and 270 degrees to close the plus sign.
    return [
        (x * c - y * s, x * s + y * c)
        for c, s in ((1, 0), (0, -1), (-1, 0), (0, 1))
        for x, y in quarter
    ]


def _disk_painter(ring: bool) -> Painter:
    def paint(size: Size, rng: np.random.Generator) -> Image.Image:
        cx, cy, radius = _placement(size, rng)
        box = [cx - radius, cy - radius, cx + radius, cy + radius]
        mask = Image.new("L", size, 0)
        if ring:
            width = max(2, int(radius * rng.uniform(0.15, 0.3)))
            ImageDraw.Draw(mask).ellipse(box, outline=255, width=width)
        else:
            ImageDraw.Draw(mask).ellipse(box, fill=255)
        return mask

    return paint


# ---- textures: a pattern over a random part of the image, slightly tilted ----------------


def _texture_painter(
    draw_pattern: Callable[[ImageDraw.ImageDraw, int, np.random.Generator], None],
) -> Painter:
    def paint(size: Size, rng: np.random.Generator) -> Image.Image:
        width, height = size
        # Draw on a square big enough to stay covered after the tilt, then crop the middle.
        side = math.ceil(math.hypot(width, height))
        canvas = Image.new("L", (side, side), 0)
        draw_pattern(ImageDraw.Draw(canvas), side, rng)
        canvas = canvas.rotate(rng.uniform(-10.0, 10.0), resample=Image.Resampling.BILINEAR)
        left, top = (side - width) // 2, (side - height) // 2
        pattern = canvas.crop((left, top, left + width, top + height))
        return ImageChops.multiply(pattern, _random_region(size, rng))

    return paint


def _random_region(size: Size, rng: np.random.Generator) -> Image.Image:
    width, height = size
    region_w, region_h = int(width * rng.uniform(0.55, 1.0)), int(height * rng.uniform(0.55, 1.0))
    left, top = (
        int(rng.integers(0, width - region_w + 1)),
        int(rng.integers(0, height - region_h + 1)),
    )
    region = Image.new("L", size, 0)
    ImageDraw.Draw(region).rectangle([left, top, left + region_w - 1, top + region_h - 1], fill=255)
    return region


def _stripes(horizontal: bool) -> Callable[[ImageDraw.ImageDraw, int, np.random.Generator], None]:
    def draw(canvas: ImageDraw.ImageDraw, side: int, rng: np.random.Generator) -> None:
        period = int(rng.integers(8, 25))
        for start in range(int(rng.integers(0, period)), side, period):
            box = (
                [0, start, side, start + period // 2]
                if horizontal
                else [start, 0, start + period // 2, side]
            )
            canvas.rectangle(box, fill=255)

    return draw


def _checkerboard(canvas: ImageDraw.ImageDraw, side: int, rng: np.random.Generator) -> None:
    cell = int(rng.integers(6, 21))
    for row in range(side // cell + 1):
        for column in range(row % 2, side // cell + 1, 2):
            canvas.rectangle(
                [column * cell, row * cell, (column + 1) * cell - 1, (row + 1) * cell - 1], fill=255
            )


def _dots(size: Size, rng: np.random.Generator) -> Image.Image:
    width, height = size
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    radius = max(2.0, rng.uniform(0.03, 0.07) * min(width, height))
    for _ in range(int(rng.integers(8, 30))):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=255)
    return mask


#: One painter per class, in the order of SYNTHETIC_CLASS_NAMES; each returns an "L" mask.
PAINTERS: tuple[Painter, ...] = (
    _disk_painter(ring=False),
    _polygon_painter(_regular_polygon(4)),
    _polygon_painter(_regular_polygon(3)),
    _polygon_painter(_star()),
    _polygon_painter(_cross()),
    _disk_painter(ring=True),
    _texture_painter(_stripes(horizontal=True)),
    _texture_painter(_stripes(horizontal=False)),
    _texture_painter(_checkerboard),
    _dots,
    _polygon_painter([(0.0, 1.0), (0.55, 0.0), (0.0, -1.0), (-0.55, 0.0)]),
    _polygon_painter(_regular_polygon(6)),
)
