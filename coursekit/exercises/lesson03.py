"""Exercises of lesson 03 (CNN anatomy): output sizes, a residual block, conv parameters and
the configuration list of VGG-13.

>>> from coursekit.exercises import lesson03 as ex  # doctest: +SKIP
>>> ex.q1.check(conv_output_size)                   # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock

from coursekit.exercises.core import (
    Incorrect,
    Question,
    call_answer,
    expect,
    expect_callable,
    expect_shape,
    safe_repr,
)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


# ----------------------------------------------------------------------------- q1


class ConvOutputSize(Question):
    title = "The output size of a convolution or pooling layer"
    hints = [
        "The window starts at the left edge (after padding) and moves `stride` pixels at a "
        "time; count how many positions fit.",
        "Padding adds `padding` pixels on BOTH sides, so the padded input is "
        "`size + 2 * padding` wide. A window of `kernel_size` fits in "
        "`(size + 2 * padding - kernel_size) // stride + 1` positions.",
        "`return (size + 2 * padding - kernel_size) // stride + 1` (with `//`, because a "
        "window that sticks out past the edge is dropped).",
    ]
    solution_code = """
        def conv_output_size(size, kernel_size, stride=1, padding=0):
            return (size + 2 * padding - kernel_size) // stride + 1
    """

    #: (size, kernel_size, stride, padding) -> where the case comes from.
    cases: tuple[tuple[tuple[int, int, int, int], str], ...] = (
        ((224, 3, 1, 1), "a VGG 3x3 convolution"),
        ((224, 2, 2, 0), "a VGG 2x2 max-pool"),
        ((224, 7, 2, 3), "the ResNet stem's 7x7 convolution"),
        ((112, 3, 2, 1), "the ResNet stem's 3x3 max-pool"),
        ((56, 1, 2, 0), "a ResNet 1x1 shortcut convolution with stride 2"),
        ((7, 7, 1, 0), "a 7x7 average pool on a 7x7 map"),
        ((112, 3, 2, 0), "a 3x3 max-pool with stride 2 and no padding"),
    )

    #: Formulas with a typical mistake, and what to say when an answer follows one of them.
    mistakes: tuple[tuple[Callable[[int, int, int, int], int], str], ...] = (
        (
            lambda n, k, s, p: (n + p - k) // s + 1,
            "Padding is added on both sides: use `size + 2 * padding`.",
        ),
        (
            lambda n, k, s, p: (n + 2 * p - k) // s,
            "You are one short: the first window position counts too, so add 1 after "
            "dividing by the stride.",
        ),
        (
            lambda n, k, s, p: math.ceil((n + 2 * p - k) / s) + 1,
            "You rounded up. A window that sticks out past the edge is dropped, so round "
            "down with `//`.",
        ),
        (
            lambda n, k, s, p: n + 2 * p - k + 1,
            "The stride is missing: divide by `stride` before adding 1.",
        ),
        (
            lambda n, k, s, p: (n - k) // s + 1,
            "The padding is missing: the window slides over `size + 2 * padding` pixels.",
        ),
    )

    def _check(self, conv_output_size: Any) -> None:
        expect_callable(conv_output_size, "conv_output_size")
        results = []
        for (size, kernel, stride, padding), _ in self.cases:
            call = f"conv_output_size({size}, {kernel}, stride={stride}, padding={padding})"
            result = call_answer(conv_output_size, size, kernel, stride, padding)
            expected = (size + 2 * padding - kernel) // stride + 1
            if isinstance(result, float) and result == expected:
                raise Incorrect(
                    f"{call} returned {result!r}: the value is right, but sizes are whole "
                    "numbers. Use floor division `//` so the result is an int."
                )
            if isinstance(result, numbers.Real) and not _is_int(result):
                raise Incorrect(
                    f"{call} returned {result!r}, not a whole number. A window that sticks "
                    "out past the edge is dropped, so round DOWN with floor division `//`."
                )
            expect(
                _is_int(result),
                f"{call} returned {safe_repr(result)}: return the size as an int.",
            )
            results.append(result)
        # A mistake is named only when it explains EVERY case, so two cannot be confused.
        for wrong, message in self.mistakes:
            if all(r == wrong(*case) for r, (case, _) in zip(results, self.cases, strict=True)):
                raise Incorrect(message)
        for result, ((size, kernel, stride, padding), what) in zip(
            results, self.cases, strict=True
        ):
            expected = (size + 2 * padding - kernel) // stride + 1
            expect(
                result == expected,
                f"conv_output_size({size}, {kernel}, stride={stride}, padding={padding}) "
                f"({what}) should be {expected}, but it is {result}.",
            )


q1 = ConvOutputSize()


# ----------------------------------------------------------------------------- q2

_NAMES_HINT = (
    "Use torchvision's names: `conv1`, `bn1`, `conv2`, `bn2`, and `downsample` for the "
    "shortcut (an `nn.Sequential` of a 1x1 conv and a BatchNorm, or None)."
)


def _reference_block(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """torchvision's BasicBlock with the shortcut its ResNet would give it."""
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    block = TorchvisionBasicBlock(in_channels, out_channels, stride, downsample)
    # Random BatchNorm statistics and affine values, so that every layer changes the output.
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in block.modules():
            if isinstance(module, nn.BatchNorm2d):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
    return block.eval()


def _build(block_class: type, *args: int) -> nn.Module:
    torch.manual_seed(0)
    block = block_class(*args)
    expect(
        isinstance(block, nn.Module),
        f"ResidualBlock{args} is a {type(block).__name__}: make the class a subclass of "
        "`nn.Module` (and call `super().__init__()` first).",
    )
    return block


def _run_block(block: nn.Module, x: torch.Tensor, what: str) -> torch.Tensor:
    """The block's output for ``x`` in eval mode; a shortcut that cannot be added gets its
    own message instead of PyTorch's size error."""
    block.eval()
    with torch.no_grad():
        try:
            out = call_answer(block, x.clone())
        except RuntimeError as error:
            text = str(error)
            if "must match the size" in text or "size of tensor" in text:
                raise Incorrect(
                    f"{what}: the residual branch and the shortcut have different shapes, so "
                    "they cannot be added. When the stride is not 1 or the channels change, "
                    "the shortcut needs a 1x1 conv with the same stride and out_channels, "
                    "then a BatchNorm (`downsample`), and forward must use it."
                ) from None
            raise
    return out


def _load_reference(block: nn.Module, reference: nn.Module, what: str) -> None:
    theirs = block.state_dict()
    ours = reference.state_dict()
    with_bias = [
        name
        for name, module in block.named_modules()
        if isinstance(module, nn.Conv2d) and module.bias is not None
    ]
    expect(
        not with_bias,
        f"{what}: your convolutions have a bias ({', '.join(with_bias)}). The BatchNorm right "
        "after each conv makes a bias redundant: create them with `bias=False`.",
    )
    missing = sorted(set(ours) - set(theirs))
    unexpected = sorted(set(theirs) - set(ours))
    if missing or unexpected:
        raise Incorrect(
            f"{what}: the layers do not match torchvision's BasicBlock (missing "
            f"{', '.join(missing) or 'nothing'}; extra {', '.join(unexpected) or 'nothing'}). "
            + _NAMES_HINT
        )
    shapes = [k for k in ours if tuple(ours[k].shape) != tuple(theirs[k].shape)]
    if shapes:
        name = shapes[0]
        raise Incorrect(
            f"{what}: `{name}` has shape {tuple(theirs[name].shape)}, torchvision's has "
            f"{tuple(ours[name].shape)}. Both convs are 3x3 with padding 1: conv1 goes from "
            "in_channels to out_channels, conv2 from out_channels to out_channels; the "
            "shortcut conv is 1x1."
        )
    block.load_state_dict(ours)


class ResidualBlock(Question):
    title = "A residual block that builds its own shortcut"
    hints = [
        "The residual branch is conv1 (3x3, `stride`) -> bn1 -> ReLU -> conv2 (3x3) -> bn2. "
        "The shortcut is `x` itself, unless the shape changes.",
        "The shape changes when `stride != 1` or `in_channels != out_channels`. Then "
        "`self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, "
        "stride=stride, bias=False), nn.BatchNorm2d(out_channels))`; otherwise None.",
        "forward: `out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))`, "
        "`shortcut = x if self.downsample is None else self.downsample(x)`, then "
        "`return self.relu(out + shortcut)`: the ReLU comes AFTER the addition.",
    ]
    solution_code = """
        class ResidualBlock(nn.Module):
            def __init__(self, in_channels, out_channels, stride=1):
                super().__init__()
                self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride,
                                       padding=1, bias=False)
                self.bn1 = nn.BatchNorm2d(out_channels)
                self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
                self.bn2 = nn.BatchNorm2d(out_channels)
                self.relu = nn.ReLU(inplace=True)
                self.downsample = None
                if stride != 1 or in_channels != out_channels:
                    self.downsample = nn.Sequential(
                        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                        nn.BatchNorm2d(out_channels),
                    )

            def forward(self, x):
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                shortcut = x if self.downsample is None else self.downsample(x)
                return self.relu(out + shortcut)
    """

    def _check(self, block_class: Any) -> None:
        expect(
            isinstance(block_class, type),
            "Pass the class itself (`ResidualBlock`), not an instance or a function.",
        )
        x = torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(0))

        same = _build(block_class, 8, 8, 1)
        out = _run_block(same, x, "ResidualBlock(8, 8)")
        expect_shape(out, (2, 8, 6, 6), "ResidualBlock(8, 8) applied to a (2, 8, 6, 6) input")
        expect(
            getattr(same, "downsample", "absent") is None,
            "ResidualBlock(8, 8) keeps the shape of its input, so its shortcut is the identity: "
            "set `self.downsample = None` when stride == 1 and the channel count is unchanged.",
        )
        self._check_identity_start(same, x)

        down = _build(block_class, 8, 16, 2)
        out = _run_block(down, x, "ResidualBlock(8, 16, stride=2)")
        expect_shape(out, (2, 16, 3, 3), "ResidualBlock(8, 16, stride=2) applied to (2, 8, 6, 6)")
        expect(
            isinstance(getattr(down, "downsample", None), nn.Module),
            "ResidualBlock(8, 16, stride=2) changes the shape, so it needs a `downsample` "
            "shortcut (a 1x1 conv with stride 2 and a BatchNorm).",
        )

        for args in ((8, 8, 1), (8, 16, 2), (8, 16, 1)):
            what = f"ResidualBlock{args}"
            block = _build(block_class, *args)
            reference = _reference_block(*args)
            _load_reference(block, reference, what)
            with torch.no_grad():
                expected = reference(x.clone())
            out = _run_block(block, x, what)
            expect(
                out.shape == expected.shape and torch.allclose(out, expected, atol=1e-5),
                f"{what} with torchvision's weights gives another output than torchvision's "
                "BasicBlock. Check the order: conv1 -> bn1 -> ReLU -> conv2 -> bn2, add the "
                "shortcut, then ReLU; the stride belongs on conv1 and on the shortcut conv.",
            )

    def _check_identity_start(self, block: nn.Module, x: torch.Tensor) -> None:
        """With the last BatchNorm scaled to zero the branch is silent: out = relu(x)."""
        last_bn = getattr(block, "bn2", None)
        expect(isinstance(last_bn, nn.BatchNorm2d), "No BatchNorm named `bn2`. " + _NAMES_HINT)
        with torch.no_grad():
            last_bn.weight.zero_()
            last_bn.bias.zero_()
        out = _run_block(block, x, "ResidualBlock(8, 8)")
        expect(
            not torch.allclose(out, torch.zeros_like(out)),
            "With its residual branch switched off (bn2 scaled to 0), your block outputs only "
            "zeros: it forgot its input. Add the shortcut, `out + x`, before the final ReLU.",
        )
        expect(
            not torch.allclose(out, x),
            "With its residual branch switched off, your block returns x unchanged, negative "
            "values included: apply the ReLU AFTER adding the shortcut, `relu(out + x)`.",
        )
        expect(
            torch.allclose(out, torch.relu(x), atol=1e-6),
            "With its residual branch switched off (bn2 scaled to 0), a residual block should "
            "output relu(x). Return `relu(bn2(conv2(...)) + shortcut)`.",
        )


q2 = ResidualBlock()


# ----------------------------------------------------------------------------- q3


class ConvParameters(Question):
    title = "Count the parameters of a convolution"
    hints = [
        "Each output channel has one filter. A filter covers every input channel with a "
        "kernel_size x kernel_size window of weights.",
        "Weights: `out_channels * in_channels * kernel_size * kernel_size`. With a bias, add "
        "one number per output channel.",
        "`return out_channels * in_channels * kernel_size ** 2 + (out_channels if bias else 0)`",
    ]
    solution_code = """
        def conv_parameters(in_channels, out_channels, kernel_size, bias=True):
            weights = out_channels * in_channels * kernel_size * kernel_size
            return weights + (out_channels if bias else 0)
    """

    #: (in_channels, out_channels, kernel_size, bias) -> where the layer comes from.
    cases: tuple[tuple[tuple[int, int, int, bool], str], ...] = (
        ((3, 64, 3, True), "VGG's first convolution"),
        ((64, 128, 3, False), "a 3x3 convolution in ResNet-18's layer2"),
        ((256, 64, 1, False), "a Bottleneck's 1x1 reduction"),
        ((3, 64, 7, False), "the ResNet stem"),
        ((512, 512, 3, True), "a convolution in VGG's last stage"),
    )

    #: Formulas with a typical mistake, and what to say when an answer follows one of them.
    mistakes: tuple[tuple[Callable[[int, int, int, bool], int], str], ...] = (
        (
            lambda i, o, k, b: o * i * k * k,
            "You forgot the bias: one extra number per output channel when `bias=True`.",
        ),
        (
            lambda i, o, k, b: o * i * k * k + o,
            "Some layers have `bias=False`: count the bias only when bias is True.",
        ),
        (
            lambda i, o, k, b: o * i * k + (o if b else 0),
            "A kernel is a square: multiply by kernel_size TWICE (kernel_size ** 2).",
        ),
        (
            lambda i, o, k, b: o * k * k + (o if b else 0),
            "Each filter spans every input channel: multiply by in_channels too.",
        ),
        (
            lambda i, o, k, b: o * i * k * k + (i if b else 0),
            "There is one bias per OUTPUT channel (one per filter), not per input channel.",
        ),
    )

    def _check(self, conv_parameters: Any) -> None:
        expect_callable(conv_parameters, "conv_parameters")
        results = []
        for (cin, cout, k, bias), _ in self.cases:
            result = call_answer(conv_parameters, cin, cout, k, bias)
            expect(
                isinstance(result, numbers.Real) and float(result).is_integer(),
                f"conv_parameters({cin}, {cout}, {k}, bias={bias}) returned "
                f"{safe_repr(result)}: a parameter count is a whole number.",
            )
            results.append(result)
        for wrong, message in self.mistakes:
            if all(r == wrong(*case) for r, (case, _) in zip(results, self.cases, strict=True)):
                raise Incorrect(message)
        for result, ((cin, cout, k, bias), what) in zip(results, self.cases, strict=True):
            # The truth comes from PyTorch itself (a meta layer allocates no memory).
            layer = nn.Conv2d(cin, cout, k, bias=bias, device="meta")
            expected = sum(p.numel() for p in layer.parameters())
            expect(
                result == expected,
                f"conv_parameters({cin}, {cout}, {k}, bias={bias}) ({what}) should be "
                f"{expected}, but it is {result}.",
            )


q3 = ConvParameters()


# ----------------------------------------------------------------------------- q4

#: The torchvision VGGs a wrong list may build by accident, named for the message.
_OTHER_VGGS = {"vgg11": "VGG-11 (configuration A)", "vgg16": "VGG-16 (configuration D)",
               "vgg19": "VGG-19 (configuration E)"}  # fmt: skip
#: The size the VGGs were designed for: five pools take it to the classifier's 7x7.
_DESIGN_SIZE = 224


def _layer_plan(features: nn.Sequential) -> list[int | str]:
    """A VGG's features read back as a config: each conv's output channels, "M" per pool."""
    return [
        "M" if isinstance(layer, nn.MaxPool2d) else layer.out_channels
        for layer in features
        if isinstance(layer, nn.MaxPool2d | nn.Conv2d)
    ]


def _stages(plan: list[int | str]) -> list[list[int | str]]:
    """The convolutions before each "M", then whatever follows the last one."""
    stages: list[list[int | str]] = [[]]
    for entry in plan:
        if entry == "M":
            stages.append([])
        else:
            stages[-1].append(entry)
    return stages


def _count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def _check_entries(config: Any) -> None:
    if isinstance(config, str):
        raise Incorrect(
            f'{config!r} is a string. Write the list itself, like `[64, 64, "M", ...]`: a '
            'number for each 3x3 convolution (its output channels), "M" for each max-pool.'
        )
    expect(
        isinstance(config, list | tuple),
        f'Your answer is a {type(config).__name__}. Give a list like `[64, 64, "M", ...]`: '
        'a number for each 3x3 convolution (its output channels), "M" for each max-pool.',
    )
    for position, entry in enumerate(config, start=1):
        item = f"Item {position} of your list"
        if isinstance(entry, str) and entry.strip().upper() == "M":
            expect(entry == "M", f'{item} is {entry!r}: write a max-pool as "M".')
        elif isinstance(entry, str) and entry.strip().isdigit():
            raise Incorrect(
                f"{item} is the string {entry!r}: write channel counts as numbers "
                f"({entry.strip()}, without quotes)."
            )
        else:
            expect(
                _is_int(entry) and entry > 0,
                f'{item} is {safe_repr(entry)}: each item is "M" or the output channels of a '
                "convolution (a positive whole number).",
            )


class Vgg13Config(Question):
    title = "Write the configuration list of VGG-13"
    hints = [
        "VGG-13 has 13 weight layers: 3 are the Linear layers of the classifier, so 10 are "
        "convolutions. Pools have no weights and do not count.",
        'Every VGG has five stages, each ending with a max-pool "M", with 64, 128, 256, '
        "512 and 512 channels. VGG-13 gives each of the five stages two convolutions.",
        "Start like VGG-16 (`vgg16_config` above) and keep two convolutions per stage: "
        '`[64, 64, "M", 128, 128, "M", ...]`, then continue the pattern.',
    ]
    solution_code = """
        vgg13_config = [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M",
                        512, 512, "M"]
    """
    correct_message = (
        "your list builds torchvision's vgg13 layer for layer, with the same parameter count."
    )

    def _check(self, config: Any) -> None:
        _check_entries(config)
        vgg = torchvision.models.vgg
        with torch.device("meta"):  # shapes and counts only: no memory, no arithmetic
            reference = vgg.vgg13(weights=None)
            model = vgg.VGG(vgg.make_layers(list(config)), init_weights=False)
            ours, theirs = _layer_plan(model.features), _layer_plan(reference.features)
            if ours == theirs:
                expect(
                    _count(model) == _count(reference),
                    f"Your VGG has {_count(model):,} parameters, torchvision's vgg13 "
                    f"{_count(reference):,}.",
                )
                return
            for name, what in _OTHER_VGGS.items():
                expect(
                    ours != _layer_plan(getattr(vgg, name)(weights=None).features),
                    f"Your list builds {what}, not VGG-13: VGG-13 has two convolutions in "
                    "each of its five stages.",
                )
            image = torch.zeros(1, 3, _DESIGN_SIZE, _DESIGN_SIZE)
            map_size = tuple(model.features(image).shape[-2:])
            reference_size = tuple(reference.features(image).shape[-2:])
        self._explain(ours, theirs, map_size, reference_size, _count(model) == _count(reference))

    def _explain(
        self,
        ours: list[int | str],
        theirs: list[int | str],
        map_size: tuple[int, ...],
        reference_size: tuple[int, ...],
        same_count: bool,
    ) -> None:
        """The first way in which the list differs from VGG-13's, most telling first."""
        convs = [entry for entry in ours if entry != "M"]
        reference_convs = [entry for entry in theirs if entry != "M"]
        expect(
            len(convs) == len(reference_convs),
            f"Your list has {len(convs)} convolutions, so its VGG has {len(convs) + 3} weight "
            f"layers with the 3 Linear layers. VGG-13 has {len(reference_convs) + 3}: "
            f"{len(reference_convs)} convolutions and the 3 Linear layers.",
        )
        pools, reference_pools = ours.count("M"), theirs.count("M")
        if pools != reference_pools:
            same = (
                " The parameter count alone would not show it: pools have no weights, and "
                "the adaptive pool turns any map into 7x7."
                if same_count
                else ""
            )
            raise Incorrect(
                f'Your list has {pools} max-pools "M", VGG-13 has {reference_pools}, one at '
                f"the end of each stage. At {_DESIGN_SIZE} px your features end on a "
                f"{map_size[0]}x{map_size[1]} map, torchvision's on "
                f"{reference_size[0]}x{reference_size[1]}.{same}"
            )
        stages, reference_stages = _stages(ours), _stages(theirs)
        lengths = [len(stage) for stage in stages]
        reference_lengths = [len(stage) for stage in reference_stages]
        expect(
            lengths == reference_lengths,
            'Each stage is its convolutions followed by one "M". VGG-13\'s stages have '
            f"{', '.join(map(str, reference_lengths[:-1]))} convolutions; yours have "
            f"{', '.join(map(str, lengths[:-1]))}"
            + (f', then {lengths[-1]} after the last "M".' if lengths[-1] else "."),
        )
        stage_channels = ", ".join(str(stage[0]) for stage in reference_stages[:-1])
        pairs = zip(convs, reference_convs, strict=True)
        for number, (channels, expected) in enumerate(pairs, start=1):
            expect(
                channels == expected,
                f"Convolution {number} has {channels} output channels; in VGG-13 it has "
                f"{expected}. The stages have {stage_channels} channels: they double after "
                "each pool, up to 512.",
            )


q4 = Vgg13Config()
