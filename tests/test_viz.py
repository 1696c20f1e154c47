"""Tests for coursekit.viz: the pictures show the right data, and models are left as found."""

from __future__ import annotations

import random
from types import SimpleNamespace

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from PIL import Image
from torch import nn
from torchvision import transforms

from coursekit import viz
from coursekit.config import IMAGENET_MEAN, IMAGENET_STD

matplotlib.use("Agg")  # no display in tests; viz itself never picks a backend


@pytest.fixture
def figures():
    """Collects figures made by a test and closes them afterwards."""
    made: list[Figure] = []
    yield made.append
    for fig in made:
        plt.close(fig)


def title_colors(fig: Figure) -> list[tuple[float, ...]]:
    return [to_rgba(ax.title.get_color()) for ax in fig.axes]


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


# ----------------------------------------------------------------------------- im_convert


def test_im_convert_undoes_normalize_for_chw_and_nchw():
    torch.manual_seed(0)
    batch = torch.rand(2, 3, 5, 7)
    normalised = transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)(batch)

    np.testing.assert_allclose(viz.im_convert(normalised[0]), batch[0].permute(1, 2, 0), atol=1e-6)
    np.testing.assert_allclose(viz.im_convert(normalised), batch.permute(0, 2, 3, 1), atol=1e-6)


def test_im_convert_without_stats_only_reorders_and_clips():
    image = torch.tensor([[[-0.5, 0.25], [0.75, 1.5]]]).repeat(3, 1, 1)
    out = viz.im_convert(image, mean=None, std=None)
    assert out.shape == (2, 2, 3)
    np.testing.assert_allclose(out[..., 0], [[0.0, 0.25], [0.75, 1.0]])


def test_im_convert_gray_becomes_2d_and_clips():
    gray = torch.full((1, 4, 6), 3.0, requires_grad=True)  # detaching is im_convert's job
    out = viz.im_convert(gray, mean=[0.5], std=[0.5])
    assert out.shape == (4, 6)
    assert out.max() == 1.0
    assert viz.im_convert(torch.zeros(2, 1, 4, 6), None, None).shape == (2, 4, 6)


@pytest.mark.parametrize(
    ("tensor", "fragment"),
    [
        (torch.zeros(8, 8, 3), "permute"),
        (torch.zeros(8, 8), "CHW or NCHW"),
        (torch.zeros(3, 8, 8, dtype=torch.uint8), "float"),
    ],
)
def test_im_convert_rejects_other_shapes_with_a_fix(tensor, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        viz.im_convert(tensor)


def test_im_convert_rejects_stats_of_the_wrong_length():
    with pytest.raises(ValueError, match="None if the image was not normalized"):
        viz.im_convert(torch.zeros(1, 4, 4))  # ImageNet stats have 3 values, the image 1 channel


# ----------------------------------------------------------------------------- image grids


def test_show_batch_titles_are_class_names(figures):
    images = torch.rand(5, 3, 8, 8)
    fig = viz.show_batch(
        images,
        torch.tensor([0, 2, 1, 2, 0]),
        ["ant", "bee", "wasp"],
        mean=None,
        std=None,
        ncols=2,
        title="batch",
    )
    figures(fig)
    assert isinstance(fig, Figure)
    assert titles(fig) == ["ant", "wasp", "bee", "wasp", "ant"]
    assert fig.get_suptitle() == "batch"
    np.testing.assert_allclose(fig.axes[3].images[0].get_array(), images[3].permute(1, 2, 0))


def test_show_batch_without_names_uses_indices_and_checks_lengths(figures):
    fig = viz.show_batch(torch.rand(2, 1, 8, 8), [3, 1], mean=None, std=None)
    figures(fig)
    assert titles(fig) == ["3", "1"]
    assert fig.axes[0].images[0].get_cmap().name == "gray"
    with pytest.raises(ValueError, match="1 labels for 2 images"):
        viz.show_batch(torch.rand(2, 3, 8, 8), [0])
    with pytest.raises(ValueError, match=r"\.classes"):
        viz.show_batch(torch.rand(1, 3, 8, 8), [5], ["a", "b"])


def test_show_augmentations_is_seeded_and_leaves_global_rng_alone(figures):
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    pipeline = transforms.Compose(
        [
            transforms.RandomResizedCrop(12),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)

    first = viz.show_augmentations(image, pipeline, n=3, ncols=2, seed=7)
    again = viz.show_augmentations(image, pipeline, n=3, ncols=2, seed=7)
    figures(first), figures(again)

    assert torch.equal(torch.rand(1), expected_next)
    assert titles(first) == ["original", "augmented 1", "augmented 2", "augmented 3"]
    np.testing.assert_allclose(first.axes[0].images[0].get_array(), pixels / 255.0, atol=1e-6)
    for a, b in zip(first.axes[1:], again.axes[1:], strict=True):
        np.testing.assert_array_equal(a.images[0].get_array(), b.images[0].get_array())
    torch.manual_seed(7)
    np.testing.assert_allclose(
        first.axes[1].images[0].get_array(), viz.im_convert(pipeline(image)), atol=1e-6
    )


def test_show_augmentations_flip_matches_the_flipped_image(figures):
    pixels = np.random.default_rng(1).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    flip = transforms.Compose([transforms.RandomHorizontalFlip(p=1.0), transforms.ToTensor()])
    fig = viz.show_augmentations(Image.fromarray(pixels), flip, n=1, mean=None, std=None)
    figures(fig)
    np.testing.assert_allclose(
        fig.axes[1].images[0].get_array(), pixels[:, ::-1] / 255.0, atol=1e-6
    )


@pytest.mark.parametrize("n", range(1, 12))
def test_show_augmentations_fills_its_rows_evenly(figures, n):
    fig = viz.show_augmentations(Image.new("RGB", (8, 8)), transforms.ToTensor(), n=n, ncols=4)
    figures(fig)
    nrows, ncols, _, _ = fig.axes[0].get_subplotspec().get_geometry()
    panels = n + 1
    assert len(fig.axes) == panels
    assert nrows == -(-panels // 4) and ncols <= 4  # as few rows as fit, at most 4 wide
    assert nrows * ncols - panels < nrows  # no row short by more than one panel (5 = 3 + 2)


def test_show_augmentations_repeats_transforms_that_use_python_and_numpy_random(figures):
    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    flips = [transforms.RandomHorizontalFlip(p=1.0), transforms.RandomVerticalFlip(p=1.0)]
    pipeline = transforms.Compose(
        [
            transforms.RandomChoice(flips),  # draws with Python's random module
            transforms.Lambda(lambda im: im.rotate(90 * np.random.randint(4))),  # NumPy's
            transforms.ToTensor(),
        ]
    )
    random.seed(5)
    np.random.seed(5)
    expected = random.random(), np.random.rand()
    random.seed(5)
    np.random.seed(5)

    first = viz.show_augmentations(image, pipeline, n=6, mean=None, std=None, seed=3)
    again = viz.show_augmentations(image, pipeline, n=6, mean=None, std=None, seed=3)
    figures(first), figures(again)

    assert (random.random(), np.random.rand()) == expected  # the learner's streams untouched
    drawn = [ax.images[0].get_array() for ax in first.axes[1:]]
    for a, b in zip(drawn, (ax.images[0].get_array() for ax in again.axes[1:]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(drawn[0], other) for other in drawn[1:])  # they do vary


def test_show_augmentations_needs_a_tensor_transform():
    with pytest.raises(TypeError, match="ToTensor"):
        viz.show_augmentations(Image.new("RGB", (8, 8)), transforms.RandomHorizontalFlip(), n=1)


# ----------------------------------------------------------------------------- predictions


class ChannelVoter(nn.Module):
    """Predicts the brightest channel in eval mode; in train mode dropout(p=1) zeroes the
    evidence so the bias alone wins and every prediction is class 2."""

    def __init__(self):
        super().__init__()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.dropout = nn.Dropout(p=1.0)
        self.head = nn.Linear(3, 3)
        with torch.no_grad():
            self.head.weight.copy_(10 * torch.eye(3))
            self.head.bias.copy_(torch.tensor([0.0, 0.0, 1.0]))

    def forward(self, x):
        return self.head(self.dropout(self.pool(x)))


def one_hot_images(channels: list[int]) -> torch.Tensor:
    images = torch.zeros(len(channels), 3, 6, 6)
    for i, c in enumerate(channels):
        images[i, c] = 1.0
    return images


def test_show_predictions_uses_eval_mode_and_colours_titles(figures):
    model = ChannelVoter().train()
    model.pool.eval()  # a submodule deliberately in eval mode must stay so
    images = one_hot_images([0, 1, 2, 0])
    labels = torch.tensor([0, 2, 2, 1])
    names = ["red", "green", "blue"]
    with torch.no_grad():
        assert model(images).argmax(1).tolist() == [2, 2, 2, 2]  # train mode would say this

    fig = viz.show_predictions(model, images, labels, names, mean=None, std=None)
    figures(fig)

    assert titles(fig) == ["red (red)", "green (blue)", "blue (blue)", "red (green)"]
    right, wrong = to_rgba(viz.CORRECT_COLOR), to_rgba(viz.WRONG_COLOR)
    assert right != wrong
    assert title_colors(fig) == [right, wrong, right, wrong]
    assert model.training and model.head.training and not model.pool.training


def test_show_predictions_leaves_an_eval_model_in_eval_mode(figures):
    model = ChannelVoter().eval()
    figures(
        viz.show_predictions(model, one_hot_images([1]), [1], ["r", "g", "b"], None, None, None)
    )
    assert not any(m.training for m in model.modules())


def test_show_misclassified_shows_only_wrong_ones(figures):
    images = torch.rand(5, 3, 6, 6)
    fig = viz.show_misclassified(
        images,
        [0, 1, 2, 1, 0],
        torch.tensor([0, 2, 2, 0, 1]),
        ["a", "b", "c"],
        mean=None,
        std=None,
        max_images=2,
    )
    figures(fig)
    assert titles(fig) == ["c (b)", "a (b)"]
    assert set(title_colors(fig)) == {to_rgba(viz.WRONG_COLOR)}
    assert fig.get_suptitle() == "Misclassified: 3 of 5 (showing 2)"
    np.testing.assert_allclose(fig.axes[1].images[0].get_array(), images[3].permute(1, 2, 0))


def test_show_misclassified_takes_a_title_for_a_selection_of_mistakes(figures):
    title = "2 most confident of 7 mistakes"
    fig = viz.show_misclassified(
        torch.rand(2, 3, 6, 6), [0, 1], [1, 0], ["a", "b"], mean=None, std=None, title=title
    )
    figures(fig)
    assert fig.get_suptitle() == title
    assert titles(fig) == ["b (a)", "a (b)"]


def test_show_misclassified_says_so_when_all_are_right(figures):
    fig = viz.show_misclassified(torch.rand(2, 3, 6, 6), [0, 1], [0, 1], ["a", "b"])
    figures(fig)
    assert len(fig.axes) == 1
    assert "No misclassified images" in fig.axes[0].texts[0].get_text()


# ----------------------------------------------------------------------------- histories


def history_dict(lr: list[float]) -> dict[str, list[float]]:
    return {
        "train_loss": [1.0, 0.7, 0.5, 0.4],
        "valid_loss": [1.1, 0.8, 0.9, 1.0],
        "train_acc": [0.4, 0.6, 0.7, 0.8],
        "valid_acc": [0.35, 0.62, 0.61, 0.62],
        "lr": lr,
    }


def best_epoch_marks(fig: Figure) -> set[float]:
    return {
        line.get_xdata()[0]
        for ax in fig.axes
        for line in ax.get_lines()
        if line.get_label().startswith("best epoch")
    }


def test_plot_history_panels_epochs_and_best_mark(figures):
    fig = viz.plot_history(history_dict([0.1] * 4))
    figures(fig)
    assert titles(fig) == ["Loss", "Accuracy"]
    loss_train, loss_valid = fig.axes[0].get_lines()[:2]
    assert list(loss_train.get_xdata()) == [1, 2, 3, 4]
    assert list(loss_valid.get_ydata()) == [1.1, 0.8, 0.9, 1.0]
    assert best_epoch_marks(fig) == {2}  # first epoch with the highest valid accuracy


def test_plot_history_adds_lr_panel_when_lr_varies_and_reads_attributes(figures):
    history = SimpleNamespace(**history_dict([0.1, 0.1, 0.01, 0.01]))
    fig = viz.plot_history(history)
    figures(fig)
    assert titles(fig) == ["Loss", "Accuracy", "Learning rate"]
    assert fig.axes[2].get_yscale() == "log"
    assert list(fig.axes[2].get_lines()[0].get_ydata()) == [0.1, 0.1, 0.01, 0.01]


def test_plot_history_without_validation_has_no_best_mark(figures):
    fig = viz.plot_history({"train_loss": [1.0, 0.5], "train_acc": [0.5, 0.7]})
    figures(fig)
    assert len(fig.axes[0].get_lines()) == 1
    assert best_epoch_marks(fig) == set()
    with pytest.raises(ValueError, match="fit"):
        viz.plot_history({"train_loss": []})


# ----------------------------------------------------------------------------- matrices and counts


def test_plot_confusion_matrix_annotates_counts(figures):
    cm = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 4]])
    fig = viz.plot_confusion_matrix(cm, ["a", "b", "c"])
    figures(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in cm.flatten().tolist()]
    np.testing.assert_array_equal(ax.images[0].get_array(), cm.numpy())
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted", "true")


def test_plot_confusion_matrix_normalises_rows(figures):
    cm = np.array([[3, 1], [0, 0]])  # an empty row must not divide by zero
    fig = viz.plot_confusion_matrix(cm, ["a", "b"], normalize=True)
    figures(fig)
    assert [t.get_text() for t in fig.axes[0].texts] == ["0.75", "0.25", "0.00", "0.00"]


def test_plot_confusion_matrix_skips_numbers_for_many_classes_and_checks_shape(figures):
    many = viz.MAX_ANNOTATED_CLASSES + 1
    fig = viz.plot_confusion_matrix(np.eye(many), [str(i) for i in range(many)], max_classes=None)
    figures(fig)
    assert len(fig.axes[0].get_xticklabels()) == many
    assert len(fig.axes[0].texts) == 0
    with pytest.raises(ValueError, match="3 x 3"):
        viz.plot_confusion_matrix(np.eye(2), ["a", "b", "c"])
    with pytest.raises(ValueError, match="max_classes=1"):
        viz.plot_confusion_matrix(np.eye(2), ["a", "b"], max_classes=1)


def many_class_matrix(classes: int = 102, per_class: int = 6) -> np.ndarray:
    """A flowers-sized matrix: mostly right, with three known mistakes of different sizes."""
    cm = np.eye(classes) * per_class
    for true, predicted, count in [(40, 7, 3), (7, 40, 1), (90, 12, 2), (5, 60, 1)]:
        cm[true, true] -= count
        cm[true, predicted] += count
    return cm


def test_plot_confusion_matrix_of_many_classes_shows_the_most_confused_at_notebook_width(figures):
    cm = many_class_matrix()
    names = [f"flower {i}" for i in range(len(cm))]
    fig = viz.plot_confusion_matrix(cm, names)
    figures(fig)
    ax = fig.axes[0]
    # The worst pair first, then the next mistakes, each class once: 6 classes, not 102.
    chosen = [40, 7, 90, 12, 5, 60]
    assert [t.get_text() for t in ax.get_xticklabels()] == [names[i] for i in chosen]
    assert [t.get_text() for t in ax.get_yticklabels()] == [names[i] for i in chosen]
    np.testing.assert_array_equal(ax.images[0].get_array(), cm[np.ix_(chosen, chosen)])
    # Numbers on the mistakes only, where they sit in the part.
    numbers = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert numbers == {((1, 0), "3"), ((0, 1), "1"), ((3, 2), "2"), ((5, 4), "1")}
    assert fig.get_size_inches()[0] == pytest.approx(viz.NOTEBOOK_INCHES)
    assert "6 most confused of 102" in ax.get_title()
    assert "max_classes=None" in ax.get_title()  # the full matrix is one call away
    full = viz.plot_confusion_matrix(cm, names, max_classes=None)
    figures(full)
    assert len(full.axes[0].get_xticklabels()) == len(cm)


def test_plot_confusion_matrix_keeps_at_most_max_classes_and_fractions_of_whole_rows(figures):
    cm = many_class_matrix()
    cm[30, 30] -= 4  # 4 of 6 images of class 30 taken for 31: the worst mistake of all
    cm[30, 31] += 4
    fig = viz.plot_confusion_matrix(cm, [str(i) for i in range(len(cm))], True, max_classes=4)
    figures(fig)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["30", "31", "40", "7"]
    # Each row is divided by the total of the WHOLE class, not of the part drawn.
    assert ax.images[0].get_array()[0, 1] == pytest.approx(4 / 6)
    assert {t.get_text() for t in ax.texts} == {"67%", "50%", "17%"}


def test_plot_confusion_matrix_of_many_classes_without_mistakes_shows_the_first(figures):
    fig = viz.plot_confusion_matrix(np.eye(50), [str(i) for i in range(50)])
    figures(fig)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == [str(i) for i in range(viz.MAX_MATRIX_CLASSES)]
    assert len(fig.axes[0].texts) == 0


def test_plot_class_counts_vertical_then_horizontal(figures):
    few = {"ants": 12, "bees": 7}
    fig = viz.plot_class_counts(few, title="train")
    figures(fig)
    ax = fig.axes[0]
    assert [bar.get_height() for bar in ax.patches] == [12, 7]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ants", "bees"]
    assert ax.get_title() == "train"

    many = {str(i): i + 1 for i in range(viz.MAX_VERTICAL_BARS + 2)}
    fig = viz.plot_class_counts(many)
    figures(fig)
    assert [bar.get_width() for bar in fig.axes[0].patches] == list(many.values())
    with pytest.raises(ValueError, match="class_counts"):
        viz.plot_class_counts({})


def tick_label_boxes(fig: Figure, labels) -> list:
    fig.canvas.draw()
    return [label.get_window_extent(fig.canvas.get_renderer()) for label in labels]


@pytest.mark.parametrize(
    "names",
    [
        ["horizontal stripes", "triangle", "vertical stripes"],
        ["circle", "square", "triangle", "star", "cross", "ring"],
        ["ants", "bees"],
        [f"a rather long class name {i}" for i in range(8)],
        [str(i) for i in range(viz.MAX_VERTICAL_BARS)],
    ],
)
def test_plot_class_counts_names_never_overlap(figures, names):
    fig = viz.plot_class_counts(dict.fromkeys(names, 3))
    figures(fig)
    ax = fig.axes[0]
    horizontal = ax.yaxis_inverted()
    labels = ax.get_yticklabels() if horizontal else ax.get_xticklabels()
    assert [label.get_text() for label in labels] == names
    boxes = tick_label_boxes(fig, labels)
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


@pytest.mark.parametrize("classes", [2, viz.MAX_VERTICAL_BARS + 2])
def test_plot_class_counts_ticks_are_whole_images(figures, classes):
    fig = viz.plot_class_counts({f"c{i}": 1 + i % 2 for i in range(classes)})  # counts 1 and 2
    figures(fig)
    ax = fig.axes[0]
    fig.canvas.draw()
    ticks = ax.get_xticks() if ax.yaxis_inverted() else ax.get_yticks()
    assert len(ticks) >= 3 and all(float(tick).is_integer() for tick in ticks)


# ----------------------------------------------------------------------------- Grad-CAM


class TinyCamNet(nn.Module):
    """conv -> ReLU -> conv (the Grad-CAM target) -> global average pool -> linear."""

    def __init__(self, classes: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True))
        self.target = nn.Conv2d(4, 5, 3, stride=2, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(5, classes)

    def forward(self, x):
        return self.fc(self.pool(self.target(self.stem(x))).flatten(1))


def hand_grad_cam(model: TinyCamNet, image: torch.Tensor, class_idx: int) -> torch.Tensor:
    """Grad-CAM worked out by hand: for pooling followed by a linear layer the gradient of
    score c with respect to channel k is fc.weight[c, k] / (h * w) at every position."""
    with torch.no_grad():
        activation = model.target(model.stem(image[None]))  # 1 x K x h x w
        h, w = activation.shape[-2:]
        weights = model.fc.weight[class_idx] / (h * w)
        cam = F.relu((weights[None, :, None, None] * activation).sum(dim=1, keepdim=True))
        cam = F.interpolate(cam, size=image.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    return (cam - cam.min()) / (cam.max() - cam.min())


@pytest.fixture
def cam_setup():
    torch.manual_seed(0)
    return TinyCamNet(), torch.randn(3, 16, 16)


def test_grad_cam_matches_the_hand_computation_for_every_class(cam_setup):
    model, image = cam_setup
    for class_idx in range(3):
        heatmap = viz.grad_cam(model, image, model.target, class_idx=class_idx)
        assert heatmap.shape == (16, 16)
        assert heatmap.min() == 0 and heatmap.max() == pytest.approx(1.0)
        torch.testing.assert_close(heatmap, hand_grad_cam(model, image, class_idx))


def test_grad_cam_defaults_to_the_predicted_class(cam_setup):
    model, image = cam_setup
    predicted = int(model(image[None]).argmax())
    torch.testing.assert_close(
        viz.grad_cam(model, image[None], model.target), hand_grad_cam(model, image, predicted)
    )


def test_grad_cam_frozen_no_grad_inplace_and_cleans_up(cam_setup):
    model, image = cam_setup
    inplace = nn.Sequential(
        model.stem,
        model.target,
        nn.ReLU(inplace=True),
        model.pool,
        nn.Flatten(),
        model.fc,
        nn.Dropout(0.5),
    )
    inplace.train()
    for p in inplace.parameters():
        p.requires_grad_(False)

    with torch.no_grad():  # e.g. called from an inference cell
        first = viz.grad_cam(inplace, image, model.target, class_idx=1)
    second = viz.grad_cam(inplace, image, model.target, class_idx=1)

    torch.testing.assert_close(first, second)  # eval mode: dropout is off, so it repeats
    assert first.requires_grad is False and first.device.type == "cpu"
    assert 0 <= first.min() and first.max() <= 1
    assert len(model.target._forward_hooks) == 0 and len(model.target._backward_hooks) == 0
    assert inplace.training and all(p.grad is None for p in inplace.parameters())


def test_grad_cam_works_inside_inference_mode(cam_setup):
    model, image = cam_setup
    expected = hand_grad_cam(model, image, 2)
    with torch.inference_mode():
        made_here = image.clone()  # an inference tensor, which autograd cannot use as is
        from_inside = viz.grad_cam(model, made_here, model.target, class_idx=2)
        torch.testing.assert_close(from_inside, expected)
        torch.testing.assert_close(viz.grad_cam(model, image, model.target, 2), expected)
    torch.testing.assert_close(viz.grad_cam(model, made_here, model.target, 2), expected)
    assert all(p.grad is None for p in model.parameters())


def test_grad_cam_errors_name_the_fix(cam_setup):
    model, image = cam_setup
    with pytest.raises(ValueError, match="out of range"):
        viz.grad_cam(model, image, model.target, class_idx=3)
    with pytest.raises(ValueError, match="never called"):
        viz.grad_cam(model, image, nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match="N x C x H x W"):
        viz.grad_cam(model, image, model.fc)
    assert len(model.fc._forward_hooks) == 0
    with pytest.raises(ValueError, match=r"images\[i\]"):
        viz.grad_cam(model, image.expand(2, 3, 16, 16), model.target)


def test_show_grad_cam_overlays_the_heatmap(cam_setup, figures):
    model, image = cam_setup
    heatmap = viz.grad_cam(model, image, model.target)
    fig = viz.show_grad_cam(image, heatmap, mean=None, std=None, title="why", alpha=0.3)
    figures(fig)
    left, right = fig.axes
    assert titles(fig) == ["image", "Grad-CAM"]
    assert len(left.images) == 1 and len(right.images) == 2
    overlay = right.images[1]
    np.testing.assert_allclose(overlay.get_array(), heatmap.numpy())
    assert overlay.get_alpha() == 0.3
    with pytest.raises(ValueError, match="same image"):
        viz.show_grad_cam(image, heatmap[:8], mean=None, std=None)


def test_history_of_one_epoch_has_whole_epoch_ticks():
    fig = viz.plot_history(
        {"train_loss": [0.7], "train_acc": [0.5], "valid_loss": [0.8], "valid_acc": [0.4]}
    )
    ticks = [t for t in fig.axes[0].get_xticks() if 0.5 <= t <= 1.5]
    assert ticks == [1.0]
    plt.close(fig)


# ----------------------------------------------------------------------------- fit callbacks


def two_epochs() -> SimpleNamespace:
    """What a History holds after two epochs with two parameter groups."""
    return SimpleNamespace(
        train_loss=[1.0, 0.5],
        train_acc=[0.4, 0.7],
        valid_loss=[1.2, 0.8],
        valid_acc=[0.3, 0.6],
        lr=[0.01, 0.001],
        lrs=[[0.01, 0.1], [0.001, 0.01]],
    )


def test_live_plot_does_nothing_outside_a_notebook(monkeypatch):
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: shown.append(a))
    viz.LivePlot()(two_epochs())
    assert shown == []


def test_live_plot_draws_once_then_updates_and_leaves_no_figure_open(monkeypatch):
    import IPython
    import IPython.display

    shown, updates = [], []
    handle = SimpleNamespace(update=updates.append)

    def fake_display(obj, display_id=False):
        shown.append(obj)
        return handle

    monkeypatch.setattr(IPython, "get_ipython", lambda: SimpleNamespace(kernel=object()))
    monkeypatch.setattr(IPython.display, "display", fake_display)
    open_before = plt.get_fignums()
    plot = viz.LivePlot()
    for _ in range(3):
        plot(two_epochs())
    assert len(shown) == 1 and len(updates) == 2
    assert all(image.data.startswith(b"\x89PNG") for image in shown + updates)
    assert plt.get_fignums() == open_before  # else the notebook shows them again


def test_tensorboard_logger_writes_each_curve_at_the_epoch_number(tmp_path):
    class Recorder:
        def __init__(self):
            self.scalars, self.flushes = [], 0

        def add_scalar(self, tag, value, step):
            self.scalars.append((tag, value, step))

        def flush(self):
            self.flushes += 1

    writer = Recorder()
    viz.TensorBoardLogger(tmp_path, writer=writer)(two_epochs())
    assert sorted(writer.scalars) == [
        ("accuracy/train", 0.7, 2),
        ("accuracy/valid", 0.6, 2),
        ("loss/train", 0.5, 2),
        ("loss/valid", 0.8, 2),
        ("lr/group0", 0.001, 2),
        ("lr/group1", 0.01, 2),
    ]
    assert writer.flushes == 1


def test_tensorboard_logger_without_tensorboard_says_how_to_install_it(monkeypatch, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install tensorboard"):
        viz.TensorBoardLogger(tmp_path / "tb")
