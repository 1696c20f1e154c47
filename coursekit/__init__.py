"""coursekit: the helpers behind the image-classification course (see docs/ARCHITECTURE.md)."""

from coursekit.config import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Settings,
    SettingsError,
    default_num_workers,
    describe_overrides,
    get_settings,
    pick_device,
    seed_everything,
    start_lesson,
)

__version__ = "0.1.0"
