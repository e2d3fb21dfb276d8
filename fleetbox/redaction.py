"""Payload redaction: which parts of a queue's payloads are masked wherever a payload leaves the
appliance, defined once.

A queue's policy is a list of JSON paths (``[queues.<name>] redact = ["$.body", "$.to[*]"]``).
The grammar is a small subset of JSONPath, enough to name a field wherever it sits:

- ``$`` the payload itself (every value in it is masked);
- ``.key`` a member of an object (a key of letters, digits, ``_`` and ``-``);
- ``['key']`` or ``["key"]`` any member name (``\\'``, ``\\"`` and ``\\\\`` escape);
- ``[*]`` every element of an array, or every member of an object;
- ``[N]`` the element N of an array (0 is the first).

Masking keeps keys and shapes: every value a path reaches, and every value inside it, becomes
``"***"``; objects keep their keys and arrays their lengths, so an operator still reads the
structure. A path that reaches nothing in a payload (a missing key, a string where an array was
expected) masks nothing there and is no error. Masking never raises on any stored payload: one
that could not be decoded is an :class:`~fleetbox.models.UndecodablePayload` (a reason and a
size, nothing of the payload) and is returned as it is; nesting of any depth is walked without
recursion.

The spec's Graph queues have built-in policies (:data:`DEFAULTS`); a queue's ``redact`` setting
replaces its default (``redact = []`` turns masking off for it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, TypeVar, cast

from fleetbox.models import UndecodablePayload

_Data = TypeVar("_Data")

#: What a masked value becomes.
MASK = "***"
#: The most paths one queue's policy may hold.
MAX_PATHS = 64
#: The longest path text.
MAX_PATH_CHARS = 256
#: The most steps (after ``$``) one path may take.
MAX_STEPS = 32

#: Built-in policies of the spec's Graph queues: the message content and secrets each carries.
#: Recipients, subjects, ids and file names stay visible: operators need them to tell jobs apart
#: and to diagnose delivery errors (add ``$.to[*]``, ``$.subject`` ... to a queue's ``redact``).
DEFAULTS: Mapping[str, tuple[str, ...]] = {
    "outlook-outbound": ("$.body", "$.attachments[*].contentBytes"),
    "teams-outbound": ("$.content",),
    "notifications": ("$.previewText", "$.templateParameters"),
    # a Graph change notification: clientState is the secret shared with Graph, encryptedContent
    # the resource data of a rich notification
    "webhooks": ("$.data.clientState", "$.data.encryptedContent"),
}


class PathError(ValueError):
    """A redaction path that cannot be read; the message names the path and what is wrong."""


class StepKind(Enum):
    """What one step of a path selects."""

    KEY = "key"
    INDEX = "index"
    EVERY = "every"


@dataclass(frozen=True, slots=True)
class Step:
    """One step: a member by name, an array element by index, or every child."""

    kind: StepKind
    key: str = ""
    index: int = 0


@dataclass(frozen=True, slots=True)
class Path:
    """A parsed redaction path: its text and its steps after ``$``."""

    text: str
    steps: tuple[Step, ...]


_NAME = re.compile(r"[A-Za-z0-9_-]+")
_INDEX = re.compile(r"\[(0|[1-9][0-9]{0,8})\]")


def parse_path(text: object) -> Path:
    """A path from its text (PathError naming the path and the fault when it is not one)."""
    if not isinstance(text, str):
        raise PathError(f"redaction path {text!r:.60}: must be a string like $.body")
    shown = f"redaction path {text!r:.80}"
    if len(text) > MAX_PATH_CHARS:
        raise PathError(f"{shown}: longer than {MAX_PATH_CHARS} characters")
    if not text.startswith("$"):
        raise PathError(f"{shown}: must start with $ (the payload), e.g. $.body")
    steps: list[Step] = []
    at = 1
    while at < len(text):
        step, at = _step(text, at, shown)
        steps.append(step)
        if len(steps) > MAX_STEPS:
            raise PathError(f"{shown}: more than {MAX_STEPS} steps")
    return Path(text, tuple(steps))


def _step(text: str, at: int, shown: str) -> tuple[Step, int]:
    char = text[at]
    if char == ".":
        name = _NAME.match(text, at + 1)
        if name is None:
            raise PathError(
                f"{shown}: expected a key of letters, digits, _ or - after '.' at position {at}; "
                "write other names as ['name']"
            )
        return Step(StepKind.KEY, key=name.group()), name.end()
    if char != "[":
        raise PathError(f"{shown}: unexpected {char!r} at position {at}; expected .key, ['key'], [*] or [N]")
    if text.startswith("[*]", at):
        return Step(StepKind.EVERY), at + 3
    index = _INDEX.match(text, at)
    if index is not None:
        return Step(StepKind.INDEX, index=int(index.group(1))), index.end()
    if at + 1 < len(text) and text[at + 1] in "'\"":
        return _quoted(text, at, shown)
    raise PathError(f"{shown}: bad bracket at position {at}; expected ['key'], [*] or [N] (N from 0)")


def _quoted(text: str, at: int, shown: str) -> tuple[Step, int]:
    quote = text[at + 1]
    out: list[str] = []
    i = at + 2
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in ("\\", quote):
            out.append(text[i + 1])
            i += 2
            continue
        if char == quote:
            if text[i + 1 : i + 2] != "]":
                raise PathError(f"{shown}: expected ] after the quoted key at position {i + 1}")
            return Step(StepKind.KEY, key="".join(out)), i + 2
        out.append(char)
        i += 1
    raise PathError(f"{shown}: the quoted key opened at position {at} is not closed")


def check_paths(paths: object) -> tuple[str, ...]:
    """A queue's ``redact`` setting, every path checked (PathError naming the first bad one)."""
    if not isinstance(paths, list | tuple):
        raise PathError('redact must be a list of JSON paths, e.g. ["$.body", "$.to[*]"]')
    if len(paths) > MAX_PATHS:
        raise PathError(f"redact holds {len(paths)} paths; at most {MAX_PATHS}")
    return tuple(parse_path(p).text for p in paths)


# -- masking --------------------------------------------------------------------------------


def _blank(node: object) -> object:
    """``node`` with every value in it masked, keys and array lengths kept (no recursion)."""
    if isinstance(node, dict):
        root: dict[Any, Any] | list[Any] = {}
    elif isinstance(node, list):
        root = [MASK] * len(node)
    else:
        return MASK
    todo: list[tuple[object, dict[Any, Any] | list[Any]]] = [(node, root)]
    while todo:
        source, target = todo.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source) if isinstance(source, list) else ()
        for key, value in items:
            if isinstance(value, dict):
                child: dict[Any, Any] | list[Any] | str = {}
            elif isinstance(value, list):
                child = [MASK] * len(value)
            else:
                child = MASK
            target[key] = child
            if not isinstance(child, str):
                todo.append((value, child))
    return root


def _apply(node: object, steps: tuple[Step, ...], at: int) -> object:
    """``node`` with what ``steps[at:]`` reach masked; the same object when nothing was (the
    recursion is as deep as the path, at most MAX_STEPS)."""
    if at == len(steps):
        return _blank(node)
    step = steps[at]
    if step.kind is StepKind.KEY:
        if not isinstance(node, dict) or step.key not in node:
            return node
        changed = _apply(node[step.key], steps, at + 1)
        return node if changed is node[step.key] else {**node, step.key: changed}
    if step.kind is StepKind.INDEX:
        if not isinstance(node, list) or step.index >= len(node):
            return node
        changed = _apply(node[step.index], steps, at + 1)
        if changed is node[step.index]:
            return node
        copy = list(node)
        copy[step.index] = changed
        return copy
    if isinstance(node, dict):
        masked = {k: _apply(v, steps, at + 1) for k, v in node.items()}
        return node if all(masked[k] is v for k, v in node.items()) else masked
    if isinstance(node, list):
        items = [_apply(v, steps, at + 1) for v in node]
        return node if all(a is b for a, b in zip(items, node, strict=True)) else items
    return node


def mask(data: object, paths: Iterable[Path]) -> object:
    """``data`` with every value the paths reach masked; ``data`` itself is never changed (the
    result shares what was not masked). A payload that could not be decoded is returned as it
    is: its marker holds a reason and a size, nothing of the payload."""
    if isinstance(data, UndecodablePayload):
        return data
    for path in paths:
        data = _apply(data, path.steps, 0)
    return data


@dataclass(frozen=True, slots=True)
class Redaction:
    """Every queue's redaction policy: the built-in defaults with the configured ones over them.

    Build one with :meth:`of` from the ``redact`` settings (queue name to paths, None: not set).
    """

    policies: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, configured: Mapping[str, Sequence[str] | None] | None = None) -> Redaction:
        """The defaults, each replaced by a queue's configured list where one is set."""
        texts: dict[str, Sequence[str]] = dict(DEFAULTS)
        for queue, paths in (configured or {}).items():
            if paths is not None:
                texts[queue] = paths
        return cls({q: tuple(parse_path(p) for p in ps) for q, ps in texts.items() if ps})

    def paths(self, queue: str) -> tuple[str, ...]:
        """The texts of a queue's paths (empty: nothing of its payloads is masked)."""
        return tuple(p.text for p in self.policies.get(queue, ()))

    def mask(self, queue: str, data: _Data) -> _Data:
        """A payload of ``queue`` as it may leave the appliance (an object stays an object, an
        array an array: masking keeps shapes)."""
        policy = self.policies.get(queue)
        return data if not policy else cast(_Data, mask(data, policy))

    def masked_key(self, queue: str | None, key: str) -> str | None:
        """The queue whose policy masks the payload's top-level ``key`` (or all of it), if one
        does: of ``queue``, or of any queue when None. A payload search on such a key would tell
        a masked value by trying guesses, so it is refused."""
        queues = [queue] if queue is not None else sorted(self.policies)
        for name in queues:
            for path in self.policies.get(name, ()):
                first = path.steps[0] if path.steps else None
                if first is None or first.kind is StepKind.EVERY or (first.kind is StepKind.KEY and first.key == key):
                    return name
        return None
