"""Benchmark 5: CPU inference, eager PyTorch vs TorchScript vs ONNX Runtime float32 and int8.

The same randomly initialised resnet18 and mobilenet_v2 (224 px) are run at batch 1 and 32:
eager PyTorch the way ``predict_folder`` runs it (``inference_mode``, channels-last), a frozen
TorchScript trace, the ONNX file of ``ck.export_onnx`` in ONNX Runtime (float32), and that
file after dynamic int8 quantization (``ck.quantize_onnx``). Images per second, interleaved
repeats, median; ratios to eager. Target: ONNX Runtime >= 1.5x eager at batch 1. The int8
file's top-1 agreement with the float32 file is measured on held (synthetic valid) images.

    python -m bench.onnx_inference            # writes its section of bench/results.md
    python -m bench.onnx_inference --quick    # 64 px, one repeat: a sanity run
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import coursekit as ck
from bench.common import (
    NUM_CLASSES,
    apply_threads,
    base_parser,
    collect_environment,
    interleaved,
    load_note,
    median,
    report,
    section_intro,
    synthetic_data,
    verdict,
)

NAME = "onnx_inference"
TITLE = "5. CPU inference: eager PyTorch vs TorchScript vs ONNX Runtime (float32, int8)"
ARCHS = ("resnet18", "mobilenet_v2")
BATCH_SIZES = (1, 32)
TARGET = 1.5
#: Images per timed run, so that a run at batch 1 lasts long enough to time.
IMAGES_PER_RUN = 32
EAGER = "eager PyTorch"
SCRIPTED = "TorchScript (trace + freeze)"
COMPILED = "torch.compile (Inductor)"
ORT = "ONNX Runtime float32"
ORT_INT8 = "ONNX Runtime int8 (dynamic)"


def with_batch_statistics(model: nn.Module, size: int) -> nn.Module:
    """Set every BatchNorm's running statistics from one random batch, as training would.

    Freshly initialised statistics (mean 0, variance 1) let mobilenet_v2's activations
    shrink layer after layer to logits near 1e-15, where every export and every int8 file
    would look exact and every top-1 a tie.

    >>> model = with_batch_statistics(torch.nn.Sequential(torch.nn.BatchNorm2d(3)), 8)
    >>> bool(model[0].running_var.mean() < 0.2)  # uniform [0, 1) pixels: variance 1/12
    True
    """
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average: one batch sets the statistics
    with torch.no_grad():
        model.train()(torch.rand(8, 3, size, size))
    return model.eval()


def eager_runner(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """How predict_folder runs a model on a CPU: eval, inference_mode, channels-last."""
    model = model.eval().to(memory_format=torch.channels_last)

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(batch.contiguous(memory_format=torch.channels_last))

    return run


def torchscript_runner(
    model: nn.Module, example: torch.Tensor
) -> tuple[Callable[[torch.Tensor], torch.Tensor] | None, str]:
    """A frozen TorchScript trace, or None and why it is not available here."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            warnings.simplefilter("error", FutureWarning)
            with torch.inference_mode():
                traced = torch.jit.freeze(torch.jit.trace(model.eval(), example))
    except Exception as error:  # a deprecation or an unsupported model: say which
        return None, f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return traced(batch)

    return run, ""


def compiled_runner(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile`` (Inductor, C++ on a CPU): each new batch shape compiles on first use."""
    compiled = torch.compile(model.eval())

    def run(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return compiled(batch)

    return run


def images_per_second(
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    batch: torch.Tensor,
    repeats: int,
) -> tuple[dict[str, float], dict[str, float]]:
    """Median images/s of each runner on ``batch``, timed in turn (A B B A ...), and the
    seconds of each runner's first call (where torch.compile compiles)."""
    passes = max(1, IMAGES_PER_RUN // len(batch))

    def job(run: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def timed() -> None:
            for _ in range(passes):
                run(batch)

        return timed

    first_call = {}
    for name, run in runners.items():  # untimed warm-up: memory, packing, compilation
        start = time.perf_counter()
        run(batch)
        first_call[name] = time.perf_counter() - start
        run(batch)
    runs = interleaved({name: job(run) for name, run in runners.items()}, repeats)
    speeds = {name: passes * len(batch) / median(runs[name].wall) for name in runners}
    return speeds, first_call


def held_images(root: Path, size: int) -> torch.Tensor:
    """The synthetic valid images, preprocessed as the exported file says."""
    folder = synthetic_data(root, train_per_class=1, valid_per_class=4) / "valid"
    transform = ck.eval_transforms(size, int(size * 256 / 224), ck.IMAGENET_MEAN, ck.IMAGENET_STD)
    return torch.stack([transform(ck.load_image(path)) for path in ck.image_files(folder)])


def measure_arch(
    arch: str, size: int, work: Path, held: torch.Tensor, repeats: int, compile_too: bool
) -> dict:
    torch.manual_seed(0)
    model = with_batch_statistics(ck.random_init_model(arch, NUM_CLASSES), size)
    names = [f"class{i}" for i in range(NUM_CLASSES)]
    export = ck.export_onnx(
        model, work / f"{arch}.onnx", class_names=names, arch=arch, image_size=size,
        resize_size=int(size * 256 / 224),
    )  # fmt: skip
    float_file = ck.load_onnx(export.path)
    int8_file = ck.load_onnx(ck.quantize_onnx(export.path, work / f"{arch}.int8.onnx"))
    int8_parity = ck.check_parity(float_file, int8_file, held)
    scripted, why_not = torchscript_runner(model, torch.rand(1, 3, size, size))
    runners = {EAGER: eager_runner(model)}
    if scripted is not None:
        runners[SCRIPTED] = scripted
    if compile_too:
        runners[COMPILED] = compiled_runner(model)
    runners[ORT] = float_file
    runners[ORT_INT8] = int8_file
    speeds, first_calls = {}, {}
    for batch_size in BATCH_SIZES:
        batch = torch.rand(batch_size, 3, size, size)
        speeds[batch_size], first_calls[batch_size] = images_per_second(runners, batch, repeats)
    agreement = float((float_file(held).argmax(1) == int8_file(held).argmax(1)).float().mean())
    return {
        "parity": export.parity,
        "int8_parity": int8_parity,
        "speeds": speeds,
        "first_calls": first_calls,
        "int8_agreement": agreement,
        "torchscript": why_not,
        "sizes_mb": (
            export.path.stat().st_size / 1e6,
            (work / f"{arch}.int8.onnx").stat().st_size / 1e6,
        ),
    }


def markdown(
    results: dict[str, dict], size: int, held: int, intro: str, repeats: int, environment: dict
) -> str:
    lines = [
        intro,
        load_note(environment),
        "",
        f"{size} px, random weights (12 classes), {repeats} interleaved repeats of "
        f"{IMAGES_PER_RUN} images per variant; ONNX Runtime on its default threads.",
        "",
        "| model | batch | variant | images/s | ratio to eager |",
        "|---|---|---|---|---|",
    ]
    for arch, result in results.items():
        for batch_size, speeds in result["speeds"].items():
            for name, speed in speeds.items():
                ratio = speed / speeds[EAGER]
                lines.append(f"| {arch} | {batch_size} | {name} | {speed:.1f} | {ratio:.2f}x |")
    lines += ["", f"Target: ONNX Runtime float32 >= {TARGET}x eager at batch 1.", ""]
    for arch, result in results.items():
        speeds = result["speeds"][1]
        ort_ratio = speeds[ORT] / speeds[EAGER]
        float_mb, int8_mb = result["sizes_mb"]
        lines += [
            f"* {arch}: ONNX Runtime {ort_ratio:.2f}x eager at batch 1: "
            f"{verdict(ort_ratio, TARGET, at_most=False)}. Export parity: {result['parity']}. "
            f"int8 vs float32 file on {held} held images: top-1 agreement "
            f"{result['int8_agreement']:.0%}, {result['int8_parity']}; "
            f"file {float_mb:.1f} MB -> {int8_mb:.1f} MB.",
        ]
        if COMPILED in result["first_calls"][1]:
            compile_seconds = ", ".join(
                f"{calls[COMPILED]:.0f} s at batch {batch_size}"
                for batch_size, calls in result["first_calls"].items()
            )
            lines.append(f"  torch.compile's first call (compilation): {compile_seconds}.")
        if result["torchscript"]:
            lines.append(f"  TorchScript not measured: {result['torchscript']}")
    if not any(COMPILED in r["first_calls"][1] for r in results.values()):
        lines.append("* torch.compile not measured (run without --no-compile to include it).")
    lines.append(
        "* Accuracy: the weights are random, so the int8 change is measured as top-1 agreement "
        "with the float32 file on held images; lesson 11 measures accuracy on real photos."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument(
        "--no-compile", action="store_true", help="skip torch.compile (minutes of compiling)"
    )
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    size = 64 if args.quick else 224
    repeats = args.repeats or (1 if args.quick else 5)
    environment = collect_environment()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        held = held_images(work / "data", size)
        results = {
            arch: measure_arch(arch, size, work, held, repeats, not args.no_compile)
            for arch in ARCHS
        }
    intro = section_intro(TITLE, f"bench.{NAME}", environment, time.perf_counter() - start)
    report(NAME, markdown(results, size, len(held), intro, repeats, environment), quick=args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
