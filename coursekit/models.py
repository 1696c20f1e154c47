"""Models: VGG and ResNet written from scratch, pretrained torchvision classifiers, heads,
freezing and parameter groups.

The from-scratch networks are written to be read in lesson 03. Their parameter names and
counts equal torchvision's, so a torchvision state_dict loads into them unchanged:

    >>> model = resnet18(num_classes=10)
    >>> [name for name, _ in feature_map_sizes(model, 224)][:3]
    ['conv1', 'maxpool', 'layer1']

The transfer-learning lessons use ``pretrained`` (torchvision's weights API and its cache,
``$TORCH_HOME/hub/checkpoints``), then ``replace_head``, ``freeze`` / ``unfreeze`` and
``param_groups``, which work for any torchvision classifier, not only ResNets.

This module imports only ``coursekit.config``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import os
import pickle
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlparse

import torch
import torchinfo
import torchvision
from torch import nn
from torchvision.models import WeightsEnum

from coursekit._model_state import eval_mode, model_device, model_dtype
from coursekit.config import Settings, get_settings

__all__ = [
    "VGG_CFGS",
    "VGG",
    "make_vgg",
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "resnet18",
    "resnet34",
    "resnet50",
    "feature_map_sizes",
    "WeightsUnavailableError",
    "get_weights",
    "weights_path",
    "weights_cached",
    "weights_hash_mismatch",
    "pretrained",
    "random_init_model",
    "architecture_options",
    "head_name",
    "replace_head",
    "without_head",
    "freeze",
    "unfreeze",
    "count_parameters",
    "trainable_parameter_names",
    "param_groups",
    "model_summary",
]

# --------------------------------------------------------------------------------------
# VGG
# --------------------------------------------------------------------------------------

#: The configurations of the VGG paper (table 1): a number is the output channels of a 3x3
#: convolution (+ ReLU), "M" a 2x2 max-pool that halves the feature map.
VGG_CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # VGG-11
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],  # VGG-13
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],  # VGG-16
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],  # VGG-19
}  # fmt: skip


class VGG(nn.Module):
    """A VGG network: ``features`` (convs and pools), ``avgpool`` to 7x7, ``classifier``.

    >>> model = make_vgg([8, "M", 16, "M"], num_classes=3, hidden_features=32)
    >>> model(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 3])
    """

    def __init__(
        self,
        features: nn.Sequential,
        feature_channels: int,
        num_classes: int = 1000,
        dropout: float = 0.5,
        hidden_features: int = 4096,
    ) -> None:
        super().__init__()
        self.features = features
        # Whatever the image size, the map becomes 7x7, so the classifier's shape is fixed.
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(feature_channels * 7 * 7, hidden_features),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, hidden_features),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(hidden_features, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)  # (N, C, 7, 7) -> (N, C*49) for the Linear layers
        return self.classifier(x)


def make_vgg(
    cfg: str | Sequence[int | str],
    batch_norm: bool = False,
    num_classes: int = 1000,
    init_weights: bool = True,
    dropout: float = 0.5,
    *,
    hidden_features: int = 4096,
) -> VGG:
    """Build a VGG from a key of ``VGG_CFGS`` ("A", "B", "D", "E") or your own list.

    With the defaults, ``make_vgg("D")`` has exactly the parameters of torchvision's
    ``vgg16(weights=None)``; ``hidden_features`` shrinks the classifier for tiny experiments.

    >>> count_parameters(make_vgg("A", batch_norm=True)) == 132_868_840  # vgg11_bn
    True
    """
    layers = _vgg_layers(cfg)
    features = _vgg_features(layers, batch_norm)
    last_channels = [entry for entry in layers if entry != "M"][-1]
    model = VGG(features, int(last_channels), num_classes, dropout, hidden_features)
    if init_weights:
        _init_vgg(model)
    return model


def _vgg_layers(cfg: str | Sequence[int | str]) -> list[int | str]:
    """The list behind ``cfg``, checked: positive channel counts and "M", at least one conv."""
    if isinstance(cfg, str):
        if cfg not in VGG_CFGS:
            raise ValueError(
                f"VGG config {cfg!r} is unknown. Use one of {', '.join(VGG_CFGS)} "
                "(A=VGG-11, B=VGG-13, D=VGG-16, E=VGG-19) or a list like [64, 'M', 128, 'M']."
            )
        return VGG_CFGS[cfg]
    layers = list(cfg)
    for entry in layers:
        if entry != "M" and not (isinstance(entry, int) and entry > 0):
            raise ValueError(
                f"VGG config entry {entry!r} is neither a channel count (a positive int) nor "
                "'M' (a max-pool). Example of a valid config: [64, 'M', 128, 'M']."
            )
    if all(entry == "M" for entry in layers):
        raise ValueError(
            "A VGG config needs at least one convolution (a channel count), for example "
            "[64, 'M', 128, 'M']."
        )
    return layers


def _vgg_features(layers: list[int | str], batch_norm: bool) -> nn.Sequential:
    """The convolutional part: each number a 3x3 conv (+ BatchNorm) + ReLU, each "M" a pool."""
    modules: list[nn.Module] = []
    in_channels = 3
    for entry in layers:
        if entry == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out_channels = int(entry)
        # padding=1 keeps the height and width: only the pools shrink the map.
        modules.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))
        if batch_norm:
            modules.append(nn.BatchNorm2d(out_channels))
        modules.append(nn.ReLU(inplace=True))
        in_channels = out_channels
    return nn.Sequential(*modules)


def _init_conv_and_norm(model: nn.Module) -> None:
    """He init for convolutions, identity for BatchNorm: what torchvision's VGG and ResNet do."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            # fan_out keeps the scale of the gradients steady through the backward pass.
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def _init_vgg(model: VGG) -> None:
    _init_conv_and_norm(model)
    for module in model.classifier.modules():
        if isinstance(module, nn.Linear):
            # 0.01 as in the VGG paper: for 25,088 inputs, close to He's sqrt(2/25,088) ~ 0.009.
            nn.init.normal_(module.weight, 0.0, 0.01)
            nn.init.zeros_(module.bias)


# --------------------------------------------------------------------------------------
# ResNet
# --------------------------------------------------------------------------------------


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the BatchNorm that follows adds its own shift (beta), so a bias is redundant.
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)


class _ResidualBlock(nn.Module):
    """The idea of ResNet in one line: ``out = relu(residual(x) + shortcut(x))``.

    The block only has to learn the *change* to its input; when that change is not useful
    the residual can shrink towards zero and the block passes ``x`` through.
    """

    expansion = 1
    relu: nn.ReLU
    downsample: nn.Module | None

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The shortcut must have the residual's shape to be added: a 1x1 conv fixes that
        # when the block changes the channels or the stride.
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + shortcut)


class BasicBlock(_ResidualBlock):
    """Two 3x3 convolutions (ResNet-18/34). The output has ``channels`` channels.

    >>> BasicBlock(64, 64)(torch.zeros(1, 64, 8, 8)).shape
    torch.Size([1, 64, 8, 8])
    """

    expansion = 1

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = downsample

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2


class Bottleneck(_ResidualBlock):
    """1x1 squeeze, 3x3 conv, 1x1 expand (ResNet-50+). The output has ``4 * channels``.

    The stride sits on the 3x3 conv, as in torchvision ("ResNet v1.5"; the paper puts it on
    the first 1x1 conv). Same parameters, slightly better accuracy.

    >>> Bottleneck(256, 64)(torch.zeros(1, 256, 8, 8)).shape
    torch.Size([1, 256, 8, 8])
    """

    expansion = 4

    def __init__(
        self, in_channels: int, channels: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(in_channels, channels)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = _conv3x3(channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = _conv1x1(channels, channels * self.expansion)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


Block = type[BasicBlock] | type[Bottleneck]


def _make_stage(
    block: Block, in_channels: int, channels: int, num_blocks: int, stride: int
) -> nn.Sequential:
    """``num_blocks`` blocks; only the first one changes the stride and channel count."""
    out_channels = channels * block.expansion
    downsample = None
    if stride != 1 or in_channels != out_channels:
        downsample = nn.Sequential(
            _conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels)
        )
    blocks = [block(in_channels, channels, stride, downsample)]
    blocks += [block(out_channels, channels) for _ in range(num_blocks - 1)]
    return nn.Sequential(*blocks)


class ResNet(nn.Module):
    """ResNet: a stem, four stages of residual blocks, global average pool, ``fc``.

    ``layers`` is the number of blocks per stage: [2, 2, 2, 2] with ``BasicBlock`` is
    ResNet-18, [3, 4, 6, 3] with ``Bottleneck`` is ResNet-50. ``zero_init_residual`` starts
    every block as the identity (its last BatchNorm scale is 0), which can help training.

    >>> ResNet(BasicBlock, [1, 1, 1, 1], num_classes=2)(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 2])
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(
                f"layers={list(layers)} must give 4 positive block counts, one per stage "
                "(for example [2, 2, 2, 2] for ResNet-18)."
            )
        expansion = block.expansion
        # Stem: a 7x7 stride-2 conv and a stride-2 max-pool take 224 px down to 56 px.
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        # Each stage after the first halves the map and doubles the channels.
        self.layer1 = _make_stage(block, 64, 64, layers[0], stride=1)
        self.layer2 = _make_stage(block, 64 * expansion, 128, layers[1], stride=2)
        self.layer3 = _make_stage(block, 128 * expansion, 256, layers[2], stride=2)
        self.layer4 = _make_stage(block, 256 * expansion, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * expansion, num_classes)

        _init_conv_and_norm(self)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, _ResidualBlock):
                    nn.init.zeros_(module.last_bn.weight)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone: images (N, 3, 224, 224) -> feature maps (N, C, 7, 7)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # stem: 224 -> 112 -> 56
        x = self.layer1(x)  # 56
        x = self.layer2(x)  # 28
        x = self.layer3(x)  # 14
        return self.layer4(x)  # 7

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        x = torch.flatten(self.avgpool(x), 1)  # one number per channel: (N, C)
        return self.fc(x)


def resnet18(num_classes: int = 1000) -> ResNet:
    """ResNet-18: 11,689,512 parameters at 1000 classes, the same as torchvision's.

    >>> count_parameters(resnet18())
    11689512
    """
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes)


def resnet34(num_classes: int = 1000) -> ResNet:
    """ResNet-34: 21,797,672 parameters at 1000 classes, the same as torchvision's.

    >>> count_parameters(resnet34())
    21797672
    """
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes)


def resnet50(num_classes: int = 1000) -> ResNet:
    """ResNet-50: 25,557,032 parameters at 1000 classes, the same as torchvision's.

    >>> count_parameters(resnet50())
    25557032
    """
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes)


#: The stages whose outputs tell the story of a ResNet (ours or torchvision's).
_RESNET_STAGES = ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool")


def feature_map_sizes(model: nn.Module, image_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """Output shape of each stage for one ``image_size`` x ``image_size`` image.

    For a ResNet the stages are conv1, maxpool, layer1..4 and avgpool (224 -> 112 -> 56 ->
    56 -> 28 -> 14 -> 7 -> 1); for other models, their top-level children.

    >>> feature_map_sizes(resnet18(), 224)[-1]
    ('avgpool', (1, 512, 1, 1))
    """
    children = dict(model.named_children())
    is_resnet = all(name in children for name in _RESNET_STAGES)
    names = _RESNET_STAGES if is_resnet else tuple(children)
    sizes: list[tuple[str, tuple[int, ...]]] = []

    def recorder(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                sizes.append((name, tuple(output.shape)))

        return hook

    handles = [children[name].register_forward_hook(recorder(name)) for name in names]
    try:
        _run_once(model, _dummy_image(model, image_size))
    finally:
        for handle in handles:
            handle.remove()
    return sizes


def _dummy_image(model: nn.Module, image_size: int) -> torch.Tensor:
    """A batch of one black image on the model's device and dtype."""
    return torch.zeros(
        1, 3, image_size, image_size, device=model_device(model), dtype=model_dtype(model)
    )


def _run_once(model: nn.Module, images: torch.Tensor) -> None:
    """One forward pass in eval mode (BatchNorm statistics untouched), mode restored after."""
    with eval_mode(model), torch.no_grad():
        model(images)


# --------------------------------------------------------------------------------------
# Pretrained torchvision models
# --------------------------------------------------------------------------------------


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are not in the cache and could not be downloaded."""


def _check_model_name(name: str) -> None:
    available = torchvision.models.list_models(module=torchvision.models)
    if name in available:
        return
    close = difflib.get_close_matches(name, available, n=5)
    suggestion = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"{name!r} is not a torchvision classification model.{suggestion} "
        "Set COURSE_ARCH (or the name you pass) to one listed by "
        "torchvision.models.list_models(module=torchvision.models)."
    )


def get_weights(name: str, weights: str | WeightsEnum = "DEFAULT") -> WeightsEnum:
    """The torchvision weights enum member ``weights`` of model ``name``.

    ``weights`` is "DEFAULT", a member name such as "IMAGENET1K_V1", the full name
    "ResNet18_Weights.IMAGENET1K_V1", or the member itself.

    >>> get_weights("resnet18")
    ResNet18_Weights.IMAGENET1K_V1
    """
    _check_model_name(name)
    enum_class = torchvision.models.get_model_weights(name)
    if isinstance(weights, enum_class):
        return weights
    member = str(weights).removeprefix(f"{enum_class.__name__}.")
    if member not in enum_class.__members__:
        raise ValueError(
            f"{name} has no weights {weights!r}. Use one of: {', '.join(enum_class.__members__)} "
            "(DEFAULT is the best available)."
        )
    return enum_class[member]


def weights_path(name: str, weights: str | WeightsEnum = "DEFAULT") -> Path:
    """Where torchvision keeps (or will keep) the weights file: ``<hub dir>/checkpoints``.

    >>> weights_path("resnet18").name
    'resnet18-f37072fd.pth'
    """
    return checkpoint_dir() / weights_file_name(get_weights(name, weights).url)


def checkpoint_dir() -> Path:
    """The one folder of pretrained weights: torch.hub's cache (follows ``TORCH_HOME``).

    ``python -m data_scripts weights`` fills it; torchvision's builders read it.

    >>> checkpoint_dir().name
    'checkpoints'
    """
    return Path(torch.hub.get_dir()) / "checkpoints"


def weights_file_name(url: str) -> str:
    """The file name torch.hub gives a download: the URL's last path part.

    >>> weights_file_name("https://download.pytorch.org/models/resnet18-f37072fd.pth")
    'resnet18-f37072fd.pth'
    """
    return PurePosixPath(urlparse(url).path).name


def expected_hash_prefix(file_name: str) -> str | None:
    """The start of the file's SHA-256 that torchvision puts in its names, if any.

    >>> expected_hash_prefix("resnet18-f37072fd.pth"), expected_hash_prefix("mine.pth")
    ('f37072fd', None)
    """
    match = torch.hub.HASH_REGEX.search(file_name)
    return match.group(1) if match and match.group(1) else None


def download_weights_file(url: str, path: Path, *, progress: bool = True) -> None:
    """Download ``url`` to ``path``, kept only if its SHA-256 starts as its name promises.

    torch.hub writes a temporary file and renames it once checked; a failed download
    raises ``OSError`` (no network) or ``RuntimeError`` (wrong hash), which each caller
    explains to its own reader.

    >>> download_weights_file(ResNet18_Weights.DEFAULT.url, weights_path("resnet18"))  # doctest: +SKIP
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), expected_hash_prefix(path.name), progress)


def weights_cached(name: str, weights: str | WeightsEnum = "DEFAULT") -> bool:
    """True when the weights file is already in torch's cache (no download needed).

    >>> weights_cached("resnet18")  # doctest: +SKIP
    True
    """
    return weights_path(name, weights).is_file()


def _unavailable_message(name: str, weights: WeightsEnum, reason: str) -> str:
    return (
        f"Pretrained weights {weights} for {name} are not in the cache "
        f"({weights_path(name, weights)}) and {reason}. While online, fetch them with "
        f"`python -m data_scripts weights {name}`; offline, install them from a folder that "
        f"has the file with `python -m data_scripts weights {name} --from DIR`."
    )


def _load_pretrained(name: str, weights: WeightsEnum, allow_download: bool) -> nn.Module:
    """torchvision's ``name`` with ``weights`` from the cache or, if allowed, downloaded."""
    path = weights_path(name, weights)
    if not path.is_file():
        if not allow_download:
            raise WeightsUnavailableError(
                _unavailable_message(name, weights, "downloading was switched off")
            )
        _download_weights(name, weights, path)
    return _without_aux_heads(name, _load_cached_weights(name, weights, path))


def weights_hash_mismatch(path: Path) -> str | None:
    """How a weights file's SHA-256 differs from the start of it that its name promises.

    torchvision names its files ``<arch>-<first hex digits of the SHA-256>.pth``. None when
    the file matches, or when its name holds no hash.

    >>> weights_hash_mismatch(weights_path("resnet18"))  # doctest: +SKIP
    'its SHA-256 starts with 0badc0de, its name says f37072fd'
    """
    prefix = expected_hash_prefix(path.name)
    if not prefix:
        return None
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    if digest.startswith(prefix):
        return None
    return f"its SHA-256 starts with {digest[: len(prefix)]}, its name says {prefix}"


@contextmanager
def _weights_only_loading() -> Iterator[None]:
    """Every ``torch.load`` inside reads tensors and plain values only: no code can run.

    torchvision's builders load cached files with ``weights_only=False``; torch's own
    switch ``TORCH_FORCE_WEIGHTS_ONLY_LOAD`` overrides that for every builder.
    """
    saved = {key: os.environ.pop(key, None) for key in _WEIGHTS_ONLY_SWITCHES}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: torch's switches that decide how torch.load reads a file (the second one forces it unsafe).
_WEIGHTS_ONLY_SWITCHES = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")


def _load_cached_weights(name: str, weights: WeightsEnum, path: Path) -> nn.Module:
    """torchvision's ``name`` with the cached file ``path``, read so that it cannot run code.

    A file that cannot be read that way is checked against the hash in its name, so the
    message says whether it is another file than the one its name promises.
    """
    try:
        with _weights_only_loading():
            return torchvision.models.get_model(name, weights=weights)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError...
        mismatch = weights_hash_mismatch(path) if path.is_file() else None
        fetch = (
            f"Delete it and fetch it again with `python -m data_scripts weights {name}`; "
            f"offline, install a good copy with `python -m data_scripts weights {name} --from DIR`."
        )
        if mismatch or isinstance(error, pickle.UnpicklingError):
            raise WeightsUnavailableError(
                f"The cached weights file {path} for {name} is not the file its name promises"
                f"{f' ({mismatch})' if mismatch else ''}: it may have been tampered with or "
                f"damaged (an interrupted download or copy), so it was not loaded and nothing "
                f"in it was run. {fetch}"
            ) from None
        first_line = (str(error).splitlines() or [""])[0]
        raise WeightsUnavailableError(
            f"The cached weights file {path} for {name} cannot be loaded "
            f"({type(error).__name__}: {first_line}). It is probably truncated or corrupt (an "
            f"interrupted download or copy). {fetch}"
        ) from error


def _download_weights(name: str, weights: WeightsEnum, path: Path) -> None:
    """Fetch the weights file into torch's cache, checking its hash as torchvision does.

    Called directly rather than through torchvision, which first prints "Downloading: URL"
    even when there is no network, right above the error that says so.
    """
    try:
        download_weights_file(weights.url, path)
    except (OSError, RuntimeError) as error:  # no network, timeout, or a damaged download
        raise WeightsUnavailableError(
            _unavailable_message(name, weights, f"the download failed ({error})")
        ) from error


#: Constructor arguments that give a randomly initialized model the layers and forward that
#: torchvision's weights builder gives the pretrained one: no auxiliary heads (so forward
#: returns plain logits in train mode too), the input transform the ImageNet weights expect,
#: and an explicit init (left unset, torchvision warns).
_RANDOM_INIT_KWARGS: dict[str, dict[str, bool]] = {
    "googlenet": {"aux_logits": False, "transform_input": True, "init_weights": True},
    "inception_v3": {"aux_logits": False, "transform_input": True, "init_weights": True},
}
#: Those a built model remembers as attributes and a bundle must store to rebuild it.
_REMEMBERED_OPTIONS = ("aux_logits", "transform_input")


def _without_aux_heads(name: str, model: nn.Module) -> nn.Module:
    """Drop auxiliary heads, as torchvision's googlenet builder does: they only help training
    from scratch, and with them the model returns a tuple instead of logits in train mode."""
    if name in _RANDOM_INIT_KWARGS and getattr(model, "aux_logits", False):
        model.aux_logits = False
        for aux in ("aux1", "aux2", "AuxLogits"):
            if hasattr(model, aux):
                setattr(model, aux, None)
    return model


def random_init_model(name: str, num_classes: int | None = None, **options: Any) -> nn.Module:
    """torchvision's ``name`` with random weights, built like :func:`pretrained` builds it.

    Same layers and forward as the pretrained model (GoogLeNet and Inception v3 without
    auxiliary heads and with the pretrained input transform), so their state_dicts fit each
    other. ``options`` (e.g. ``aux_logits=True``) override those constructor arguments.

    >>> random_init_model("googlenet", num_classes=3).aux1 is None
    True
    """
    _check_model_name(name)
    kwargs: dict[str, Any] = {**_RANDOM_INIT_KWARGS.get(name, {}), **options}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    return torchvision.models.get_model(name, weights=None, **kwargs)


def architecture_options(model: nn.Module, name: str) -> dict[str, bool]:
    """The constructor arguments of torchvision's ``name`` that rebuilding ``model`` needs
    beyond its class count: ``aux_logits`` and ``transform_input`` for googlenet and
    inception_v3 (the input transform changes the outputs, not the state_dict), else {}.

    >>> architecture_options(random_init_model("inception_v3"), "inception_v3")
    {'aux_logits': False, 'transform_input': True}
    """
    if name not in _RANDOM_INIT_KWARGS:
        return {}
    return {key: bool(getattr(model, key)) for key in _REMEMBERED_OPTIONS if hasattr(model, key)}


def _cached_alternative(name: str, wanted: WeightsEnum) -> WeightsEnum | None:
    """Another cached weights version of ``name`` with the same classes, the newest first."""
    # Iterating a weights enum skips its aliases (DEFAULT): each file is looked at once.
    for version in reversed(list(type(wanted))):
        same_classes = version.meta.get("categories") == wanted.meta.get("categories")
        if version is not wanted and same_classes and weights_cached(name, version):
            return version
    return None


def _load_or_fall_back(name: str, requested: str | WeightsEnum, may_download: bool) -> nn.Module:
    """``name`` with the ``requested`` weights; for "DEFAULT", another cached version when the
    default file is missing and cannot be downloaded (one line says which)."""
    chosen = get_weights(name, requested)
    try:
        return _load_pretrained(name, chosen, may_download)
    except WeightsUnavailableError:
        is_default = isinstance(requested, str) and requested.rsplit(".", 1)[-1] == "DEFAULT"
        fallback = None if weights_cached(name, chosen) else _cached_alternative(name, chosen)
        if not is_default or fallback is None:
            raise
    print(
        f"Using the cached {fallback} for {name}: the default {chosen} is not in the cache "
        "and cannot be downloaded here (COURSE_WEIGHTS chooses a version)."
    )
    return _load_pretrained(name, fallback, allow_download=False)


def pretrained(
    name: str = "resnet18",
    weights: str | WeightsEnum | None = None,
    settings: Settings | None = None,
    num_classes: int | None = None,
    allow_download: bool | None = None,
) -> nn.Module:
    """A torchvision classifier with pretrained ``weights``, optionally with a new head.

    The weights come from torch's cache (``$TORCH_HOME``) or are downloaded. When they are
    unavailable (or the cached file is corrupt), full mode raises ``WeightsUnavailableError``
    naming the command that gets them; smoke mode prints one line and returns a randomly
    initialized model with the same layers (:func:`random_init_model`). GoogLeNet and
    Inception v3 come without auxiliary heads, so ``model(x)`` is the logits in train mode
    too. ``allow_download=None`` downloads in full mode only, so smoke runs never use the
    network. ``weights=None`` means ``settings.weights`` for ``settings.arch`` (the
    ``COURSE_WEIGHTS`` setting) and "DEFAULT" for any other model. When "DEFAULT" is missing
    and cannot be downloaded but another version of the same model is cached (say
    IMAGENET1K_V1 where the default is IMAGENET1K_V2), that one is used and one line says so.

    >>> model = pretrained("resnet18", settings=get_settings("smoke"), num_classes=5)  # doctest: +SKIP
    >>> model.fc  # doctest: +SKIP
    Linear(in_features=512, out_features=5, bias=True)
    """
    settings = settings or get_settings()
    if weights is None:
        weights = settings.weights if name == settings.arch else "DEFAULT"
    chosen = get_weights(name, weights)
    may_download = not settings.is_smoke if allow_download is None else allow_download
    try:
        model = _load_or_fall_back(name, weights, may_download)
    except WeightsUnavailableError as error:
        if not settings.is_smoke:
            raise
        # A cached file that was refused (damaged, or not the file its name promises) is
        # named with the reason, so the quick run does not hide it behind "not available".
        refused = f"{error} " if weights_path(name, chosen).is_file() else ""
        print(
            f"{refused}Pretrained weights {chosen} were not available, so this smoke run uses "
            f"random initialization (`python -m data_scripts weights {name}` fetches them)."
        )
        model = random_init_model(name)
    if num_classes is not None:
        replace_head(model, num_classes)
    return model


# --------------------------------------------------------------------------------------
# Heads, freezing, parameter groups
# --------------------------------------------------------------------------------------


HeadLayer = nn.Linear | nn.Conv2d


def _head(model: nn.Module) -> tuple[str, HeadLayer]:
    # torchvision registers the classifier last, so the head is the model's last Linear.
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1]
    # SqueezeNet classifies with a 1x1 convolution (one channel per class), then pools.
    convs = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and name.startswith("classifier.") and m.kernel_size == (1, 1)
    ]
    if convs:
        return convs[-1]
    raise ValueError(
        f"{type(model).__name__} has no nn.Linear layer (nor a 1x1 convolution in a "
        "`classifier`, as SqueezeNet has), so there is no classifier head to find. Pick a "
        "model with a Linear head, or replace its last layer yourself."
    )


def head_name(model: nn.Module) -> str:
    """Dotted name of the final classifier layer: "fc", "classifier.6", "heads.head"...

    It is the last ``nn.Linear`` (SqueezeNet: the 1x1 convolution "classifier.1").

    >>> head_name(make_vgg("A", hidden_features=8)), head_name(resnet18())
    ('classifier.6', 'fc')
    """
    return _head(model)[0]


#: torchvision keeps a single layer in slots with these names, so an nn.Sequential a learner
#: puts there (``model.fc = nn.Sequential(Linear, ReLU, Linear)``) is the head as a whole.
_SINGLE_LAYER_HEAD_SLOTS = ("fc", "head")


def _head_module_name(model: nn.Module) -> str:
    """The head as a module: ``head_name``'s layer, or the learner's Sequential around it."""
    name = head_name(model)
    parts = name.split(".")
    for end in range(1, len(parts)):  # the outermost slot wins
        if parts[end - 1] in _SINGLE_LAYER_HEAD_SLOTS:
            return ".".join(parts[:end])
    return name


def _new_head(old: HeadLayer, num_classes: int) -> HeadLayer:
    """A fresh layer like ``old`` (inputs, bias, device, dtype) with ``num_classes`` outputs."""
    like = {"bias": old.bias is not None, "device": old.weight.device, "dtype": old.weight.dtype}
    if isinstance(old, nn.Conv2d):
        return nn.Conv2d(old.in_channels, num_classes, kernel_size=1, **like)
    return nn.Linear(old.in_features, num_classes, **like)


def _set_layer(model: nn.Module, name: str, layer: nn.Module) -> None:
    parent_name, _, attribute = name.rpartition(".")
    setattr(model.get_submodule(parent_name), attribute, layer)


def replace_head(model: nn.Module, num_classes: int) -> HeadLayer:
    """Swap the classifier head for a new layer with ``num_classes`` outputs, in place.

    The new layer has the old one's inputs, bias, device and dtype, and is trainable. It is
    an ``nn.Linear``, or for SqueezeNet a 1x1 ``nn.Conv2d``. Auxiliary heads (GoogLeNet's
    ``aux1``/``aux2``, Inception v3's ``AuxLogits``, when the model has them) get new final
    layers too, so every output has one score per class.

    >>> model = resnet18(); replace_head(model, 5)
    Linear(in_features=512, out_features=5, bias=True)
    """
    if num_classes < 1:
        raise ValueError(f"num_classes={num_classes} must be at least 1 (one output per class).")
    name, old = _head(model)
    new = _new_head(old, num_classes)
    _set_layer(model, name, new)
    for aux_name, aux in model.named_children():
        if aux_name.lower().startswith("aux") and aux is not None:
            last_name, last = _head(aux)
            _set_layer(aux, last_name, _new_head(last, num_classes))
    return new


def without_head(model: nn.Module) -> nn.Module:
    """A copy of ``model`` that outputs features: its classifier head becomes ``nn.Identity``.

    The copy is deep (no shared parameters), so ``model`` keeps its head and weights. This
    is the frozen backbone whose features a new head learns from (lesson 05). A head built
    as an ``nn.Sequential`` in ``fc`` or ``head`` is replaced as a whole.

    >>> backbone = without_head(resnet18())
    >>> backbone(torch.zeros(1, 3, 64, 64)).shape
    torch.Size([1, 512])
    """
    backbone = copy.deepcopy(model)
    backbone.set_submodule(_head_module_name(backbone), nn.Identity())
    return backbone


def _is_under(parameter_name: str, prefix: str) -> bool:
    # Whole name parts only: "features.2" must not match "features.28.weight".
    return parameter_name == prefix or parameter_name.startswith(prefix + ".")


def _parameters_under(
    model: nn.Module, names: str | Iterable[str] | None
) -> list[tuple[str, nn.Parameter]]:
    """The named parameters below the given prefixes (all of them for None)."""
    named = list(model.named_parameters())
    if names is None:
        return named
    prefixes = [names] if isinstance(names, str) else list(names)
    unmatched = [p for p in prefixes if not any(_is_under(name, p) for name, _ in named)]
    if unmatched:
        children = ", ".join(name for name, _ in model.named_children())
        raise ValueError(
            f"No parameters are under {', '.join(map(repr, unmatched))} in this "
            f"{type(model).__name__}. Use a top-level part ({children}) or a dotted path "
            "inside one as shown by print(model), for example 'layer4' or 'features.28'."
        )
    return [(name, p) for name, p in named if any(_is_under(name, pre) for pre in prefixes)]


def _set_requires_grad(
    model: nn.Module, names: str | Iterable[str] | None, requires_grad: bool
) -> int:
    changed = 0
    for _, parameter in _parameters_under(model, names):
        if parameter.requires_grad != requires_grad:
            parameter.requires_grad_(requires_grad)
            changed += parameter.numel()
    return changed


def freeze(model: nn.Module, names: str | Iterable[str] | None = None) -> int:
    """Stop training the parameters under the prefixes ``names`` (None = all of them).

    A prefix is a module path such as "layer4", "fc" or "features.28". Returns how many
    parameters (numbers) were trainable before and are frozen now.

    Frozen only means "no gradient": in ``model.train()`` a BatchNorm layer still updates
    its running mean and variance (buffers, not parameters) from every batch it sees. To keep
    those fixed too, call ``.eval()`` on the BatchNorm layers after each ``model.train()``
    in a loop of your own. ``fit`` calls ``model.train()`` every epoch, so there use cached
    features instead (``fit_on_features``: the backbone runs once, in eval mode), as
    lesson 05 shows.

    >>> model = resnet18(); freeze(model) == count_parameters(model)
    True
    """
    return _set_requires_grad(model, names, requires_grad=False)


def unfreeze(model: nn.Module, names: str | Iterable[str] | None = None) -> int:
    """Train the parameters under the prefixes ``names`` again (None = all of them).

    >>> model = resnet18(); _ = freeze(model); unfreeze(model, "fc")
    513000
    """
    return _set_requires_grad(model, names, requires_grad=True)


def _use_running_statistics(layer: nn.Module, _inputs: Any) -> None:
    layer.training = False  # this forward pass normalizes with the stored statistics


def freeze_batchnorm_statistics(model: nn.Module) -> int:
    """Keep every BatchNorm layer of ``model`` in eval mode, even after ``model.train()``.

    Freezing parameters does not stop BatchNorm from normalizing with batch statistics and
    updating its running mean and variance in train mode. After this call each BatchNorm
    layer switches itself to eval mode before every forward pass (a forward pre-hook), so
    ``fit``, which calls ``model.train()`` every epoch, keeps the pretrained statistics
    fixed; the layers' weight and bias still learn when they are trainable. Calling it
    again changes nothing. Returns how many BatchNorm layers it affects.

    >>> model = resnet18(); freeze_batchnorm_statistics(model)
    20
    """
    batchnorm = nn.modules.batchnorm._BatchNorm  # BatchNorm1d/2d/3d and SyncBatchNorm
    layers = [layer for layer in model.modules() if isinstance(layer, batchnorm)]
    for layer in layers:
        if _use_running_statistics not in layer._forward_pre_hooks.values():
            layer.register_forward_pre_hook(_use_running_statistics)
    return len(layers)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (weights and biases), or only those that will be trained.

    >>> count_parameters(nn.Linear(10, 2))
    22
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def trainable_parameter_names(model: nn.Module) -> list[str]:
    """Names of the parameters the optimizer will update ("params to learn").

    >>> model = resnet18(); _ = freeze(model, "layer1"); trainable_parameter_names(model)[-1]
    'fc.bias'
    """
    return [name for name, p in model.named_parameters() if p.requires_grad]


def param_groups(
    model: nn.Module, base_lr: float, head_lr_multiplier: float = 10.0, head: str | None = None
) -> list[dict[str, Any]]:
    """Optimizer parameter groups: backbone at ``base_lr``, head ``head_lr_multiplier`` x faster.

    Only trainable parameters are included; the backbone group is left out when the whole
    backbone is frozen. ``head`` (a prefix) defaults to ``head_name(model)``, or to the
    whole ``fc``/``head`` when you built the head as an ``nn.Sequential`` there.

    >>> groups = param_groups(resnet18(), base_lr=1e-4)
    >>> [(g["name"], g["lr"]) for g in groups]
    [('backbone', 0.0001), ('head', 0.001)]
    """
    head = head or _head_module_name(model)
    head_names = {name for name, _ in _parameters_under(model, head)}
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    head_params = [p for name, p in trainable if name in head_names]
    backbone_params = [p for name, p in trainable if name not in head_names]
    if not head_params:
        raise ValueError(
            f"The head {head!r} has no trainable parameters, so it would never learn. "
            f"Call unfreeze(model, {head!r}) first."
        )
    groups = [
        {"params": backbone_params, "lr": base_lr, "name": "backbone"},
        {"params": head_params, "lr": base_lr * head_lr_multiplier, "name": "head"},
    ]
    return [group for group in groups if group["params"]]


# --------------------------------------------------------------------------------------
# Summaries and parameter arithmetic
# --------------------------------------------------------------------------------------


def model_summary(model: nn.Module, image_size: int, batch_size: int = 1, depth: int = 3) -> str:
    """A layer-by-layer table with output shapes and parameter counts (torchinfo).

    >>> "Total params" in model_summary(resnet18(), 64)
    True
    """
    statistics = torchinfo.summary(
        model,
        input_size=(batch_size, 3, image_size, image_size),
        depth=depth,
        verbose=0,
        # Without a device torchinfo would move a CPU model to the GPU when there is one.
        device=model_device(model),
    )
    return str(statistics)
