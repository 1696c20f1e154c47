'''Exercise checkers in the style of Kaggle Learn: ``check()``, ``hint()`` and ``solution()``.

In a notebook, a learner replaces the blank ``____`` and checks the answer::

    model = ____           # the learner writes their answer here
    q1.check(model)        # Not attempted yet / Incorrect: <what is wrong> / Correct: ...
    q1.hint()              # Hint 1/2, then Hint 2/2, ...
    q1.solution()          # the solution as a Python code block

``check()`` never raises: a mistake, or an exception from the learner's own object (even
``SystemExit``), comes back as a FAIL with a message saying what to look at, so a notebook
always runs to the end. Only Ctrl-C (``KeyboardInterrupt``) gets through.
It shows the result (coloured in Jupyter, plain text elsewhere) and returns a ``Result``.

How to write a question (a subclass, its messages, its tests): docs/EXERCISES.md.

This module imports nothing from the rest of coursekit.
'''

from __future__ import annotations

import enum
import functools
import html
import inspect
import math
import numbers
import re
import sysconfig
import textwrap
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import CodeType, FunctionType, MappingProxyType, MethodType
from typing import Any, ClassVar, NoReturn

NOT_ATTEMPTED_MESSAGE = "replace `____` with your answer, then run the check again."
_BLANK_USED = "`____` is still a blank: replace it with your answer."


class NotAttempted(Exception):
    """The answer still contains the blank ``____``."""


class Incorrect(Exception):
    """Raised by a question's ``_check`` with a message for the learner."""


class _Placeholder:
    """The blank ``____``. Computing with it, testing it (``if ____:``) or entering it
    (``with ____:``) raises ``NotAttempted``, so a learner's function that still uses it is
    reported as "not attempted" instead of crashing."""

    _instance: ClassVar[_Placeholder | None] = None

    def __new__(cls) -> _Placeholder:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "____"

    def __reduce__(self) -> str:
        return "____"  # copies and pickles stay the one blank, so `is ____` still finds it

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise NotAttempted(_BLANK_USED)

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _refuse
    __truediv__ = __rtruediv__ = __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = _refuse
    __pow__ = __rpow__ = __matmul__ = __rmatmul__ = __neg__ = __pos__ = __abs__ = _refuse
    __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __call__ = __getitem__ = __iter__ = __len__ = __int__ = __float__ = __index__ = _refuse
    __bool__ = __enter__ = __exit__ = _refuse


#: The blank a learner replaces with an answer.
____ = _Placeholder()


#: Top-level packages whose functions and classes are never a learner's unfinished answer:
#: their code is not searched for the blank (a torch class has hundreds of methods).
_LIBRARY_PACKAGES = frozenset({"coursekit", "torch", "torchvision", "numpy"})


def contains_placeholder(value: object) -> bool:
    """Whether ``value`` is ``____``, holds it inside lists, tuples, sets or dicts, or is a
    learner's function or class whose code still names ``____`` (nested functions, lambdas
    and methods included).

    A function written in a notebook that still says ``return x * ____`` counts; code
    from coursekit, torch, torchvision and numpy is never searched.

    >>> contains_placeholder({"lr": 0.1, "momentum": ____})
    True
    >>> contains_placeholder([0.1, (0.9, ____)]), contains_placeholder([0.1, (0.9, 0.99)])
    (True, False)
    """
    return _search_placeholder(value, seen=set())


def _search_placeholder(value: object, seen: set[int]) -> bool:
    if value is ____:
        return True
    if any(_names_placeholder(code) for code in _learner_code(value)):
        return True
    if not isinstance(value, (list, tuple, set, frozenset, dict)) or id(value) in seen:
        return False
    seen.add(id(value))  # a list that contains itself must not loop forever
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value
    return any(_search_placeholder(item, seen) for item in items)


def _learner_code(value: object) -> Iterator[CodeType]:
    """The code of a plain function, method or class the learner wrote; nothing for other
    objects (instances, torch modules) or for library code, which never holds the blank."""
    function = value.__func__ if isinstance(value, MethodType) else value
    if not isinstance(function, FunctionType | type) or _from_library(function):
        return
    if isinstance(function, FunctionType):
        yield function.__code__
        return
    for klass in function.__mro__:  # a learner's base class may hold the unfinished method
        if not _from_library(klass):
            yield from (method.__code__ for method in _functions_of(klass))


def _functions_of(klass: type) -> Iterator[FunctionType]:
    for member in vars(klass).values():
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if isinstance(member, FunctionType):
            yield member


def _from_library(value: object) -> bool:
    module = getattr(value, "__module__", None)
    return isinstance(module, str) and module.partition(".")[0] in _LIBRARY_PACKAGES


def _names_placeholder(code: CodeType) -> bool:
    """Whether ``code``, or code nested in it (inner functions, lambdas, class bodies), uses
    the global name ``____``: a bare ``____`` line never computes with the blank, so only the
    code itself can tell that it is still there."""
    return "____" in code.co_names or any(
        _names_placeholder(const) for const in code.co_consts if isinstance(const, CodeType)
    )


# ----------------------------------------------------------------------------- results


class Outcome(enum.Enum):
    """How a check ended: right, wrong (with a message), or the blank is still there."""

    PASS = "pass"
    FAIL = "fail"
    NOT_ATTEMPTED = "not_attempted"


_COLORS = {
    "pass": "#2e7d32",
    "fail": "#c62828",
    "not_attempted": "#1565c0",
    "hint": "#6a1b9a",
    "solution": "#37474f",
}
_LABELS = {
    Outcome.PASS: "Correct",
    Outcome.FAIL: "Incorrect",
    Outcome.NOT_ATTEMPTED: "Not attempted yet",
}


@dataclass(frozen=True)
class Feedback:
    """One message for the learner, shown as HTML or Markdown in Jupyter, text elsewhere.

    ``text`` may use `backticks` for code; ``code`` is shown as a Python code block.

    >>> print(Feedback("Hint 1/2", "Look at `model.fc`.", "hint"))
    Hint 1/2: Look at `model.fc`.
    """

    label: str
    text: str
    kind: str
    code: str = ""

    def __str__(self) -> str:
        head = f"{self.label}: {self.text}".rstrip()
        return f"{head}\n```python\n{self.code}\n```" if self.code else head

    def _repr_markdown_(self) -> str:
        color = _COLORS[self.kind]
        head = f'<span style="color:{color}">**{self.label}:**</span> {self.text}'.rstrip()
        return f"{head}\n\n```python\n{self.code}\n```" if self.code else head

    def _repr_html_(self) -> str:
        style = f"color:{_COLORS[self.kind]};font-weight:bold"
        label = f'<span style="{style}">{html.escape(self.label)}:</span>'
        text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(self.text))
        code = f"<pre><code>{html.escape(self.code)}</code></pre>" if self.code else ""
        return f"<p>{label} {text}".rstrip() + f"</p>{code}"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))  # terminal IPython: the plain text, not the dataclass repr


@dataclass(frozen=True)
class Result:
    """What ``check()`` found: an ``Outcome`` and the message shown to the learner.

    >>> Result(Outcome.PASS, "well done.").passed
    True
    """

    outcome: Outcome
    message: str

    @property
    def passed(self) -> bool:
        return self.outcome is Outcome.PASS

    @property
    def feedback(self) -> Feedback:
        return Feedback(_LABELS[self.outcome], self.message, self.outcome.value)

    def __str__(self) -> str:
        return str(self.feedback)

    def show(self) -> None:
        """Show the result again (``check()`` already showed it once)."""
        _show(self.feedback)

    def _ipython_display_(self) -> None:
        """Show nothing when Jupyter echoes ``q.check(...)`` at the end of a cell:
        ``check()`` has shown the result already, and it should not appear twice."""


def _in_ipython() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    return get_ipython() is not None


def _show(feedback: Feedback) -> None:
    if _in_ipython():
        from IPython.display import display

        display(feedback)
    else:
        print(feedback)


# ----------------------------------------------------------------------------- helpers for _check


def call_answer(function: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a function the learner wrote; if what it returns still holds ``____``, the
    question counts as not attempted (the template's ``return ____`` was not replaced).

    >>> call_answer(lambda: 2 + 2)
    4
    >>> ValueQuestion(expected=4).evaluate(call_answer(lambda: 4)).passed
    True
    """
    result = function(*args, **kwargs)
    if contains_placeholder(result):
        raise NotAttempted(_BLANK_USED)
    return result


def expect_callable(answer: Any, name: str) -> None:
    """Fail unless ``answer`` is a function: the learner passes ``name`` itself, not what
    calling it returned (even a callable result, like a model or a pipeline), nor a class.

    >>> expect_callable(len, "len")
    >>> expect_callable(len("abc"), "len")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    Incorrect: Pass your function itself (`len`), not the result of calling it.
    """
    if isinstance(answer, type):
        raise Incorrect(
            f"This question wants a function, but `{answer.__name__}` is a class: write "
            f"`def {name}(...):` and pass `{name}` itself."
        )
    expect(
        inspect.isroutine(answer) or isinstance(answer, functools.partial),
        f"Pass your function itself (`{name}`), not the result of calling it.",
    )


def expect(condition: object, message: str) -> None:
    """Fail the check with ``message`` unless ``condition`` is true.

    >>> expect(2 + 2 == 4, "Arithmetic is broken.")
    """
    if not condition:
        raise Incorrect(message)


def expect_equal(actual: Any, expected: Any, what: str, tolerance: float | None = None) -> None:
    """Fail unless ``actual`` equals ``expected`` (within ``tolerance`` for numbers/tensors).

    ``what`` names the thing compared in the message, e.g. "the number of classes".
    An ``actual`` that is or contains ``____`` counts as not attempted.

    >>> expect_equal(len([1, 2, 3]), 3, "the number of items")
    """
    if contains_placeholder(actual):
        raise NotAttempted(_BLANK_USED)
    if not _equal(actual, expected, tolerance):
        raise Incorrect(f"{what} should be {safe_repr(expected)}, but it is {safe_repr(actual)}.")


def _is_array(value: object) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")  # tensor or NumPy array


def _equal(actual: Any, expected: Any, tolerance: float | None) -> bool:
    if _is_array(expected):
        if not _is_array(actual) or tuple(actual.shape) != tuple(expected.shape):
            return False
        if tolerance is None:
            return bool((actual == expected).all())
        return bool((abs(actual - expected) <= tolerance).all())
    if _bool_against_number(actual, expected) or _bool_against_number(expected, actual):
        return False  # True == 1 in Python, but a yes/no answer is not a count
    actual_number, expected_number = _as_number(actual), _as_number(expected)
    if tolerance is not None and actual_number is not None and expected_number is not None:
        return math.isclose(actual_number, expected_number, rel_tol=0.0, abs_tol=tolerance)
    return bool(actual == expected)


def _bool_against_number(value: object, other: object) -> bool:
    return (
        isinstance(value, bool)
        and isinstance(other, numbers.Number)
        and not isinstance(other, bool)
    )


def expect_shape(tensor: Any, shape: Sequence[int | None], what: str) -> None:
    """Fail unless ``tensor.shape`` is ``shape``; ``None`` in ``shape`` matches any size.

    >>> import torch; expect_shape(torch.zeros(8, 10), (None, 10), "the logits")
    """
    if contains_placeholder(tensor):
        raise NotAttempted(_BLANK_USED)
    wanted = "(" + ", ".join("any" if size is None else str(size) for size in shape) + ")"
    if not hasattr(tensor, "shape"):
        raise Incorrect(
            f"{what} should be a tensor of shape {wanted}, but it is {safe_repr(tensor)}."
        )
    actual = tuple(tensor.shape)
    fits = len(actual) == len(shape) and all(
        w is None or a == w for a, w in zip(actual, shape, strict=True)
    )
    expect(fits, f"{what} should have shape {wanted}, but it has shape {actual}.")


def safe_repr(value: object, limit: int = 80) -> str:
    """A short description of a learner's object that never raises.

    >>> safe_repr("x" * 100)[-3:]
    '...'
    """
    if _is_array(value):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    try:
        text = repr(value)
    except Exception:  # a learner's class may have a broken __repr__
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _as_number(value: object) -> float | None:
    """``value`` as a float for numbers and 0-d tensors/arrays, else None."""
    if isinstance(value, numbers.Real):
        return float(value)
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):
        item = value.item()
        return float(item) if isinstance(item, numbers.Real) else None
    return None


# ----------------------------------------------------------------------------- questions


class Question:
    """One exercise. Subclasses set ``title``, ``hints``, ``solution_code`` and write
    ``_check``; settings can also be passed as keywords (see the module docstring).

    >>> class Two(Question):
    ...     def _check(self, answer): expect_equal(answer, 2, "1 + 1")
    >>> Two().evaluate(3).message
    '1 + 1 should be 2, but it is 3.'
    """

    title: str = ""
    hints: Sequence[str] = ()
    #: The solution, shown by ``solution()``; indentation is removed.
    solution_code: str = ""
    correct_message: str = "well done."

    def __init__(self, **settings: Any) -> None:
        for name, value in settings.items():
            default = getattr(type(self), name, None)
            if name.startswith("_") or not hasattr(type(self), name) or callable(default):
                raise TypeError(f"{type(self).__name__} has no setting {name!r}.")
            setattr(self, name, value)
        self._hints_shown = 0

    def check(self, *answers: Any) -> Result:
        """Check the answer(s), show the result, and return it. Never raises.

        >>> ValueQuestion(expected=4).check(2 + 2)
        Correct: well done.
        Result(outcome=<Outcome.PASS: 'pass'>, message='well done.')
        """
        result = self.evaluate(*answers)
        _show(result.feedback)
        return result

    def evaluate(self, *answers: Any) -> Result:
        """The ``Result`` of checking the answer(s), without showing it. Never raises.

        >>> ValueQuestion(expected=4).evaluate(____).outcome
        <Outcome.NOT_ATTEMPTED: 'not_attempted'>
        """
        try:
            self._expect_answer_count(answers)
            if contains_placeholder(answers):
                raise NotAttempted(_BLANK_USED)
            self._check(*answers)
        except NotAttempted:
            return Result(Outcome.NOT_ATTEMPTED, NOT_ATTEMPTED_MESSAGE)
        except Incorrect as mistake:
            return Result(Outcome.FAIL, str(mistake))
        except (KeyboardInterrupt, GeneratorExit):
            raise  # Ctrl-C must stop the notebook; GeneratorExit is Python closing a generator
        except BaseException as error:  # whatever the learner's object does, even sys.exit()
            return Result(Outcome.FAIL, _describe_crash(error, self))
        return Result(Outcome.PASS, self.correct_message)

    def hint(self) -> None:
        """Show the next hint ("Hint 2/3"); after the last one, repeat it.

        >>> ValueQuestion(expected=4, hints=["Add them."]).hint()
        Hint 1/1: Add them.
        """
        if not self.hints:
            _show(Feedback("Hint", "this question has no hints; try `solution()`.", "hint"))
            return
        self._hints_shown = min(self._hints_shown + 1, len(self.hints))
        text = self.hints[self._hints_shown - 1]
        _show(Feedback(f"Hint {self._hints_shown}/{len(self.hints)}", text, "hint"))

    def solution(self) -> None:
        """Show the solution code as a Python code block.

        >>> ValueQuestion(expected=4, solution_code="answer = 2 + 2").solution()  # doctest: +ELLIPSIS
        Solution:
        ...
        """
        code = textwrap.dedent(self.solution_code).strip()
        if not code:
            _show(Feedback("Solution", "this question has no written solution.", "solution"))
            return
        _show(Feedback("Solution", "", "solution", code=code))

    def _check(self, *answers: Any) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _check(self, ...).")

    def _expect_answer_count(self, answers: tuple[Any, ...]) -> None:
        """A clear message when check() gets more or fewer answers than the question takes."""
        signature = inspect.signature(self._check)
        try:
            signature.bind(*answers)
        except TypeError:
            names = [p.name for p in signature.parameters.values()]
            raise Incorrect(
                f"check() takes {len(names)} answer(s), got {len(answers)}: "
                f"call check({', '.join(names)})."
            ) from None


class ValueQuestion(Question):
    """Questions like "what is the number?": the answer must equal ``expected``.

    ``tolerance`` is the allowed absolute error for numbers (0-d tensors work too); strings
    are compared ignoring case and surrounding spaces. A tensor (or array) ``expected`` needs
    a tensor (or array): an equal list is told to return one. ``True``/``False`` never count
    as the numbers 1/0, nor numbers as yes/no answers. ``wrong_answers`` maps a common wrong
    answer to the message explaining it.

    >>> q = ValueQuestion(expected=0.1, tolerance=1e-3, wrong_answers={1.0: "Too big."})
    >>> q.evaluate(1.0).message, q.evaluate(0.1004).passed
    ('Too big.', True)
    """

    expected: Any = None
    tolerance: float = 1e-9
    wrong_answers: Mapping[Any, str] = MappingProxyType({})

    def _check(self, answer: Any) -> None:
        if _is_array(self.expected) and not _is_array(answer):
            kind = type(self.expected).__name__
            raise Incorrect(
                f"Return a {kind}: your answer is a {type(answer).__name__}, but this question "
                f"wants {safe_repr(self.expected)}."
            )
        if _bool_against_number(answer, self.expected):
            raise Incorrect(
                f"`{answer}` is a yes/no value (a bool), but this question wants a number."
            )
        if self._matches(answer, self.expected):
            return
        for wrong, message in self.wrong_answers.items():
            if self._matches(answer, wrong):
                raise Incorrect(message)
        raise Incorrect(f"{safe_repr(answer)} is not the answer. Stuck? Call `.hint()`.")

    def _matches(self, answer: Any, target: Any) -> bool:
        if isinstance(answer, str) and isinstance(target, str):
            return answer.strip().casefold() == target.strip().casefold()
        return _equal(answer, target, self.tolerance)


class MultipleChoice(ValueQuestion):
    """Pick one of ``options``; ``expected`` is the right one.

    >>> q = MultipleChoice(options=("a", "b", "c"), expected="b")
    >>> q.evaluate("d").message
    "Pick one of 'a', 'b', 'c' (you answered 'd')."
    """

    options: Sequence[Any] = ()

    def _check(self, answer: Any) -> None:
        known = any(self._matches(answer, option) for option in self.options)
        choices = ", ".join(safe_repr(option) for option in self.options)
        expect(known, f"Pick one of {choices} (you answered {safe_repr(answer)}).")
        super()._check(answer)


# ----------------------------------------------------------------------------- crashes


#: Code in these folders is never the learner's (coursekit itself, Python, installed packages).
_LIBRARY_DIRS = tuple(
    {str(Path(__file__).resolve().parents[1])}
    | {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
)


def _describe_crash(error: BaseException, question: Question) -> str:
    """The message for an exception raised while checking: what it was and where to look."""
    what = f"`{type(error).__name__}: {_safe_str(error)}`"
    if isinstance(error, SystemExit):
        what += " (`exit()` and `sys.exit()` end the whole program: `return` a value instead)"
    place = _place_in_learner_code(error, question)
    if place is None:
        return (
            f"Checking your answer raised {what}. Make sure your answer is the kind of object "
            "the question asks for (run it on its own to see the full error)."
        )
    return (
        f"Your code raised {what} ({place}). Run it on its own to see the full error, "
        "fix it, then check again."
    )


def _place_in_learner_code(error: BaseException, question: Question) -> str | None:
    """Where the innermost frame of the learner's own code is ("in `f`, line 3"), if any.

    Frames of the question's methods and of library folders are the checker's, not the
    learner's: an AttributeError there means the answer is the wrong kind of object.
    """
    checker_code = {
        function.__code__
        for klass in type(question).__mro__
        for function in vars(klass).values()
        if inspect.isfunction(function)
    }
    frames = list(traceback.walk_tb(error.__traceback__))
    for frame, line in reversed(frames):
        code = frame.f_code
        in_library = str(Path(code.co_filename).resolve()).startswith(_LIBRARY_DIRS)
        if code not in checker_code and not in_library:
            return (
                f"line {line}"
                if code.co_name == "<module>"
                else f"in `{code.co_name}`, line {line}"
            )
    return None


def _safe_str(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # an exception class with a broken __str__
        return "(no message)"


# ----------------------------------------------------------------------------- test helpers


def assert_passes(question: Question, *answers: Any) -> Result:
    """Assert that ``answers`` pass ``question`` (for tests of the solutions).

    >>> class Two(Question):
    ...     def _check(self, answer): expect_equal(answer, 2, "1 + 1")
    >>> assert_passes(Two(), 2).passed
    True
    """
    return _assert_outcome(question, answers, Outcome.PASS)


def assert_fails(question: Question, *answers: Any, message_contains: str | None = None) -> Result:
    """Assert that ``answers`` fail ``question``, with ``message_contains`` in the message.

    >>> class Two(Question):
    ...     def _check(self, answer): expect_equal(answer, 2, "1 + 1")
    >>> assert_fails(Two(), 3, message_contains="should be 2").passed
    False
    """
    result = _assert_outcome(question, answers, Outcome.FAIL)
    if message_contains is not None and message_contains not in result.message:
        raise AssertionError(
            f"{_name(question)} failed as expected, but its message does not contain "
            f"{message_contains!r}: {result.message!r}"
        )
    return result


def assert_not_attempted(question: Question, *answers: Any) -> Result:
    """Assert that ``answers`` (still holding ``____``) count as not attempted.

    >>> class Two(Question):
    ...     def _check(self, answer): expect_equal(answer, 2, "1 + 1")
    >>> assert_not_attempted(Two(), ____).outcome.name
    'NOT_ATTEMPTED'
    """
    return _assert_outcome(question, answers, Outcome.NOT_ATTEMPTED)


def _assert_outcome(question: Question, answers: tuple[Any, ...], expected: Outcome) -> Result:
    result = question.evaluate(*answers)
    if result.outcome is not expected:
        raise AssertionError(
            f"{_name(question)}: expected {expected.name}, got {result.outcome.name}: "
            f"{result.message}"
        )
    return result


def _name(question: Question) -> str:
    return question.title or type(question).__name__
