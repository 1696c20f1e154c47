"""freeze_batchnorm_statistics and estimate_fit_seconds: the helpers of lessons 05 and 06."""

from __future__ import annotations

import copy
import time

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import coursekit as ck


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(4, 2),
    )


def test_batchnorm_statistics_stay_fixed_in_train_mode():
    model = small_net()
    ordinary = copy.deepcopy(model)
    assert ck.freeze_batchnorm_statistics(model) == 1
    images = torch.randn(8, 3, 8, 8) * 3 + 1
    before = model[1].running_mean.clone()

    model.train()
    ordinary.train()
    model(images)
    ordinary(images)

    assert torch.equal(model[1].running_mean, before)
    assert not torch.equal(ordinary[1].running_mean, before)  # the usual behaviour


def test_frozen_statistics_give_the_eval_mode_output_and_affine_still_learns():
    model = small_net()
    reference = copy.deepcopy(model).eval()
    ck.freeze_batchnorm_statistics(model)
    images = torch.randn(8, 3, 8, 8)

    model.train()
    outputs = model(images)
    torch.testing.assert_close(outputs, reference(images))
    outputs.sum().backward()
    assert model[1].weight.grad is not None and model[1].bias.grad is not None


def test_freezing_batchnorm_twice_adds_no_second_hook_and_counts_torchvision_layers():
    model = torchvision.models.resnet18(weights=None)
    batchnorms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert ck.freeze_batchnorm_statistics(model) == len(batchnorms) == 20
    ck.freeze_batchnorm_statistics(model)
    assert all(len(layer._forward_pre_hooks) == 1 for layer in batchnorms)


def feature_loaders(n_train: int = 40, n_valid: int = 16, batch_size: int = 8):
    torch.manual_seed(1)
    train = TensorDataset(torch.randn(n_train, 5), torch.randint(0, 2, (n_train,)))
    valid = TensorDataset(torch.randn(n_valid, 5), torch.randint(0, 2, (n_valid,)))
    return {
        "train": DataLoader(train, batch_size=batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(3)),
        "valid": DataLoader(valid, batch_size=batch_size),
    }


def test_estimate_changes_neither_the_model_nor_the_batch_order():
    model = nn.Linear(5, 2)
    weights = copy.deepcopy(model.state_dict())
    loaders = feature_loaders()
    untouched = feature_loaders()

    seconds = ck.estimate_fit_seconds(model, loaders, nn.CrossEntropyLoss(), epochs=3,
                                      device="cpu")

    assert seconds > 0
    for name, value in model.state_dict().items():
        assert torch.equal(value, weights[name])
    first, expected = next(iter(loaders["train"])), next(iter(untouched["train"]))
    assert torch.equal(first[1], expected[1])


def test_estimate_scales_timed_batches_to_the_epochs(monkeypatch):
    clock = iter(range(1000))
    monkeypatch.setattr("coursekit.train.time.perf_counter", lambda: float(next(clock)))
    loaders = feature_loaders()  # 5 train batches, 2 valid batches; every step "takes" 1 s

    seconds = ck.estimate_fit_seconds(nn.Linear(5, 2), loaders, nn.CrossEntropyLoss(),
                                      epochs=4, batches=1, device="cpu")

    assert seconds == 4 * (5 + 2)


class SlowToLoad(TensorDataset):
    """Features that take ``seconds`` each to load, like photos that must be decoded."""

    def __init__(self, n: int, seconds: float) -> None:
        super().__init__(torch.randn(n, 5), torch.randint(0, 2, (n,)))
        self.seconds = seconds

    def __getitem__(self, index):
        time.sleep(self.seconds)
        return super().__getitem__(index)


def test_estimate_counts_the_time_spent_loading_batches():
    per_item, batch_size = 0.02, 4
    loaders = {
        "train": DataLoader(SlowToLoad(16, per_item), batch_size=batch_size),
        "valid": DataLoader(SlowToLoad(8, per_item), batch_size=batch_size),
    }
    # 4 train and 2 valid batches an epoch, each at least batch_size * per_item to load.
    loading_alone = 2 * (4 + 2) * batch_size * per_item

    seconds = ck.estimate_fit_seconds(nn.Linear(5, 2), loaders, nn.CrossEntropyLoss(), epochs=2,
                                      batches=1, device="cpu")

    assert seconds >= loading_alone


def test_estimate_needs_two_batches():
    loaders = feature_loaders(n_train=8, n_valid=8)
    with pytest.raises(ValueError, match="at least two batches"):
        ck.estimate_fit_seconds(nn.Linear(5, 2), loaders, nn.CrossEntropyLoss(), epochs=1)
