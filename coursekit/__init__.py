"""coursekit: the helpers behind the image-classification course.

Lessons import it as ``import coursekit as ck`` and call everything from the top level:

    >>> settings = ck.start_lesson()                       # doctest: +SKIP
    >>> data_dir = ck.find_dataset("flowers102", settings)  # doctest: +SKIP

Each name lives in one small module (see docs/ARCHITECTURE.md); ``__all__`` lists the
lessons' names grouped by that module. A module is imported on the first use of one of
its names (PEP 562), so that ``coursekit.folders`` (and ``python -m data_scripts``)
load without torch. Everything else stays importable from its module, e.g.
``from coursekit.data import LimitAspectRatio``. Exercises live in ``coursekit.exercises``
so that their ``____`` placeholder stays out of this namespace.
"""

import importlib

#: Module -> the public names the lessons, benchmarks and tools use from the top level.
#: Errors a learner may catch and the types the functions return are public too.
_PUBLIC_BY_MODULE: dict[str, tuple[str, ...]] = {
    # config: run modes and settings, seeds, devices
    "config": (
        "IMAGENET_MEAN",
        "IMAGENET_STD",
        "Settings",
        "SettingsError",
        "default_num_workers",
        "get_settings",
        "pick_device",
        "seed_everything",
        "start_lesson",
    ),
    # folders: images on disk, read one image, check a dataset folder (no torch)
    "folders": (
        "VALID_SPLIT_NAMES",
        "DatasetReport",
        "UnreadableImageError",
        "check_dataset",
        "image_files",
        "is_hidden",
        "load_image",
    ),
    # data: datasets, loaders, transforms, label names
    "data": (
        "DatasetLayoutError",
        "DatasetMissingError",
        "DatasetStatus",
        "ImageFolderDataset",
        "build_datasets",
        "class_counts",
        "compute_mean_std",
        "dataset_status",
        "eval_transforms",
        "find_classes",
        "find_dataset",
        "load_label_names",
        "make_loaders",
        "readable_class_names",
        "split_samples",
        "train_transforms",
    ),
    # models: architectures, pretrained weights, heads, freezing, summaries
    "models": (
        "VGG_CFGS",
        "WeightsUnavailableError",
        "count_parameters",
        "feature_map_sizes",
        "freeze",
        "freeze_batchnorm_statistics",
        "get_weights",
        "head_name",
        "make_vgg",
        "model_summary",
        "param_groups",
        "pretrained",
        "random_init_model",
        "replace_head",
        "resnet18",
        "resnet34",
        "resnet50",
        "unfreeze",
        "weights_cached",
        "weights_path",
        "without_head",
    ),
    # train: the fit loop, cached features, checkpoints
    "train": (
        "CheckpointError",
        "CheckpointInUseError",
        "CheckpointMismatchError",
        "History",
        "estimate_fit_seconds",
        "evaluate",
        "extract_features",
        "feature_loaders",
        "fit",
        "fit_on_features",
        "last_checkpoint_path",
        "load_checkpoint",
        "load_or_train",
        "train_one_epoch",
    ),
    # distributed: the same fit on several processes (torchrun)
    "distributed": (
        "init_distributed",
        "is_distributed",
        "is_main_process",
        "shard_loader",
        "shutdown_distributed",
        "unwrap",
        "world_size",
    ),
    # viz: pictures of data, training and predictions
    "viz": (
        "LivePlot",
        "TensorBoardLogger",
        "grad_cam",
        "im_convert",
        "plot_class_counts",
        "plot_confusion_matrix",
        "plot_history",
        "show_augmentations",
        "show_batch",
        "show_grad_cam",
        "show_misclassified",
        "show_predictions",
    ),
    # infer: predictions for images and folders, tables and CSV files
    "infer": (
        "Prediction",
        "collect_predictions",
        "predict_folder",
        "predict_image",
        "predict_images",
        "predictions_table",
        "save_predictions_csv",
    ),
    # metrics: confusion matrix, per-class and top-k accuracy
    "metrics": ("confusion_matrix", "per_class_accuracy", "top_k_accuracy"),
    # timing: timed forward passes, the fastest batch size and layout
    "timing": (
        "BatchSpeeds",
        "TimingResult",
        "compare_one_by_one_vs_batched",
        "measure_batch_speeds",
        "time_inference",
    ),
    # bundle: one file with the weights, class names and preprocessing
    "bundle": ("Bundle", "BundleError", "export_bundle", "load_bundle"),
    # export: ONNX files and ONNX Runtime
    "export": (
        "ExportReport",
        "OnnxExportError",
        "OnnxModel",
        "ParityReport",
        "check_parity",
        "export_onnx",
        "load_onnx",
        "quantize_onnx",
    ),
    # demo: a web page that classifies an uploaded photo
    "demo": ("DemoInputError", "build_app", "classify", "serve"),
}
_MODULE_OF: dict[str, str] = {
    name: module for module, names in _PUBLIC_BY_MODULE.items() for name in names
}
__all__ = [name for names in _PUBLIC_BY_MODULE.values() for name in names]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Import the module behind a public name, or the submodule ``name``, on first use.

    >>> import coursekit; coursekit.start_lesson.__module__, coursekit.models.__name__
    ('coursekit.config', 'coursekit.models')
    """
    if name in _MODULE_OF:
        value = getattr(importlib.import_module(f"coursekit.{_MODULE_OF[name]}"), name)
        globals()[name] = value  # the next use is a plain attribute lookup
        return value
    try:
        return importlib.import_module(f"coursekit.{name}")  # ck.models, ck.recipe, ...
    except ModuleNotFoundError as missing:
        if missing.name != f"coursekit.{name}":
            raise
    raise AttributeError(f"module 'coursekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
