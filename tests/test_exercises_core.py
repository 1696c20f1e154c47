"""Tests for coursekit.exercises.core: outcomes, messages, hints, display, and never raising."""

from __future__ import annotations

import copy
import doctest
import functools
import pickle
import sys

import pytest
import torch
from IPython.core.formatters import DisplayFormatter

from coursekit.exercises import (
    NOT_ATTEMPTED_MESSAGE,
    Feedback,
    Incorrect,
    MultipleChoice,
    NotAttempted,
    Outcome,
    Question,
    ValueQuestion,
    ____,
    assert_fails,
    assert_not_attempted,
    assert_passes,
    call_answer,
    contains_placeholder,
    core,
    expect,
    expect_callable,
    expect_equal,
    expect_shape,
)


class LinearHead(Question):
    """A question in the style of the lessons: an nn.Linear head for 5 classes on 512 features."""

    title = "A new head"
    hints = ["The head maps features to classes.", "in_features=512.", "nn.Linear(512, 5)"]
    solution_code = """
        head = nn.Linear(512, 5)
    """

    def _check(self, head):
        expect(isinstance(head, torch.nn.Linear), "The head should be an `nn.Linear` layer.")
        expect(head.in_features == 512, "`in_features` should be 512, the backbone's features.")
        expect_shape(head(torch.zeros(2, 512)), (None, 5), "the output for a batch")


class Square(Question):
    """A question whose answer is a function the learner wrote."""

    title = "square"

    def _check(self, square):
        expect(callable(square), "Pass your function itself: `square`, not `square(3)`.")
        for x in (0, 3, -2):
            expect_equal(square(x), x * x, f"square({x})")


class TwoAnswers(Question):
    def _check(self, model, optimizer):
        expect(optimizer is not None, "Pass the optimizer too.")


class BrokenEquality:
    def __eq__(self, other):
        raise RuntimeError("no comparing me")

    __hash__ = None


class BrokenRepr:
    def __repr__(self):
        raise ValueError("no printing me")


@pytest.fixture(autouse=True)
def plain_text(monkeypatch):
    """Pretend we are not in IPython, whatever the environment."""
    monkeypatch.setattr(core, "_in_ipython", lambda: False)


# ----------------------------------------------------------------------------- outcomes


def test_three_outcomes_and_their_plain_text(capsys):
    question = LinearHead()

    passed = question.check(torch.nn.Linear(512, 5))
    assert passed.outcome is Outcome.PASS and passed.passed
    assert capsys.readouterr().out.strip() == f"Correct: {question.correct_message}"

    failed = question.check(torch.nn.Linear(256, 5))
    assert failed.outcome is Outcome.FAIL
    assert capsys.readouterr().out.startswith("Incorrect: `in_features` should be 512")

    blank = question.check(____)
    assert blank.outcome is Outcome.NOT_ATTEMPTED
    assert capsys.readouterr().out.strip() == f"Not attempted yet: {NOT_ATTEMPTED_MESSAGE}"
    assert "replace `____` with your answer" in NOT_ATTEMPTED_MESSAGE


def test_shape_mistakes_get_their_own_message():
    result = assert_fails(LinearHead(), torch.nn.Linear(512, 10), message_contains="shape (any, 5)")
    assert "(2, 10)" in result.message
    assert_fails(LinearHead(), torch.nn.Conv2d(3, 5, 1), message_contains="`nn.Linear`")


@pytest.mark.parametrize(
    "answer",
    [____, [1, ____], (1, (2, ____)), {"lr": ____}, {____: 1}, {"a": [{"b": ____}]}],
)
def test_placeholder_anywhere_means_not_attempted(answer):
    assert contains_placeholder(answer)
    assert_not_attempted(ValueQuestion(expected=3), answer)


def test_placeholder_is_one_object_that_survives_copies():
    assert repr(____) == "____"
    assert type(____)() is ____
    assert copy.deepcopy([____])[0] is ____
    assert pickle.loads(pickle.dumps(____)) is ____
    looped: list = [1]
    looped.append(looped)
    assert not contains_placeholder(looped)  # and does not recurse forever
    assert not contains_placeholder([None, "____", 0])


def test_computing_with_the_blank_raises_not_attempted():
    for use in (
        lambda: ____ + 1,
        lambda: 2 * ____,
        lambda: ____(1),
        lambda: ____[0],
        lambda: len(____),
    ):
        with pytest.raises(NotAttempted, match="replace it with your answer"):
            use()


def test_function_answers_are_checked_on_fixed_inputs():
    def square(x):
        return x * x

    def doubled(x):
        return x + x

    def unfinished(x):
        return ____

    def half_finished(x):
        return ____ * x

    assert_passes(Square(), square)
    assert_fails(Square(), doubled, message_contains="square(3) should be 9, but it is 6")
    assert_fails(Square(), square(3), message_contains="not `square(3)`")
    assert_not_attempted(Square(), unfinished)
    assert_not_attempted(Square(), half_finished)


# ----------------------------------------------------------------------------- blanks in code


def bare_blank(x):
    ____  # noqa: B018 - the template line, as in a notebook
    return x * x


def blank_in_a_branch(x):
    if x > 100:  # never true on the inputs Square tries: only the code shows the blank
        return x * ____
    return x * x


def blank_in_a_nested_function(x):
    def helper(y):
        return ____ if y < -100 else y * y

    return helper(x)


def blank_in_a_lambda(x):
    return (lambda y: y * y if y > -100 else ____)(x)


class HalfWrittenModel(torch.nn.Module):
    def forward(self, x):
        if x.numel() > 10**9:
            return ____
        return x


class SubclassOfHalfWritten(HalfWrittenModel):
    """Finished itself, but it inherits the unfinished forward of a learner's base class."""

    def extra(self):
        return 1


class WithStaticBlank:
    @staticmethod
    def make():
        return ____


class Finished(torch.nn.Module):
    def forward(self, x):
        return x * 2


class FirstInstance(Question):
    """A question that takes a class, builds it and runs it."""

    def _check(self, model_class):
        expect(isinstance(model_class, type), "Pass the class itself.")
        expect_shape(model_class()(torch.zeros(2, 3)), (2, 3), "the output")


@pytest.mark.parametrize(
    "function", [bare_blank, blank_in_a_branch, blank_in_a_nested_function, blank_in_a_lambda]
)
def test_a_function_whose_code_names_the_blank_is_not_attempted(function):
    assert contains_placeholder(function)
    assert contains_placeholder(function.__get__(object()))  # and as a bound method
    assert_not_attempted(Square(), function)


@pytest.mark.parametrize("model_class", [HalfWrittenModel, SubclassOfHalfWritten])
def test_a_class_whose_methods_name_the_blank_is_not_attempted(model_class):
    assert contains_placeholder(model_class)
    assert_not_attempted(FirstInstance(), model_class)
    assert contains_placeholder(WithStaticBlank)


def test_finished_functions_and_classes_are_not_flagged():
    def square(x):
        return x * x

    assert not contains_placeholder(square)
    assert not contains_placeholder(lambda x: x * x)
    assert not contains_placeholder(Finished)
    assert not contains_placeholder([square, Finished, Finished()])
    assert_passes(Square(), square)
    assert_passes(FirstInstance(), Finished)


def test_library_functions_classes_and_objects_are_not_searched():
    def made_by_torch():
        return ____

    def made_by_coursekit():
        return ____

    made_by_torch.__module__ = "torch.nn.functional"
    made_by_coursekit.__module__ = "coursekit.exercises.lesson01"
    assert contains_placeholder(lambda: ____)  # the same code from a learner is flagged
    assert not contains_placeholder(made_by_torch)
    assert not contains_placeholder(made_by_coursekit)

    library_class = type("LibraryBase", (), {"method": made_by_coursekit})
    library_class.__module__ = "coursekit.models"
    learner_subclass = type("Mine", (library_class,), {"forward": lambda self: 1})
    assert not contains_placeholder(library_class)
    assert not contains_placeholder(learner_subclass)  # its library base is not searched

    for obj in (torch.nn.Linear(2, 2), torch.nn.Module, torch.relu, call_answer, Square):
        assert not contains_placeholder(obj)


def test_with_and_if_on_the_blank_are_not_attempted():
    # The blank reaches these functions as a default value, so their code never names it:
    # only running them can find it.
    def with_blank(x, context=____):
        with context:
            return x * x

    def if_blank(x, condition=____):
        if condition:
            return x * x
        return 0

    for function in (with_blank, if_blank):
        assert not contains_placeholder(function)
        assert_not_attempted(Square(), function)
    with pytest.raises(NotAttempted):
        bool(____)
    with pytest.raises(NotAttempted), ____:
        pass


def test_expect_callable_wants_the_function_itself():
    def square(x):
        return x * x

    for function in (square, lambda x: x, len, torch.relu, functools.partial(pow, exp=2)):
        expect_callable(function, "square")
    for result in (9, torch.nn.Linear(2, 2), None):  # what calling a function gave, callable or not
        with pytest.raises(Incorrect, match=r"Pass your function itself \(`square`\), not the"):
            expect_callable(result, "square")
    with pytest.raises(Incorrect, match="`Finished` is a class.*`def square"):
        expect_callable(Finished, "square")


# ----------------------------------------------------------------------------- never raises


def test_a_crash_in_the_learners_function_names_the_exception_and_the_place():
    def square(x):
        return 1 / x  # ZeroDivisionError for x = 0

    result = assert_fails(Square(), square, message_contains="ZeroDivisionError")
    assert "`square`" in result.message and "line" in result.message


def test_learner_objects_that_break_comparison_and_repr_do_not_escape(capsys):
    result = ValueQuestion(expected=3).check(BrokenEquality())
    assert result.outcome is Outcome.FAIL
    assert "RuntimeError: no comparing me" in result.message
    assert "`__eq__`" in result.message
    assert "Incorrect:" in capsys.readouterr().out

    assert_fails(ValueQuestion(expected=3), BrokenRepr(), message_contains="<BrokenRepr object>")


def test_sys_exit_in_the_learners_function_is_a_failure_not_the_end_of_the_notebook():
    def square(x):
        sys.exit(1)

    result = assert_fails(Square(), square, message_contains="SystemExit")
    assert "`return` a value instead" in result.message and "`square`" in result.message


def test_ctrl_c_in_the_learners_function_still_stops_the_notebook():
    def square(x):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Square().evaluate(square)


def test_the_wrong_kind_of_object_points_at_the_answer_not_a_line():
    result = assert_fails(LinearHead(), "a string", message_contains="`nn.Linear`")
    assert result.outcome is Outcome.FAIL

    class NeedsModel(Question):
        def _check(self, model):
            model.named_parameters()

    crash = assert_fails(NeedsModel(), 42, message_contains="AttributeError")
    assert "kind of object the question asks for" in crash.message


def test_wrong_number_of_answers_is_a_clear_failure():
    assert_fails(TwoAnswers(), object(), message_contains="check(model, optimizer)")
    assert_passes(TwoAnswers(), object(), object())


def test_an_unfinished_question_fails_instead_of_raising():
    class NoCheck(Question):
        pass

    assert_fails(NoCheck(), 1, message_contains="NotImplementedError")


# ----------------------------------------------------------------------------- hints and display


def test_hints_step_through_and_repeat_the_last(capsys):
    question = LinearHead()
    for _ in range(4):
        question.hint()
    assert capsys.readouterr().out.splitlines() == [
        "Hint 1/3: The head maps features to classes.",
        "Hint 2/3: in_features=512.",
        "Hint 3/3: nn.Linear(512, 5)",
        "Hint 3/3: nn.Linear(512, 5)",
    ]
    ValueQuestion(expected=1).hint()
    assert "no hints" in capsys.readouterr().out


def test_solution_is_a_dedented_python_block(capsys):
    LinearHead().solution()
    assert capsys.readouterr().out == "Solution:\n```python\nhead = nn.Linear(512, 5)\n```\n"
    ValueQuestion(expected=1).solution()
    assert "no written solution" in capsys.readouterr().out


def test_rich_reprs_are_coloured_and_escape_html():
    feedback = Feedback("Incorrect", "use `x < 3` here", "fail")
    markup = feedback._repr_html_()
    assert core._COLORS["fail"] in markup
    assert "<code>x &lt; 3</code>" in markup
    assert core._COLORS["fail"] in feedback._repr_markdown_()
    assert "use `x < 3` here" in feedback._repr_markdown_()

    solution = Feedback("Solution", "", "solution", code="a = b < c")
    assert "<pre><code>a = b &lt; c</code></pre>" in solution._repr_html_()
    assert "```python\na = b < c\n```" in solution._repr_markdown_()


def test_ipython_shows_rich_feedback_once(monkeypatch):
    shown = []
    monkeypatch.setattr(core, "_in_ipython", lambda: True)
    monkeypatch.setattr("IPython.display.display", shown.append)
    result = LinearHead().check(torch.nn.Linear(512, 5))

    assert shown == [result.feedback]
    formatter = DisplayFormatter()
    data, _ = formatter.format(result.feedback)
    assert {"text/plain", "text/html", "text/markdown"} <= set(data)
    assert data["text/plain"].startswith("Correct:")
    # The cell's echo of the returned Result must not show it a second time.
    assert formatter.format(result) == ({}, {})


# ----------------------------------------------------------------------------- value questions


def test_value_question_tolerance_and_common_wrong_answers():
    question = ValueQuestion(
        expected=11_689_512,
        wrong_answers={11_181_642: "That leaves out the final `fc` layer."},
    )
    assert_passes(question, 11_689_512)
    assert_passes(question, torch.tensor(11_689_512))
    assert_fails(question, 11_181_642, message_contains="final `fc` layer")
    assert_fails(question, 5, message_contains="5 is not the answer")

    close = ValueQuestion(expected=0.1, tolerance=0.01)
    assert_passes(close, 0.105)
    assert_passes(close, torch.tensor(0.095))
    assert_fails(close, 0.12)
    assert_passes(ValueQuestion(expected=0.3), 0.1 + 0.2)  # the default tolerance absorbs rounding


def test_value_question_compares_strings_loosely_and_tensors_exactly():
    assert_passes(ValueQuestion(expected="eval"), "  Eval ")
    assert_fails(ValueQuestion(expected="eval"), "train")
    expected = torch.tensor([1, 2, 3])
    assert_passes(ValueQuestion(expected=expected), torch.tensor([1, 2, 3]))
    assert_fails(ValueQuestion(expected=expected), torch.tensor([1, 2]))


def test_a_tensor_question_answered_with_an_equal_list_asks_for_a_tensor():
    question = ValueQuestion(expected=torch.tensor([1, 2, 3]))
    result = assert_fails(question, [1, 2, 3], message_contains="Return a Tensor")
    assert "list" in result.message and "shape (3,)" in result.message


@pytest.mark.parametrize(("expected", "answer"), [(1, True), (0, False), (1.0, True), (True, 1)])
def test_bools_and_numbers_never_stand_for_each_other(expected, answer):
    assert expected == answer  # Python itself says they are equal
    assert_fails(ValueQuestion(expected=expected), answer)
    with pytest.raises(Incorrect, match="should be"):
        expect_equal(answer, expected, "the count")
    assert_passes(ValueQuestion(expected=expected), expected)


def test_a_bool_for_a_number_gets_its_own_message():
    assert_fails(ValueQuestion(expected=1), True, message_contains="a bool")
    assert_passes(MultipleChoice(options=(True, False), expected=False), False)


def test_multiple_choice_rejects_unknown_options_first():
    question = MultipleChoice(
        options=("a", "b", "c"), expected="b", wrong_answers={"a": "That is the train pipeline."}
    )
    assert_passes(question, "B")
    assert_fails(question, "a", message_contains="train pipeline")
    assert_fails(question, "d", message_contains="Pick one of 'a', 'b', 'c'")


def test_settings_by_keyword_are_checked():
    with pytest.raises(TypeError, match="no setting 'expectd'"):
        ValueQuestion(expectd=3)
    with pytest.raises(TypeError, match="no setting 'check'"):
        ValueQuestion(check=print)


# ----------------------------------------------------------------------------- helpers


def test_expect_helpers():
    with pytest.raises(Incorrect, match="boom"):
        expect(False, "boom")
    expect_equal(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.001]), "x", tolerance=0.01)
    with pytest.raises(Incorrect, match="x should be"):
        expect_equal(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1]), "x", tolerance=0.01)
    with pytest.raises(Incorrect, match="of shape"):
        expect_shape([1, 2], (2,), "the logits")
    with pytest.raises(Incorrect, match=r"shape \(2, 3\)"):
        expect_shape(torch.zeros(2, 3), (2, 3, 1), "y")
    with pytest.raises(NotAttempted):
        expect_equal([____], [1], "z")


def test_the_docstring_examples_run_as_doctests():
    results = doctest.testmod(core, optionflags=doctest.ELLIPSIS)
    assert results.attempted > 20 and results.failed == 0


def test_assertion_helpers_fail_loudly_on_the_wrong_outcome():
    question = ValueQuestion(expected=2, title="two")
    with pytest.raises(AssertionError, match="two: expected PASS, got FAIL"):
        assert_passes(question, 3)
    with pytest.raises(AssertionError, match="expected FAIL, got PASS"):
        assert_fails(question, 2)
    with pytest.raises(AssertionError, match="does not contain 'banana'"):
        assert_fails(question, 3, message_contains="banana")
    with pytest.raises(AssertionError, match="expected NOT_ATTEMPTED"):
        assert_not_attempted(question, 2)
