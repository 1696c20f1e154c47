"""Models: from-scratch VGG/ResNet against torchvision, pretrained loading offline, heads,
freezing, parameter groups, summaries and the Keras parameter arithmetic."""

from __future__ import annotations

import ast
import urllib.error
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch
import torchvision
from torch import nn
from torchvision import models as tvm
from torchvision.models import regnet

import coursekit
from coursekit import models
from coursekit.config import SettingsError, get_settings
from coursekit.models import (
    VGG_CFGS,
    BasicBlock,
    ResNet,
    WeightsUnavailableError,
    count_parameters,
    feature_map_sizes,
    freeze,
    get_weights,
    head_name,
    make_vgg,
    model_summary,
    param_groups,
    pretrained,
    random_init_model,
    replace_head,
    trainable_parameter_names,
    unfreeze,
    weights_cached,
    weights_path,
    without_head,
)

META = torch.device("meta")  # shapes without memory: fast for counting and key checks

RESNETS = [
    (models.resnet18, tvm.resnet18, 11_689_512),
    (models.resnet34, tvm.resnet34, 21_797_672),
    (models.resnet50, tvm.resnet50, 25_557_032),
]
VGGS = [
    ("A", tvm.vgg11, tvm.vgg11_bn),
    ("B", tvm.vgg13, tvm.vgg13_bn),
    ("D", tvm.vgg16, tvm.vgg16_bn),
    ("E", tvm.vgg19, tvm.vgg19_bn),
]


def shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in model.state_dict().items()]


def assert_same_state(ours: nn.Module, theirs: nn.Module) -> None:
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert list(ours_state) == list(theirs_state)
    for key, value in theirs_state.items():
        assert torch.equal(ours_state[key], value), key


@pytest.fixture(autouse=True)
def downloads(monkeypatch) -> list[str]:
    """No test touches the network: every download attempt is recorded and fails offline."""
    attempts: list[str] = []

    def offline(url: str, *args, **kwargs) -> None:
        attempts.append(url)
        raise urllib.error.URLError("network is off in the tests")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return attempts


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Path:
    """An empty torch cache: TORCH_HOME and torch.hub.set_dir both point into tmp_path."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    # set_dir() changes a module global; registering it with monkeypatch restores it after.
    monkeypatch.setattr(torch.hub, "_hub_dir", torch.hub._hub_dir)
    torch.hub.set_dir(tmp_path / "torch" / "hub")
    return tmp_path / "torch" / "hub"


# --- from-scratch networks against torchvision ----------------------------------------


@pytest.mark.parametrize(("ours", "theirs", "documented"), RESNETS)
def test_resnet_counts_and_keys_equal_torchvision(ours, theirs, documented):
    with META:
        ours_model, theirs_model = ours(), theirs(weights=None)
    assert count_parameters(ours_model) == count_parameters(theirs_model) == documented
    assert shapes(ours_model) == shapes(theirs_model)


@pytest.mark.parametrize(("cfg", "plain", "with_bn"), VGGS)
def test_vgg_counts_and_keys_equal_torchvision(cfg, plain, with_bn):
    for batch_norm, theirs in ((False, plain), (True, with_bn)):
        with META:
            ours_model = make_vgg(cfg, batch_norm=batch_norm)
            theirs_model = theirs(weights=None)
        assert count_parameters(ours_model) == count_parameters(theirs_model)
        assert shapes(ours_model) == shapes(theirs_model)
        assert isinstance(ours_model.avgpool, nn.AdaptiveAvgPool2d)
        assert ours_model.avgpool.output_size == (7, 7)


def test_make_vgg_takes_a_key_or_the_list_behind_it():
    with META:
        from_key = make_vgg("D", num_classes=7)
        from_list = make_vgg(list(VGG_CFGS["D"]), num_classes=7)
    assert shapes(from_key) == shapes(from_list)
    assert from_key.classifier[-1].out_features == 7


@pytest.mark.parametrize(
    ("cfg", "message"),
    [("C", "unknown"), ([64, "X"], "'X'"), ([64, 0], "0"), (["M", "M"], "at least one")],
)
def test_make_vgg_rejects_bad_configs_clearly(cfg, message):
    with pytest.raises(ValueError, match=message):
        make_vgg(cfg)


def test_vgg_init_follows_the_standard_recipe():
    torch.manual_seed(0)
    model = make_vgg("A", batch_norm=True, num_classes=10, hidden_features=256)
    big_conv = [m for m in model.features if isinstance(m, nn.Conv2d)][-1]  # 512 -> 512, 3x3
    fan_out = big_conv.out_channels * big_conv.kernel_size[0] * big_conv.kernel_size[1]
    kaiming_std = (2.0 / fan_out) ** 0.5
    assert big_conv.weight.std().item() == pytest.approx(kaiming_std, rel=0.02)
    first_linear = model.classifier[0]
    assert first_linear.weight.std().item() == pytest.approx(0.01, rel=0.02)
    assert first_linear.weight.mean().item() == pytest.approx(0.0, abs=1e-4)
    layers = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert all(torch.count_nonzero(layer.bias) == 0 for layer in layers)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(bool((n.weight == 1).all() and (n.bias == 0).all()) for n in norms)


def test_vgg_without_init_keeps_pytorch_defaults():
    torch.manual_seed(0)
    model = make_vgg([8, "M"], num_classes=2, init_weights=False, hidden_features=16)
    assert torch.count_nonzero(model.classifier[0].bias) > 0


@pytest.mark.parametrize("zero_init_residual", [False, True])
def test_seeded_resnet18_is_torchvision_resnet18(zero_init_residual):
    torch.manual_seed(0)
    ours = ResNet(BasicBlock, [2, 2, 2, 2], 10, zero_init_residual=zero_init_residual)
    torch.manual_seed(0)
    theirs = tvm.resnet18(num_classes=10, zero_init_residual=zero_init_residual)
    assert_same_state(ours, theirs)


@pytest.mark.parametrize(
    ("ours", "theirs"), [(models.resnet18, tvm.resnet18), (models.resnet50, tvm.resnet50)]
)
def test_torchvision_weights_load_into_ours_and_give_the_same_outputs(ours, theirs):
    torch.manual_seed(0)
    reference = theirs(weights=None, num_classes=10).eval()
    for module in reference.modules():  # non-trivial BatchNorm so a mixed-up layer shows
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, std=0.1)
            module.running_mean.normal_(std=0.1)
            module.running_var.uniform_(0.5, 1.5)
    model = ours(num_classes=10)
    model.load_state_dict(reference.state_dict(), strict=True)
    model.eval()
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference(images))


def test_resnet_rejects_a_wrong_number_of_stages():
    with pytest.raises(ValueError, match="4 positive block counts"):
        ResNet(BasicBlock, [2, 2, 2])


# --- feature maps and summaries --------------------------------------------------------


def test_feature_map_sizes_walk_a_resnet_from_224_to_1():
    ours, theirs = models.resnet18(), tvm.resnet18(weights=None)
    ours_sizes = feature_map_sizes(ours, 224)
    assert [name for name, _ in ours_sizes] == [
        "conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool",
    ]  # fmt: skip
    sides = [shape[-1] for _, shape in ours_sizes]
    assert sorted(set(sides), reverse=True) == [112, 56, 28, 14, 7, 1]
    assert [shape[1] for _, shape in ours_sizes][-1] == 512
    assert feature_map_sizes(theirs, 224) == ours_sizes
    assert ours.training, "feature_map_sizes must restore train mode"


def test_feature_map_sizes_use_top_level_children_for_other_models():
    model = make_vgg("A", num_classes=3, hidden_features=16).eval()
    sizes = feature_map_sizes(model, 32)
    assert sizes == [
        ("features", (1, 512, 1, 1)),
        ("avgpool", (1, 512, 7, 7)),
        ("classifier", (1, 3)),
    ]
    assert not model.training


def test_forward_features_is_the_backbone_of_forward():
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=4).eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_features(images)
        assert features.shape == (1, 512, 2, 2)
        expected = model.fc(features.mean(dim=(2, 3)))
        torch.testing.assert_close(model(images), expected)


def test_model_summary_uses_torchinfo():
    text = model_summary(models.resnet18(num_classes=3), 64)
    assert f"Total params: {count_parameters(models.resnet18(num_classes=3)):,}" in text
    assert "BasicBlock" in text


# --- heads ------------------------------------------------------------------------------

HEADS = [
    ("resnet18", "fc"),
    ("vgg11", "classifier.6"),
    ("densenet121", "classifier"),
    ("mobilenet_v3_small", "classifier.3"),
    ("efficientnet_b0", "classifier.1"),
    ("convnext_tiny", "classifier.2"),
    ("vit_b_16", "heads.head"),
]


@pytest.mark.parametrize(("name", "expected"), HEADS)
def test_head_is_found_and_replaced_in_every_family(name, expected):
    with META:
        model = tvm.get_model(name, weights=None)
    old = model.get_submodule(expected)
    assert head_name(model) == expected
    new = replace_head(model, 3)
    assert model.get_submodule(expected) is new
    assert (new.in_features, new.out_features) == (old.in_features, 3)
    assert new.weight.device == old.weight.device and new.weight.dtype == old.weight.dtype


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small"])
def test_replaced_head_gives_one_output_per_class(name):
    model = tvm.get_model(name, weights=None)
    replace_head(model, 4)
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 4)


def test_replace_head_keeps_dtype_and_rejects_zero_classes():
    model = ResNet(BasicBlock, [1, 1, 1, 1], num_classes=5).double()
    assert replace_head(model, 2).weight.dtype == torch.float64
    with pytest.raises(ValueError, match="at least 1"):
        replace_head(model, 0)


ALL_CLASSIFIERS = tvm.list_models(module=tvm)


@pytest.fixture
def regnet_on_meta(monkeypatch) -> None:
    """RegNet computes its layer widths with tensors and reads them back, which the meta
    device cannot do: let that bit of arithmetic run on the CPU."""
    widths = regnet.BlockParams.from_init_params.__func__

    def on_cpu(cls, *args, **kwargs):
        with torch.device("cpu"):
            return widths(cls, *args, **kwargs)

    monkeypatch.setattr(regnet.BlockParams, "from_init_params", classmethod(on_cpu))


def out_size(layer: nn.Module) -> int:
    return layer.out_channels if isinstance(layer, nn.Conv2d) else layer.out_features


@pytest.mark.usefixtures("regnet_on_meta")
@pytest.mark.parametrize("name", ALL_CLASSIFIERS)
def test_every_torchvision_classifier_gets_a_new_head_in_the_head_group(name):
    with META:  # built without memory or init: the structure is what matters here
        model = random_init_model(name)
    head = head_name(model)
    new = replace_head(model, 3)

    assert model.get_submodule(head) is new and out_size(new) == 3
    # Nothing still scores the 1000 ImageNet classes (an auxiliary head, say).
    assert not [n for n, m in model.named_modules() if getattr(m, "out_features", 0) == 1000]
    groups = {g["name"]: {id(p) for p in g["params"]} for g in param_groups(model, 1e-3)}
    assert groups["head"] == {id(p) for p in new.parameters()}
    assert groups["backbone"] | groups["head"] == {id(p) for p in model.parameters()}


#: One small member of each family, with the smallest input it takes.
FORWARD_CHECKED = {
    "alexnet": 64,
    "convnext_tiny": 32,
    "densenet121": 32,
    "efficientnet_b0": 32,
    "googlenet": 32,
    "inception_v3": 75,
    "mnasnet0_5": 32,
    "mobilenet_v3_small": 32,
    "regnet_x_400mf": 32,
    "resnet18": 32,
    "shufflenet_v2_x0_5": 32,
    "squeezenet1_1": 32,
}
#: Families whose smallest member is slow on a CPU: their forward runs on the meta device.
FORWARD_CHECKED_ON_META = {"maxvit_t": 224, "swin_t": 224, "vgg11": 32, "vit_b_32": 224}


@pytest.mark.parametrize("name", [*FORWARD_CHECKED, *FORWARD_CHECKED_ON_META])
def test_a_new_head_gives_one_score_per_class_in_train_and_eval_mode(name):
    device = META if name in FORWARD_CHECKED_ON_META else torch.device("cpu")
    size = {**FORWARD_CHECKED, **FORWARD_CHECKED_ON_META}[name]
    torch.manual_seed(0)
    with device:
        model = random_init_model(name)
    replace_head(model, 4)
    images = torch.rand(2, 3, size, size, device=device)
    with torch.no_grad():
        for training in (True, False):
            logits = model.train(training)(images)
            assert isinstance(logits, torch.Tensor) and logits.shape == (2, 4), training


@pytest.mark.parametrize(
    ("build", "aux_heads"),
    [
        (lambda: tvm.googlenet(weights=None, aux_logits=True, init_weights=True), 2),
        (lambda: tvm.inception_v3(weights=None, aux_logits=True, init_weights=True), 1),
    ],
    ids=["googlenet", "inception_v3"],
)
def test_replace_head_also_replaces_auxiliary_heads(build, aux_heads):
    with META:
        model = build()
    replace_head(model, 3)
    outputs = model.train()(torch.zeros(2, 3, 299, 299, device=META))
    assert len(outputs) == 1 + aux_heads  # (logits, aux2, aux1) or (logits, aux_logits)
    assert all(output.shape == (2, 3) for output in outputs)


def test_squeezenet_head_is_its_1x1_convolution():
    model = random_init_model("squeezenet1_1")
    old = model.classifier[1]
    new = replace_head(model, 5)
    assert head_name(model) == "classifier.1" and model.classifier[1] is new
    assert isinstance(new, nn.Conv2d) and (new.in_channels, new.out_channels) == (512, 5)
    assert new.kernel_size == old.kernel_size == (1, 1)
    assert without_head(model)(torch.zeros(1, 3, 32, 32)).shape == (1, 512)


def test_a_sequential_head_counts_as_a_whole():
    model = models.resnet18()
    model.fc = nn.Sequential(nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 3))
    freeze(model)
    unfreeze(model, "fc")
    assert head_name(model) == "fc.2"  # the layer that gives the class scores
    groups = param_groups(model, 1e-3)
    assert [g["name"] for g in groups] == ["head"]
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model.fc.parameters()}
    unfreeze(model)
    backbone, head = ({id(p) for p in g["params"]} for g in param_groups(model, 1e-3))
    assert head == {id(p) for p in model.fc.parameters()} and not backbone & head
    features = without_head(model).eval()(torch.zeros(1, 3, 32, 32))
    assert features.shape == (1, 512)  # what the whole head sees, not its hidden layer


def test_head_name_explains_a_model_without_linear_layer():
    with pytest.raises(ValueError, match="no nn.Linear"):
        head_name(nn.Sequential(nn.Conv2d(3, 2, 1)))


@pytest.mark.parametrize(
    "build",
    [
        lambda: models.resnet18(num_classes=5),
        lambda: make_vgg("A", num_classes=5, hidden_features=8),
    ],
    ids=["resnet18", "vgg11"],
)
def test_without_head_outputs_what_the_head_would_see_and_leaves_the_model_alone(build):
    model = build().eval()
    head = model.get_submodule(head_name(model))
    state_before = {key: value.clone() for key, value in model.state_dict().items()}
    seen_by_head = []
    head.register_forward_hook(lambda module, inputs, output: seen_by_head.append(inputs[0]))
    images = torch.rand(2, 3, 32, 32)

    backbone = without_head(model).eval()
    with torch.no_grad():
        features, logits = backbone(images), model(images)

    assert features.shape == (2, head.in_features) and logits.shape == (2, 5)
    torch.testing.assert_close(features, seen_by_head[-1])
    assert model.get_submodule(head_name(model)) is head
    assert isinstance(backbone.get_submodule(head_name(model)), nn.Identity)
    with torch.no_grad():  # an in-place change to the copy must not reach the original
        for parameter in backbone.parameters():
            parameter.add_(1.0)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state_before[key]), key


# --- freezing and parameter groups ------------------------------------------------------


def test_freeze_and_unfreeze_report_what_changed():
    model = models.resnet18(num_classes=10)
    total = count_parameters(model)
    assert freeze(model) == total
    assert count_parameters(model, trainable_only=True) == 0
    assert freeze(model) == 0  # nothing left to change
    assert unfreeze(model, "fc") == count_parameters(model.fc) == 512 * 10 + 10
    assert unfreeze(model, ["layer4", "fc"]) == count_parameters(model.layer4)
    assert all(n.startswith(("layer4.", "fc.")) for n in trainable_parameter_names(model))
    assert unfreeze(model) == total - count_parameters(model.layer4) - count_parameters(model.fc)


def test_prefixes_match_whole_name_parts():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(12)])
    freeze(model)
    unfreeze(model, "1")  # must not also unfreeze "10" and "11"
    assert trainable_parameter_names(model) == ["1.weight", "1.bias"]


def test_unknown_prefix_lists_the_models_parts():
    model = models.resnet18()
    with pytest.raises(ValueError, match="'layer5'") as error:
        freeze(model, ["layer4", "layer5"])
    assert "conv1, bn1, relu, maxpool, layer1" in str(error.value)
    assert count_parameters(model, trainable_only=True) == count_parameters(model)


def test_param_groups_split_trainable_parameters_into_backbone_and_head():
    model = models.resnet18(num_classes=4)
    freeze(model, "layer1")
    groups = param_groups(model, base_lr=0.01, head_lr_multiplier=10.0)
    assert [(g["name"], g["lr"]) for g in groups] == [("backbone", 0.01), ("head", 0.1)]
    backbone, head = ({id(p) for p in g["params"]} for g in groups)
    assert not backbone & head
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert backbone | head == trainable
    assert head == {id(model.fc.weight), id(model.fc.bias)}
    optimizer = torch.optim.SGD(groups, lr=0.01)
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]


def test_param_groups_drop_a_frozen_backbone_and_accept_another_head():
    model = models.resnet18(num_classes=4)
    freeze(model)
    unfreeze(model, "fc")
    assert [g["name"] for g in param_groups(model, 1e-3)] == ["head"]
    unfreeze(model, "layer4")
    groups = param_groups(model, 1e-3, head_lr_multiplier=2.0, head="layer4")
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.layer4.parameters()}


def test_param_groups_refuse_a_frozen_head():
    model = models.resnet18(num_classes=4)
    freeze(model)
    with pytest.raises(ValueError, match=r"unfreeze\(model, 'fc'\)"):
        param_groups(model, 1e-3)


# --- weights API and pretrained() offline -----------------------------------------------


def test_get_weights_accepts_every_spelling():
    expected = tvm.ResNet18_Weights.DEFAULT
    assert get_weights("resnet18") is expected
    assert get_weights("resnet18", "IMAGENET1K_V1") is expected
    assert get_weights("resnet18", "ResNet18_Weights.IMAGENET1K_V1") is expected
    assert get_weights("resnet18", expected) is expected


def test_get_weights_suggests_close_names():
    with pytest.raises(ValueError, match="Did you mean.*resnet18"):
        get_weights("resnet-18")
    with pytest.raises(ValueError, match="IMAGENET1K_V1"):
        get_weights("resnet18", "IMAGENET")


def test_weights_path_is_the_official_file_in_the_hub_cache(hub_dir):
    url = tvm.ResNet18_Weights.DEFAULT.url
    assert weights_path("resnet18") == hub_dir / "checkpoints" / Path(urlparse(url).path).name
    assert not weights_cached("resnet18")


def test_smoke_mode_without_weights_uses_random_init_without_network(hub_dir, downloads, capsys):
    model = pretrained("resnet18", settings=get_settings("smoke"), num_classes=3)
    assert downloads == []
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "random initialization" in lines[0]
    assert model.fc.out_features == 3
    assert isinstance(model, torchvision.models.ResNet)


def test_full_mode_offline_raises_with_the_fetch_command(hub_dir, downloads):
    with pytest.raises(WeightsUnavailableError) as error:
        pretrained("resnet18", settings=get_settings("full"), allow_download=True)
    assert downloads == [tvm.ResNet18_Weights.DEFAULT.url]  # it tried, and failed
    message = str(error.value)
    assert "python -m data_scripts weights resnet18" in message and "--from DIR" in message
    assert not weights_cached("resnet18")


def test_full_mode_without_downloads_never_tries_the_network(hub_dir, downloads):
    with pytest.raises(WeightsUnavailableError, match="switched off"):
        pretrained("resnet18", settings=get_settings("full"), allow_download=False)
    assert downloads == []


@pytest.mark.parametrize("mode", ["smoke", "full"])
def test_cached_weights_are_loaded_without_network(hub_dir, downloads, mode, capsys):
    torch.manual_seed(0)
    fake = tvm.resnet18(weights=None)  # the hash in the name is only checked on download
    url_name = Path(urlparse(tvm.ResNet18_Weights.DEFAULT.url).path).name
    (hub_dir / "checkpoints").mkdir(parents=True)
    torch.save(fake.state_dict(), hub_dir / "checkpoints" / url_name)
    assert weights_cached("resnet18")
    model = pretrained("resnet18", settings=get_settings(mode), num_classes=7)
    assert downloads == [] and capsys.readouterr().out == ""
    assert model.fc.out_features == 7
    loaded, saved = model.state_dict(), fake.state_dict()
    assert list(loaded) == list(saved)
    assert all(torch.equal(loaded[key], saved[key]) for key in saved if not key.startswith("fc."))


def test_pretrained_reads_the_mode_from_the_environment(hub_dir, downloads, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_MODE", "smoke")
    pretrained("mobilenet_v3_small")
    assert "random initialization" in capsys.readouterr().out
    assert downloads == []


def cache_random_weights(name: str, weights: str) -> dict[str, torch.Tensor]:
    """A seeded random state_dict saved under the file name of ``weights`` in the cache."""
    torch.manual_seed(0)
    state = tvm.get_model(name, weights=None).state_dict()
    path = weights_path(name, weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return state


def same_backbone(model: nn.Module, state: dict[str, torch.Tensor]) -> bool:
    loaded = model.state_dict()
    return all(torch.equal(loaded[key], state[key]) for key in state if key in loaded)


@pytest.mark.parametrize("mode", ["smoke", "full"])
def test_default_weights_missing_offline_fall_back_to_another_cached_version(
    hub_dir, downloads, capsys, mode
):
    v1 = cache_random_weights("mobilenet_v2", "IMAGENET1K_V1")
    assert not weights_cached("mobilenet_v2")  # DEFAULT is IMAGENET1K_V2

    model = pretrained("mobilenet_v2", settings=get_settings(mode), num_classes=2)

    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "Using the cached MobileNet_V2_Weights.IMAGENET1K_V1 for mobilenet_v2: the default "
        "MobileNet_V2_Weights.IMAGENET1K_V2 is not in the cache and cannot be downloaded here "
        "(COURSE_WEIGHTS chooses a version)."
    ]
    assert same_backbone(model, {k: v for k, v in v1.items() if not k.startswith("classifier")})
    assert model.classifier[-1].out_features == 2
    # Full mode tried to download the default first; smoke mode never uses the network.
    expected = [tvm.MobileNet_V2_Weights.IMAGENET1K_V2.url] if mode == "full" else []
    assert downloads == expected


def test_a_chosen_weights_version_is_loaded_and_never_replaced(hub_dir, downloads, capsys):
    v1 = cache_random_weights("mobilenet_v2", "IMAGENET1K_V1")

    chosen_v1 = get_settings("full", arch="mobilenet_v2", weights="IMAGENET1K_V1")
    assert same_backbone(pretrained("mobilenet_v2", settings=chosen_v1), v1)
    assert capsys.readouterr().out == "" and downloads == []

    chosen_v2 = get_settings("full", arch="mobilenet_v2", weights="IMAGENET1K_V2")
    with pytest.raises(WeightsUnavailableError, match="IMAGENET1K_V2"):
        pretrained("mobilenet_v2", settings=chosen_v2)
    assert capsys.readouterr().out == ""


def test_the_weights_setting_belongs_to_the_settings_arch_only(hub_dir, downloads, capsys):
    resnet = cache_random_weights("resnet18", "DEFAULT")
    settings = get_settings("full", arch="mobilenet_v2", weights="IMAGENET1K_V2")

    # resnet18 has no IMAGENET1K_V2: another model than settings.arch gets its DEFAULT.
    assert same_backbone(pretrained("resnet18", settings=settings), resnet)
    assert capsys.readouterr().out == "" and downloads == []


def test_without_any_cached_version_the_default_error_stays(hub_dir, downloads):
    with pytest.raises(WeightsUnavailableError, match="IMAGENET1K_V2 for mobilenet_v2"):
        pretrained("mobilenet_v2", settings=get_settings("full"))


def test_the_weights_setting_is_read_from_the_environment(hub_dir, downloads, monkeypatch):
    v1 = cache_random_weights("mobilenet_v2", "IMAGENET1K_V1")
    monkeypatch.setenv("COURSE_ARCH", "mobilenet_v2")
    monkeypatch.setenv("COURSE_WEIGHTS", "IMAGENET1K_V1")

    assert same_backbone(pretrained("mobilenet_v2", settings=get_settings("full")), v1)


def test_an_unknown_weights_setting_names_the_versions_of_the_arch(monkeypatch):
    monkeypatch.setenv("COURSE_ARCH", "mobilenet_v2")
    monkeypatch.setenv("COURSE_WEIGHTS", "IMAGENET1K_V3")
    with pytest.raises(SettingsError) as error:
        get_settings("full")
    message = str(error.value)
    assert "IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT" in message and "COURSE_WEIGHTS" in message
    assert "mobilenet_v2" in message


def deprecated_pretrained_calls(source: str) -> list[int]:
    """Lines of calls that pass torchvision's removed boolean `pretrained` keyword."""
    return [
        node.lineno
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and any(k.arg in ("pretrained", "pretrained_backbone") for k in node.keywords)
    ]


def test_coursekit_never_passes_the_deprecated_pretrained_flag():
    assert deprecated_pretrained_calls("m = tvm.resnet18(pretrained=True)") == [1]
    package = Path(coursekit.__file__).parent
    offenders = [
        f"{path.relative_to(package)}:{line}"
        for path in sorted(package.rglob("*.py"))
        for line in deprecated_pretrained_calls(path.read_text(encoding="utf-8"))
    ]
    assert offenders == [], "use the weights API (weights=...DEFAULT) instead"


def test_full_mode_offline_shows_only_the_clear_message(hub_dir, downloads, capsys):
    with pytest.raises(WeightsUnavailableError, match="download failed"):
        pretrained("resnet18", settings=get_settings("full"), allow_download=True)
    assert downloads == [tvm.ResNet18_Weights.DEFAULT.url]
    assert capsys.readouterr() == ("", "")  # no "Downloading: https://..." before the error


def test_a_download_goes_to_the_cache_with_the_hash_checked(hub_dir, monkeypatch):
    torch.manual_seed(0)
    served = tvm.resnet18(weights=None)
    requests = []

    def download(url, dst, hash_prefix=None, progress=True):
        requests.append((url, Path(dst), hash_prefix))
        torch.save(served.state_dict(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    model = pretrained("resnet18", settings=get_settings("full"))
    assert requests == [(tvm.ResNet18_Weights.DEFAULT.url, weights_path("resnet18"), "f37072fd")]
    assert torch.equal(model.conv1.weight, served.conv1.weight)


@pytest.fixture
def corrupt_cache(hub_dir) -> Path:
    """A resnet18 weights file cut off halfway, as an interrupted copy leaves it."""
    path = weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(tvm.resnet18(weights=None).state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def test_a_corrupt_cached_file_names_the_file_and_the_fix_in_full_mode(corrupt_cache, downloads):
    with pytest.raises(WeightsUnavailableError) as error:
        pretrained("resnet18", settings=get_settings("full"))
    message = str(error.value)
    assert str(corrupt_cache) in message and "Delete it" in message
    assert "python -m data_scripts weights resnet18" in message and "--from DIR" in message
    assert downloads == []


def test_a_corrupt_cached_file_falls_back_to_random_init_in_smoke_mode(corrupt_cache, capsys):
    model = pretrained("resnet18", settings=get_settings("smoke"), num_classes=3)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "random initialization" in lines[0]
    assert model.fc.out_features == 3


def cache_imagenet_weights(name: str, build) -> None:
    """Put a file shaped like the official weights (auxiliary heads included) in the cache."""
    path = weights_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(build().state_dict(), path)


ODD_HEADS = [
    (
        "googlenet",
        lambda: tvm.GoogLeNet(aux_logits=True, transform_input=True, init_weights=False),
    ),
    (
        "inception_v3",
        lambda: tvm.Inception3(aux_logits=True, transform_input=True, init_weights=False),
    ),
]


@pytest.mark.parametrize(("name", "official"), ODD_HEADS, ids=["googlenet", "inception_v3"])
def test_pretrained_and_random_init_have_the_same_layers_and_return_logits(
    hub_dir, downloads, capsys, name, official
):
    random_model = pretrained(name, settings=get_settings("smoke"), num_classes=3)
    assert "random initialization" in capsys.readouterr().out
    cache_imagenet_weights(name, official)
    weighted = pretrained(name, settings=get_settings("full"), num_classes=3)

    assert shapes(random_model) == shapes(weighted)
    for model in (random_model, weighted):
        assert model.transform_input and not model.aux_logits
        logits = model.train()(torch.rand(2, 3, 75, 75))  # train mode: no auxiliary outputs
        assert isinstance(logits, torch.Tensor) and logits.shape == (2, 3)
    assert downloads == []


def test_feature_map_sizes_keeps_a_deliberately_frozen_batchnorm_in_eval_mode():
    """Measuring sizes must not flip a BatchNorm that was put in eval mode back to training."""
    model = models.resnet18(num_classes=3)
    model.train()
    model.bn1.eval()  # frozen statistics inside a training model, as fine-tuning does
    feature_map_sizes(model, 32)
    assert model.training and not model.bn1.training
    assert all(m.training for name, m in model.named_modules() if name != "bn1")
