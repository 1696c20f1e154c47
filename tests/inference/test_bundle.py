"""coursekit.bundle: one-file bundles, safe loading, and the messages for files that are not one."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torchvision
from inference_helpers import (
    BUNDLE_ARGS,
    CLASSES,
    IMAGE_SIZE,
    RESIZE_SIZE,
)
from torch import nn

from coursekit import infer, models
from coursekit.bundle import BundleError, export_bundle, load_bundle
from coursekit.config import IMAGENET_MEAN, IMAGENET_STD
from coursekit.train import save_checkpoint


@pytest.fixture(scope="module")
def bundle_path(_resnet: nn.Module, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bundle") / "models" / "insects.pt"
    extra = {"epochs": 3, "note": "smoke", "history": [0.5, 0.7]}
    assert export_bundle(path, copy.deepcopy(_resnet), extra=extra, **BUNDLE_ARGS) == path
    return path


def test_bundle_is_one_plain_file_that_safe_torch_load_reads(bundle_path, _resnet):
    contents = torch.load(bundle_path, weights_only=True)

    assert set(contents) == {
        "format", "version", "state_dict", "class_names", "arch", "num_classes",
        "image_size", "resize_size", "mean", "std", "extra",
    }  # fmt: skip
    assert (contents["format"], contents["version"]) == ("coursekit-bundle", 1)
    assert contents["class_names"] == CLASSES and contents["num_classes"] == 3
    assert contents["arch"] == "resnet18"
    assert (contents["image_size"], contents["resize_size"]) == (IMAGE_SIZE, RESIZE_SIZE)
    assert contents["mean"] == list(IMAGENET_MEAN) and contents["std"] == list(IMAGENET_STD)
    assert contents["extra"] == {"epochs": 3, "note": "smoke", "history": [0.5, 0.7]}
    original = _resnet.state_dict()
    assert all(torch.equal(contents["state_dict"][k], original[k]) for k in original)
    assert [p.name for p in bundle_path.parent.iterdir()] == ["insects.pt"]  # no temp file


def test_bundle_loads_in_a_fresh_python_without_coursekit(bundle_path, _resnet, tmp_path):
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.save(inputs, tmp_path / "inputs.pt")
    script = textwrap.dedent(
        """
        import sys
        import torch, torchvision
        bundle_file, inputs_file, output_file = sys.argv[1:]
        bundle = torch.load(bundle_file, weights_only=True)
        model = torchvision.models.get_model(
            bundle["arch"], weights=None, num_classes=bundle["num_classes"]
        )
        model.load_state_dict(bundle["state_dict"])
        model.eval()
        with torch.no_grad():
            torch.save(model(torch.load(inputs_file, weights_only=True)), output_file)
        assert not [name for name in sys.modules if name.startswith("coursekit")]
        """
    )
    outputs = tmp_path / "outputs.pt"
    files = [str(bundle_path), str(tmp_path / "inputs.pt"), str(outputs)]
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, *files], capture_output=True, text=True, timeout=120
    )

    assert done.returncode == 0, done.stderr
    expected = copy.deepcopy(_resnet).eval()
    with torch.no_grad():
        assert torch.allclose(torch.load(outputs, weights_only=True), expected(inputs), atol=1e-5)


def test_load_bundle_predicts_like_the_original_model(bundle_path, model, transform, images):
    bundle = load_bundle(bundle_path, device="cpu")

    assert not bundle.model.training
    assert next(bundle.model.parameters()).device == torch.device("cpu")
    assert (bundle.arch, bundle.class_names) == ("resnet18", CLASSES)
    assert repr(bundle) == "Bundle(arch='resnet18', classes=3, image_size=32)"
    assert bundle.metadata["extra"]["note"] == "smoke" and "state_dict" not in bundle.metadata
    for path in images[:2]:
        original = infer.predict_image(model, path, transform, CLASSES)
        loaded = bundle.predict(path, top_k=3)
        assert loaded.top_classes == original.top_classes
        assert loaded.top_probs == pytest.approx(original.top_probs, abs=1e-6)
    folder_preds = bundle.predict_folder(images[0].parent, top_k=2)
    assert [p.source for p in folder_preds] == [str(path) for path in images]
    assert all(len(p.top_classes) == 2 for p in folder_preds)


@pytest.mark.parametrize(
    ("build", "arch", "loaded_type"),
    [
        (lambda: models.resnet18(num_classes=3), "resnet18", torchvision.models.ResNet),
        (lambda: torchvision.models.resnet18(weights=None, num_classes=3), "coursekit.resnet18", models.ResNet),
    ],
    ids=["coursekit-model-as-torchvision", "torchvision-model-as-coursekit"],
)  # fmt: skip
def test_coursekit_and_torchvision_resnet_bundles_interchange(build, arch, loaded_type, tmp_path):
    torch.manual_seed(0)
    original = build().eval()
    path = export_bundle(tmp_path / "b.pt", original, **{**BUNDLE_ARGS, "arch": arch})

    loaded = load_bundle(path).model

    assert type(loaded) is loaded_type
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        assert torch.allclose(loaded(inputs), original(inputs), atol=1e-5)


@pytest.mark.parametrize("transform_input", [True, False])
def test_googlenet_bundles_keep_the_input_transform_and_load_without_aux_heads(
    transform_input, tmp_path
):
    # Built the way the ImageNet weights are (no auxiliary heads) or as a learner might.
    torch.manual_seed(0)
    original = torchvision.models.googlenet(
        weights=None,
        num_classes=3,
        aux_logits=False,
        transform_input=transform_input,
        init_weights=True,
    ).eval()
    path = export_bundle(tmp_path / "g.pt", original, **{**BUNDLE_ARGS, "arch": "googlenet"})

    stored = torch.load(path, weights_only=True)["arch_options"]
    assert stored == {"aux_logits": False, "transform_input": transform_input}
    loaded = load_bundle(path).model
    assert loaded.transform_input is transform_input and loaded.aux1 is None
    inputs = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs), original(inputs))


def _tampered(bundle_path: Path, tmp_path: Path, **changes) -> Path:
    contents = torch.load(bundle_path, weights_only=True)
    contents.update(changes)
    path = tmp_path / "tampered.pt"
    torch.save(contents, path)
    return path


def _whole_model(path: Path, model: nn.Module) -> None:
    torch.save(model, path)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p, m: save_checkpoint(p, model=m, epoch=1), "training checkpoint.*load_checkpoint"),
        (lambda p, m: torch.save(m.state_dict(), p), "bare state_dict.*load_state_dict"),
        (lambda p, m: torch.save(torch.ones(3), p), "holds a Tensor"),
        (lambda p, m: torch.save({"weights": [1, 2]}, p), r"dictionary with keys \['weights'\]"),
        (_whole_model, r"safe loading.*torch.save\(model\)"),
        (lambda p, m: p.write_text("<html>not found</html>"), "not a file written by torch.save"),
    ],
    ids=["checkpoint", "state_dict", "tensor", "other-dict", "whole-model", "text-file"],
)
def test_load_bundle_says_what_a_non_bundle_file_is(write, message, tmp_path):
    path = tmp_path / "my model.pt"
    write(path, nn.Linear(4, 3))

    with pytest.raises(BundleError, match=message) as caught:
        load_bundle(path)

    assert str(path) in str(caught.value)
    assert "ck.export_bundle(" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_load_bundle_names_the_first_weight_that_does_not_fit(bundle_path, tmp_path):
    five = ["a", "b", "c", "d", "e"]
    path = _tampered(bundle_path, tmp_path, num_classes=5, class_names=five)

    mismatch = r"'fc.weight' has shape \(3, 512\) in the weights but resnet18 with 5 classes expects \(5, 512\)"
    with pytest.raises(BundleError, match=mismatch) as caught:
        load_bundle(path)

    assert str(path) in str(caught.value)


def test_load_bundle_rejects_an_unknown_arch_and_a_newer_format(bundle_path, tmp_path):
    with pytest.raises(BundleError, match="unknown arch 'resnet19'.*Did you mean resnet18"):
        load_bundle(_tampered(bundle_path, tmp_path, arch="resnet19"))
    with pytest.raises(BundleError, match="version 2, but this coursekit reads version 1"):
        load_bundle(_tampered(bundle_path, tmp_path, version=2))


def test_load_bundle_names_arch_options_that_do_not_fit(bundle_path, tmp_path):
    with pytest.raises(BundleError, match=r"damaged bundle: its arch_options \{'colour': True\}"):
        load_bundle(_tampered(bundle_path, tmp_path, arch_options={"colour": True}))


def test_load_bundle_explains_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        load_bundle(tmp_path / "nothing.pt")


def test_export_bundle_checks_arch_class_count_and_extra_before_writing(model, tmp_path):
    path = tmp_path / "never.pt"
    with pytest.raises(BundleError, match=r"'fc.weight' has shape \(3, 512\).*expects \(4, 512\)"):
        export_bundle(path, model, **{**BUNDLE_ARGS, "class_names": [*CLASSES, "flies"]})
    with pytest.raises(BundleError, match="do not fit resnet50 with 3 classes"):
        export_bundle(path, model, **{**BUNDLE_ARGS, "arch": "resnet50"})
    with pytest.raises(BundleError, match="unknown arch 'ResNet-18'.*resnet18"):
        export_bundle(path, model, **{**BUNDLE_ARGS, "arch": "ResNet-18"})
    with pytest.raises(BundleError, match=r"extra\['data'\] is a PosixPath.*str\(path\)"):
        export_bundle(path, model, extra={"data": tmp_path}, **BUNDLE_ARGS)
    assert not list(tmp_path.iterdir())


def test_export_bundle_keeps_the_old_bundle_when_writing_fails(model, tmp_path, monkeypatch):
    target = tmp_path / "insects.pt"
    target.write_bytes(b"the previous bundle")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        export_bundle(target, model, **BUNDLE_ARGS)

    assert target.read_bytes() == b"the previous bundle"
    assert [p.name for p in tmp_path.iterdir()] == ["insects.pt"]
