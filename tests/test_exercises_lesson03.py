"""Lesson 03's exercises: the reference answers pass, typical mistakes fail with a reason."""

from __future__ import annotations

import math

import torch
import torchvision
from torch import nn

import coursekit as ck
from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson03 as ex

# ----------------------------------------------------------------------------- q1


def conv_output_size(size, kernel_size, stride=1, padding=0):
    return (size + 2 * padding - kernel_size) // stride + 1


def test_q1_reference_passes_and_matches_torch():
    assert_passes(ex.q1, conv_output_size)
    for (size, kernel, stride, padding), _ in ex.q1.cases:
        layer = nn.Conv2d(1, 1, kernel, stride=stride, padding=padding)
        assert layer(torch.zeros(1, 1, size, size)).shape[-1] == conv_output_size(
            size, kernel, stride, padding
        )


def test_q1_typical_mistakes():
    assert_fails(
        ex.q1,
        lambda size, k, s=1, p=0: (size + 2 * p - k) / s + 1,
        message_contains="floor division",
    )
    assert_fails(
        ex.q1, lambda size, k, s=1, p=0: (size + p - k) // s + 1, message_contains="both sides"
    )
    assert_fails(ex.q1, lambda size, k, s=1, p=0: (size + 2 * p - k) // s, message_contains="add 1")
    assert_fails(
        ex.q1,
        lambda size, k, s=1, p=0: math.ceil((size + 2 * p - k) / s) + 1,
        message_contains="rounded up",
    )
    assert_fails(ex.q1, lambda size, k, s=1, p=0: float(size), message_contains="int")
    assert_fails(ex.q1, conv_output_size(224, 3), message_contains="function itself")


def test_q1_not_attempted():
    def blank(size, kernel_size, stride=1, padding=0):
        return ____

    def computes_with_blank(size, kernel_size, stride=1, padding=0):
        return (size + 2 * padding - kernel_size) // ____ + 1

    assert_not_attempted(ex.q1, blank)
    assert_not_attempted(ex.q1, computes_with_blank)
    assert_not_attempted(ex.q1, ____)


# ----------------------------------------------------------------------------- q2


class GoodBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
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


class NoShortcut(GoodBlock):
    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))


class ReluBeforeAdd(GoodBlock):
    def forward(self, x):
        out = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))))
        return out + (x if self.downsample is None else self.downsample(x))


class NeverDownsamples(GoodBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.downsample = None


class StrideOnSecondConv(GoodBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class OtherNames(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.inner = GoodBlock(in_channels, out_channels, stride)
        self.bn2 = self.inner.bn2
        self.downsample = self.inner.downsample

    def forward(self, x):
        return self.inner(x)


class WithBias(GoodBlock):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


class Blank(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = ____
        self.bn1 = ____
        self.conv2 = ____
        self.bn2 = ____
        self.relu = nn.ReLU(inplace=True)
        self.downsample = ____

    def forward(self, x):
        return ____


class ForwardBlank(GoodBlock):
    def forward(self, x):
        return ____


def test_q2_reference_passes():
    assert_passes(ex.q2, GoodBlock)


def test_q2_typical_mistakes():
    assert_fails(ex.q2, NoShortcut, message_contains="forgot its input")
    assert_fails(ex.q2, ReluBeforeAdd, message_contains="AFTER adding the shortcut")
    assert_fails(ex.q2, NeverDownsamples, message_contains="different shapes")
    assert_fails(ex.q2, StrideOnSecondConv, message_contains="stride belongs on conv1")
    assert_fails(ex.q2, OtherNames, message_contains="torchvision's names")
    assert_fails(ex.q2, WithBias, message_contains="bias=False")
    assert_fails(ex.q2, GoodBlock(8, 8), message_contains="class itself")


def test_q2_not_attempted():
    assert_not_attempted(ex.q2, Blank)
    assert_not_attempted(ex.q2, ForwardBlank)
    assert_not_attempted(ex.q2, ____)


# ----------------------------------------------------------------------------- q3


def conv_parameters(in_channels, out_channels, kernel_size, bias=True):
    return out_channels * in_channels * kernel_size * kernel_size + (out_channels if bias else 0)


def test_q3_reference_passes():
    assert_passes(ex.q3, conv_parameters)


def test_q3_typical_mistakes():
    assert_fails(
        ex.q3, lambda i, o, k, bias=True: o * i * k * k, message_contains="forgot the bias"
    )
    assert_fails(ex.q3, lambda i, o, k, bias=True: o * i * k * k + o, message_contains="bias=False")
    assert_fails(
        ex.q3, lambda i, o, k, bias=True: o * i * k + (o if bias else 0), message_contains="TWICE"
    )
    assert_fails(
        ex.q3,
        lambda i, o, k, bias=True: o * i * k * k + (i if bias else 0),
        message_contains="OUTPUT channel",
    )


def test_q3_not_attempted():
    def blank(in_channels, out_channels, kernel_size, bias=True):
        return ____

    assert_not_attempted(ex.q3, blank)


# ----------------------------------------------------------------------------- q4

VGG13 = [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def test_q4_reference_passes_and_is_torchvision_vgg13():
    assert_passes(ex.q4, VGG13)
    assert_passes(ex.q4, tuple(VGG13))
    with torch.device("meta"):
        ours = ck.make_vgg(VGG13)
        theirs = torchvision.models.vgg13(weights=None)
    assert ck.count_parameters(ours) == ck.count_parameters(theirs)
    shapes = {name: tuple(value.shape) for name, value in ours.state_dict().items()}
    assert shapes == {name: tuple(value.shape) for name, value in theirs.state_dict().items()}


def test_q4_another_vgg_is_named():
    assert_fails(ex.q4, ck.VGG_CFGS["A"], message_contains="VGG-11 (configuration A)")
    assert_fails(ex.q4, ck.VGG_CFGS["D"], message_contains="VGG-16")
    assert_fails(ex.q4, ck.VGG_CFGS["E"], message_contains="VGG-19")


def test_q4_a_missing_pool_is_found_although_the_count_is_right():
    for missing in (len(VGG13) - 1, VGG13.index("M", 5)):
        config = VGG13[:missing] + VGG13[missing + 1 :]
        with torch.device("meta"):  # the count alone cannot catch this mistake
            assert ck.count_parameters(ck.make_vgg(config)) == ck.count_parameters(
                ck.make_vgg(VGG13)
            )
        assert_fails(ex.q4, config, message_contains="4 max-pools")
        assert_fails(ex.q4, config, message_contains="14x14 map, torchvision's on 7x7")


def test_q4_wrong_channels_and_stages():
    wrong_channel = [256 if position == 12 else entry for position, entry in enumerate(VGG13)]
    assert_fails(ex.q4, wrong_channel, message_contains="Convolution 9 has 256 output channels")
    uneven = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, "M", 512, "M"]
    assert_fails(ex.q4, uneven, message_contains="yours have 2, 2, 3, 2, 1")
    assert_fails(ex.q4, ["M", *VGG13[:-1]], message_contains='then 2 after the last "M"')
    assert_fails(ex.q4, VGG13[1:], message_contains="9 convolutions")


def test_q4_malformed_lists():
    assert_fails(ex.q4, "B", message_contains="Write the list itself")
    assert_fails(ex.q4, {"B": VGG13}, message_contains="is a dict")
    lower = ["m" if entry == "M" else entry for entry in VGG13]
    assert_fails(ex.q4, lower, message_contains='write a max-pool as "M"')
    quoted = [str(entry) if entry == 64 else entry for entry in VGG13]
    assert_fails(ex.q4, quoted, message_contains="without quotes")
    assert_fails(ex.q4, [64.0, *VGG13[1:]], message_contains="positive whole number")
    assert_fails(ex.q4, [0, *VGG13[1:]], message_contains="Item 1 of your list")


def test_q4_not_attempted():
    assert_not_attempted(ex.q4, ____)
    assert_not_attempted(ex.q4, [64, 64, "M", ____])
