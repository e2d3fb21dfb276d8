"""The public surface: exported names, the error classes and the documented exception tree."""

from __future__ import annotations

import importlib
import inspect
import re

import pytest

import fleetbox
from fleetbox import errors
from fleetbox.errors import (
    AuthenticationError,
    ErrorClass,
    FleetboxError,
    JobError,
    NetworkError,
    NoProcessorError,
    PermanentError,
    RateLimitError,
    TransientError,
    ValidationError,
    classify,
)


def _exception_classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__
    }


def test_all_is_sorted_and_unique() -> None:
    assert list(fleetbox.__all__) == sorted(fleetbox.__all__)
    assert len(set(fleetbox.__all__)) == len(fleetbox.__all__)


def test_every_exported_name_is_importable() -> None:
    module = importlib.import_module("fleetbox")
    for name in fleetbox.__all__:
        assert hasattr(module, name), name
        assert getattr(module, name) is not None
    namespace: dict[str, object] = {}
    exec("from fleetbox import *", namespace)
    assert set(fleetbox.__all__) <= set(namespace)


def test_the_main_entry_points_are_exported() -> None:
    for name in ("Client", "Appliance", "Settings", "load_settings", "JobPriority", "Job", "__version__"):
        assert name in fleetbox.__all__


def test_every_public_exception_is_exported() -> None:
    # ErrorClass and classify live in fleetbox.errors; handlers need the JobError tree.
    for name, cls in _exception_classes().items():
        if name == "SchemaNotReady":
            continue  # raised by fleetbox, caught as DatabaseError
        assert name in fleetbox.__all__, name
        assert getattr(fleetbox, name) is cls


def test_job_priorities_match_the_spec() -> None:
    assert {p.name: int(p) for p in fleetbox.JobPriority} == {
        "CRITICAL": 1,
        "HIGH": 3,
        "NORMAL": 5,
        "LOW": 8,
        "VERY_LOW": 10,
    }


@pytest.mark.parametrize(
    ("exc", "error_class"),
    [
        (RateLimitError("throttled", retry_after=3), ErrorClass.RATE_LIMITED),
        (RateLimitError(), ErrorClass.RATE_LIMITED),
        (TransientError("blip"), ErrorClass.TRANSIENT),
        (NetworkError("reset"), ErrorClass.TRANSIENT),
        (AuthenticationError("401"), ErrorClass.AUTHENTICATION),
        (PermanentError("400"), ErrorClass.PERMANENT),
        (ValidationError("bad payload"), ErrorClass.PERMANENT),
        (NoProcessorError(), ErrorClass.PERMANENT),
        (JobError("failed"), ErrorClass.TRANSIENT),
    ],
)
def test_classify_job_errors(exc: BaseException, error_class: ErrorClass) -> None:
    assert classify(exc) is error_class


@pytest.mark.parametrize(
    "exc",
    [ValueError("x"), KeyError("k"), RuntimeError(), TimeoutError(), OSError("io"), ZeroDivisionError()],
)
def test_classify_any_other_exception_as_transient(exc: BaseException) -> None:
    assert classify(exc) is ErrorClass.TRANSIENT


def test_every_job_error_subclass_has_an_error_class() -> None:
    job_errors = [cls for cls in _exception_classes().values() if issubclass(cls, JobError)]
    assert len(job_errors) >= 8
    for cls in job_errors:
        assert isinstance(cls.error_class, ErrorClass)
        exc = cls(retry_after=1) if cls is RateLimitError else cls()
        assert classify(exc) is cls.error_class
        assert isinstance(exc, FleetboxError)


def test_exception_tree_docstring_names_every_exception() -> None:
    doc = errors.__doc__ or ""
    documented = set(re.findall(r"^\s*(?:[│├└─ ]*)([A-Z]\w+)\s", doc, re.MULTILINE))
    defined = set(_exception_classes())
    assert defined - documented == set(), "exceptions missing from the tree in fleetbox/errors.py"
    assert documented & defined == defined


def test_exception_tree_docstring_matches_the_hierarchy() -> None:
    # Each class is indented under its parent in the tree.
    doc = errors.__doc__ or ""
    depth: dict[str, int] = {}
    for line in doc.splitlines():
        match = re.match(r"^(\s*[│├└─ ]*)([A-Z]\w+)\b", line)
        if match and match.group(2) in _exception_classes():
            depth[match.group(2)] = len(match.group(1))
    for name, cls in _exception_classes().items():
        parent = cls.__mro__[1]
        if parent.__name__ in depth:
            assert depth[name] > depth[parent.__name__], name


def test_error_message_defaults_to_the_docstring() -> None:
    assert str(NoProcessorError()) == "No processor is configured for this queue."
    assert str(errors.SchemaNotReady()).endswith("run `fleetbox migrate`.")
    assert str(TransientError("custom")) == "custom"


def test_invalid_input_names_the_field() -> None:
    exc = errors.InvalidInput("must be 1 to 10", field="priority")
    assert exc.field == "priority"
    assert str(exc) == "priority: must be 1 to 10"
    unknown = errors.UnknownQueue("nope", ["sync", "webhooks"])
    assert isinstance(unknown, errors.InvalidInput)
    assert unknown.queue == "nope"
    assert unknown.field == "queue"
    assert "'nope'" in str(unknown)
    assert "sync, webhooks" in str(unknown)


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("-inf")])
def test_rate_limit_error_rejects_negative_retry_after(bad: float) -> None:
    with pytest.raises(ValueError, match="retry_after"):
        RateLimitError("throttled", retry_after=bad)


@pytest.mark.parametrize("good", [0, 0.5, 30, 3600.0])
def test_rate_limit_error_keeps_retry_after(good: float) -> None:
    exc = RateLimitError("throttled", retry_after=good)
    assert exc.retry_after == good
    assert str(exc) == "throttled"
    assert RateLimitError().retry_after is None
