"""Lesson 04's exercises: the reference answers pass, typical mistakes fail with a reason."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import torch

from coursekit.exercises import ____, assert_fails, assert_not_attempted, assert_passes
from coursekit.exercises import lesson04 as ex

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_training_loop.ipynb"

# ----------------------------------------------------------------------------- q1


def epoch_accuracy(batches):
    return sum(correct for correct, _ in batches) / sum(size for _, size in batches)


def test_q1_reference_passes():
    assert_passes(ex.q1, epoch_accuracy)
    assert_passes(ex.q1, lambda batches: torch.tensor(epoch_accuracy(batches)))


def test_q1_typical_mistakes():
    assert_fails(
        ex.q1,
        lambda batches: sum(c / n for c, n in batches) / len(batches),
        message_contains="averaged the batch accuracies",
    )
    assert_fails(ex.q1, lambda batches: sum(c for c, _ in batches), message_contains="divide")
    assert_fails(
        ex.q1,
        lambda batches: 100 * epoch_accuracy(batches),
        message_contains="percentage",
    )
    assert_fails(
        ex.q1,
        lambda batches: sum(c for c, _ in batches) / (batches[0][1] * len(batches)),
        message_contains="as big as the first one",
    )
    assert_fails(ex.q1, lambda batches: "high", message_contains="one number")
    assert_fails(ex.q1, epoch_accuracy([(1, 2)]), message_contains="function itself")


def test_q1_not_attempted():
    def blank(batches):
        return ____

    assert_not_attempted(ex.q1, blank)
    assert_not_attempted(ex.q1, ____)


# ----------------------------------------------------------------------------- q2


def evaluate_epoch(model, loader, criterion):
    model.eval()
    total_loss, total_correct, total_seen = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            outputs = model(images)
            loss = criterion(outputs, labels)
            total_loss += loss.item() * labels.size(0)
            total_correct += (outputs.argmax(dim=1) == labels).sum().item()
            total_seen += labels.size(0)
    return total_loss / total_seen, total_correct / total_seen


@torch.inference_mode()
def evaluate_in_inference_mode(model, loader, criterion):
    model.eval()
    loss_sum, correct, seen = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
    for images, labels in loader:
        outputs = model(images)
        loss_sum += criterion(outputs, labels) * len(labels)
        correct += (outputs.argmax(1) == labels).sum()
        seen += len(labels)
    return loss_sum / seen, correct / seen


def tutorial_style(model, loader, criterion):
    """Validation as many tutorials write it: gradients on, mean of batch means."""
    model.eval()
    losses, accuracies = [], []
    for images, labels in loader:
        outputs = model(images)
        losses.append(criterion(outputs, labels).item())
        accuracies.append((outputs.argmax(1) == labels).float().mean().item())
    return sum(losses) / len(losses), sum(accuracies) / len(accuracies)


def batch_means_without_grad(model, loader, criterion):
    model.eval()
    losses, accuracies = [], []
    with torch.no_grad():
        for images, labels in loader:
            outputs = model(images)
            losses.append(criterion(outputs, labels).item())
            accuracies.append((outputs.argmax(1) == labels).float().mean().item())
    return sum(losses) / len(losses), sum(accuracies) / len(accuracies)


def weighted_loss_batch_mean_accuracy(model, loader, criterion):
    model.eval()
    total_loss, seen, accuracies = 0.0, 0, []
    with torch.no_grad():
        for images, labels in loader:
            outputs = model(images)
            total_loss += criterion(outputs, labels).item() * len(labels)
            seen += len(labels)
            accuracies.append((outputs.argmax(1) == labels).float().mean().item())
    return total_loss / seen, sum(accuracies) / len(accuracies)


def forgets_eval(model, loader, criterion):
    total_loss, total_correct, total_seen = 0.0, 0, 0
    with torch.no_grad():
        for images, labels in loader:
            outputs = model(images)
            total_loss += criterion(outputs, labels).item() * labels.size(0)
            total_correct += (outputs.argmax(dim=1) == labels).sum().item()
            total_seen += labels.size(0)
    return total_loss / total_seen, total_correct / total_seen


def trains_while_validating(model, loader, criterion):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for images, labels in loader:
        optimizer.zero_grad()
        criterion(model(images), labels).backward()
        optimizer.step()
    return evaluate_epoch(model, loader, criterion)


def template_half_done(model, loader, criterion):
    ____()  # 1.
    total_loss, total_correct, total_seen = 0.0, 0, 0
    with ____():  # 2.
        for images, labels in loader:
            outputs = model(images)
            loss = criterion(outputs, labels)
            total_loss += loss.item() * labels.size(0)
            total_correct += (outputs.argmax(dim=1) == labels).sum().item()
            total_seen += labels.size(0)
    return total_loss / total_seen, total_correct / total_seen


def template(model, loader, criterion):
    ____()  # 1.
    total_loss, total_correct, total_seen = 0.0, 0, 0
    with ____():  # 2.
        for images, labels in loader:
            outputs = model(images)
            loss = criterion(outputs, labels)
            total_loss += loss.item() * ____
            total_correct += ____
            total_seen += ____
    return total_loss / total_seen, total_correct / total_seen


def only_the_sums_filled(model, loader, criterion):
    """Blanks 1 and 2 left as they are: still "not attempted", not a crash."""
    ____()  # 1.
    total_loss, total_correct, total_seen = 0.0, 0, 0
    for images, labels in loader:
        outputs = model(images)
        total_loss += criterion(outputs, labels).item() * labels.size(0)
        total_correct += (outputs.argmax(dim=1) == labels).sum().item()
        total_seen += labels.size(0)
    return total_loss / total_seen, total_correct / total_seen


def test_q2_reference_passes():
    assert_passes(ex.q2, evaluate_epoch)
    assert_passes(ex.q2, evaluate_in_inference_mode)


def test_q2_typical_mistakes():
    assert_fails(ex.q2, tutorial_style, message_contains="torch.no_grad()")
    assert_fails(ex.q2, batch_means_without_grad, message_contains="mean of batch means")
    assert_fails(ex.q2, weighted_loss_batch_mean_accuracy, message_contains="batch accuracies")
    assert_fails(ex.q2, forgets_eval, message_contains="model.eval()")
    assert_fails(ex.q2, trains_while_validating, message_contains="changed the model's weights")
    assert_fails(ex.q2, lambda model, loader, criterion: 0.5, message_contains="two numbers")


def test_q2_not_attempted():
    assert_not_attempted(ex.q2, template)
    assert_not_attempted(ex.q2, template_half_done)
    assert_not_attempted(ex.q2, only_the_sums_filled)
    assert_not_attempted(ex.q2, ____)


# ----------------------------------------------------------------------------- q3


def step_after_epoch(optimizer, scheduler, epochs, batches_per_epoch):
    for _ in range(epochs):
        for _ in range(batches_per_epoch):
            optimizer.step()
        scheduler.step()


def step_before_epoch(optimizer, scheduler, epochs, batches_per_epoch):
    for _ in range(epochs):
        scheduler.step()
        for _ in range(batches_per_epoch):
            optimizer.step()


def step_every_batch(optimizer, scheduler, epochs, batches_per_epoch):
    for _ in range(epochs):
        for _ in range(batches_per_epoch):
            optimizer.step()
            scheduler.step()


def never_steps(optimizer, scheduler, epochs, batches_per_epoch):
    for _ in range(epochs):
        for _ in range(batches_per_epoch):
            optimizer.step()


def no_optimizer(optimizer, scheduler, epochs, batches_per_epoch):
    for _ in range(epochs):
        scheduler.step()


def schedule_template(optimizer, scheduler, epochs, batches_per_epoch):
    for _ in range(epochs):
        ____()  # A
        for _ in range(batches_per_epoch):
            optimizer.step()
            ____()  # B
        ____()  # C


def test_q3_reference_passes():
    assert_passes(ex.q3, step_after_epoch)


def test_q3_typical_mistakes():
    assert_fails(ex.q3, step_before_epoch, message_contains="one epoch too early")
    assert_fails(ex.q3, step_every_batch, message_contains="every batch")
    assert_fails(ex.q3, never_steps, message_contains="never changed")
    assert_fails(ex.q3, no_optimizer, message_contains="optimizer should step")


def one_blank_left(optimizer, scheduler, epochs, batches_per_epoch):
    for _ in range(epochs):
        for _ in range(batches_per_epoch):
            optimizer.step()
            ____()  # B
        scheduler.step()


def test_q3_not_attempted():
    assert_not_attempted(ex.q3, schedule_template)
    assert_not_attempted(ex.q3, one_blank_left)
    assert_not_attempted(ex.q3, ____)


def notebook_template_followed_literally(blank_for_scheduler):
    """Lesson 04's q3 cell with ONE `____` replaced by `scheduler.step()` and each other by
    `pass`, exactly as its instruction says: the result must be valid Python."""
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    template = next(
        "".join(cell["source"])
        for cell in notebook["cells"]
        if cell["cell_type"] == "code" and "def run_schedule" in "".join(cell["source"])
    )
    lines = []
    for line in template.splitlines():
        if "ex.q3.check" in line:
            continue
        if line.strip().startswith("____"):
            chosen = f"# {blank_for_scheduler}:" in line
            line = line.replace("____", "scheduler.step()" if chosen else "pass", 1)
        lines.append(line)
    namespace = {}
    exec(compile("\n".join(lines), "lesson 04 q3", "exec"), namespace)
    return namespace["run_schedule"]


def test_q3_instruction_followed_literally_gives_valid_code():
    assert_passes(ex.q3, notebook_template_followed_literally("C"))
    assert_fails(
        ex.q3, notebook_template_followed_literally("A"), message_contains="one epoch too early"
    )
    assert_fails(ex.q3, notebook_template_followed_literally("B"), message_contains="every batch")


# ----------------------------------------------------------------------------- q4


def deep_copy(model):
    return copy.deepcopy(model.state_dict())


def cloned_tensors(model):
    return {name: tensor.clone() for name, tensor in model.state_dict().items()}


def saved_and_loaded(model):
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_q4_reference_passes():
    assert_passes(ex.q4, deep_copy)
    assert_passes(ex.q4, cloned_tensors)
    assert_passes(ex.q4, saved_and_loaded)


def test_q4_aliasing_fails_with_an_explanation():
    aliases = [
        lambda model: model.state_dict(),
        lambda model: dict(model.state_dict()),
        lambda model: model.state_dict().copy(),
        lambda model: {name: tensor.detach() for name, tensor in model.state_dict().items()},
    ]
    for alias in aliases:
        result = assert_fails(ex.q4, alias, message_contains="changed when the model trained")
        assert "model's own tensors" in result.message
        assert "copy.deepcopy(model.state_dict())" in result.message


def test_q4_typical_mistakes():
    assert_fails(
        ex.q4,
        lambda model: {name: p.detach().clone() for name, p in model.named_parameters()},
        message_contains="running statistics",
    )
    assert_fails(ex.q4, lambda model: copy.deepcopy(model), message_contains="returned a model")
    assert_fails(
        ex.q4, lambda model: copy.deepcopy(list(model.parameters())), message_contains="no names"
    )
    assert_fails(
        ex.q4,
        lambda model: {name: torch.zeros_like(t) for name, t in model.state_dict().items()},
        message_contains="current values",
    )
    assert_fails(
        ex.q4,
        lambda model: {**deep_copy(model), "extra.weight": torch.zeros(1)},
        message_contains="entries the model does not have",
    )


def test_q4_a_snapshot_that_trains_the_model_fails():
    def changes_the_weights(model):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(1.0)
        return copy.deepcopy(model.state_dict())

    assert_fails(ex.q4, changes_the_weights, message_contains="changed the model's weights")


def test_q4_not_attempted():
    def blank(model):
        return ____

    assert_not_attempted(ex.q4, blank)
    assert_not_attempted(ex.q4, ____)
    assert_fails(ex.q4, deep_copy(torch.nn.Linear(2, 2)), message_contains="function itself")
