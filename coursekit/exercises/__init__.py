"""Exercises for the lessons: ``check()``, ``hint()`` and ``solution()`` question objects.

The machinery is in ``core`` (see its docstring for how to write a question); the questions
of lesson NN are in ``lessonNN`` as ``q1``, ``q2``, ...

    >>> from coursekit.exercises import lesson01  # doctest: +SKIP
    >>> lesson01.q1.check(____)                    # doctest: +SKIP
    Not attempted yet: replace `____` with your answer, then run the check again.
"""

from coursekit.exercises.core import (
    NOT_ATTEMPTED_MESSAGE,
    Feedback,
    Incorrect,
    MultipleChoice,
    NotAttempted,
    Outcome,
    Question,
    Result,
    ValueQuestion,
    ____,
    assert_fails,
    assert_not_attempted,
    assert_passes,
    call_answer,
    contains_placeholder,
    expect,
    expect_callable,
    expect_equal,
    expect_shape,
    safe_repr,
)

__all__ = [
    "NOT_ATTEMPTED_MESSAGE",
    "Feedback",
    "Incorrect",
    "MultipleChoice",
    "NotAttempted",
    "Outcome",
    "Question",
    "Result",
    "ValueQuestion",
    "____",
    "assert_fails",
    "assert_not_attempted",
    "assert_passes",
    "call_answer",
    "contains_placeholder",
    "expect",
    "expect_callable",
    "expect_equal",
    "expect_shape",
    "safe_repr",
]
