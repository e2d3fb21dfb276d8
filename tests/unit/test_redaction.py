"""The redaction path module: what each path form reaches, what masking keeps (keys, shapes, the
input itself), clear errors for bad paths and configs, and that masking never raises on any JSON
value, undecodable payload markers and deep nesting included."""

from __future__ import annotations

import copy
import json
from pathlib import Path as FilePath
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetbox.config import load_settings, redaction_of
from fleetbox.errors import ConfigError
from fleetbox.models import UndecodablePayload
from fleetbox.redaction import (
    DEFAULTS,
    MASK,
    MAX_PATHS,
    MAX_STEPS,
    PathError,
    Redaction,
    Step,
    StepKind,
    check_paths,
    mask,
    parse_path,
)

MAIL = {
    "to": ["ana@example.com", "bo@example.com"],
    "subject": "hello",
    "body": "the secret body",
    "attachments": [{"name": "a.txt", "contentBytes": "c2VjcmV0"}],
    "message": {"toRecipients": [{"emailAddress": {"address": "x@example.com", "name": "X"}}]},
}


def masked(data: object, *paths: str) -> object:
    return mask(data, [parse_path(p) for p in paths])


# -- parsing ----------------------------------------------------------------------------------


def test_each_step_form_parses() -> None:
    path = parse_path("$.message['to Recipients'][*][0][\"it's\"].a_b-c")
    assert path.steps == (
        Step(StepKind.KEY, key="message"),
        Step(StepKind.KEY, key="to Recipients"),
        Step(StepKind.EVERY),
        Step(StepKind.INDEX, index=0),
        Step(StepKind.KEY, key="it's"),
        Step(StepKind.KEY, key="a_b-c"),
    )
    assert parse_path("$").steps == ()
    assert parse_path(r"$['a\'b\\c']").steps == (Step(StepKind.KEY, key="a'b\\c"),)
    assert parse_path("$['']").steps == (Step(StepKind.KEY, key=""),)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("body", "must start with $"),
        ("", "must start with $"),
        ("$.", "expected a key"),
        ("$..body", "expected a key"),
        ("$.a b", "unexpected ' '"),
        ("$body", "unexpected 'b'"),
        ("$.to[", "bad bracket"),
        ("$.to[-1]", "bad bracket"),
        ("$.to[01]", "bad bracket"),
        ("$.to[1:2]", "bad bracket"),
        ("$['open", "not closed"),
        ("$['a'x", "expected ]"),
        ("$.*", "expected a key"),
        ("$" + ".a" * (MAX_STEPS + 1), "steps"),
        ("$." + "a" * 300, "longer than"),
    ],
)
def test_a_bad_path_is_named_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(PathError) as caught:
        parse_path(text)
    assert says in str(caught.value)
    assert f"redaction path {text[:20]!r}"[:-1] in str(caught.value)


def test_a_path_list_is_checked_whole() -> None:
    assert check_paths(["$.body", "$.to[*]"]) == ("$.body", "$.to[*]")
    with pytest.raises(PathError, match="must be a list"):
        check_paths("$.body")
    with pytest.raises(PathError, match=r"'\$\.to\['"):
        check_paths(["$.body", "$.to["])
    with pytest.raises(PathError, match=f"at most {MAX_PATHS}"):
        check_paths(["$.a"] * (MAX_PATHS + 1))
    with pytest.raises(PathError, match="must be a string"):
        check_paths([3])


# -- masking ----------------------------------------------------------------------------------


def test_masking_keeps_keys_and_shapes() -> None:
    before = copy.deepcopy(MAIL)
    out = masked(MAIL, "$.body", "$.to[*]", "$.message.toRecipients[*].emailAddress.address")
    assert out == {
        **MAIL,
        "to": [MASK, MASK],
        "body": MASK,
        "message": {"toRecipients": [{"emailAddress": {"address": MASK, "name": "X"}}]},
    }
    assert before == MAIL  # the input is never changed


def test_a_container_is_masked_value_by_value() -> None:
    assert masked(MAIL, "$.attachments") == {**MAIL, "attachments": [{"name": MASK, "contentBytes": MASK}]}
    assert masked({"a": {"b": [1, None, True, {"c": 2.5}], "d": []}}, "$") == {
        "a": {"b": [MASK, MASK, MASK, {"c": MASK}], "d": []}
    }
    assert masked("plain", "$") == MASK


def test_index_and_every_member() -> None:
    assert masked(MAIL, "$.to[1]")["to"] == ["ana@example.com", MASK]  # type: ignore[index]
    assert masked({"m": {"x": 1, "y": {"z": 2}}}, "$.m[*]") == {"m": {"x": MASK, "y": {"z": MASK}}}
    assert masked({"a b": 1, "c": 2}, "$['a b']") == {"a b": MASK, "c": 2}


def test_a_path_that_reaches_nothing_changes_nothing() -> None:
    for path in ("$.missing", "$.to[5]", "$.subject[0]", "$.subject.x", "$.to.x", "$.to[*].x", "$.body[*]"):
        assert masked(MAIL, path) is MAIL
    assert masked([1, 2], "$.a") == [1, 2]
    assert masked(None, "$.a") is None


def test_an_undecodable_payload_stays_a_marker() -> None:
    marker = UndecodablePayload(size=10_000_000, reason="nested too deeply")
    assert masked(marker, "$", "$.body", "$[*]") is marker


def test_deep_nesting_is_masked_without_recursion() -> None:
    deep: Any = "secret"
    for _ in range(100_000):
        deep = {"a": [deep]}
    out = masked({"body": deep}, "$.body")
    assert "secret" not in repr_safely(out)


def repr_safely(value: object) -> str:
    """Every string in a value, walked without recursion."""
    seen: list[str] = []
    todo = [value]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
            seen.extend(str(k) for k in item)
        elif isinstance(item, list):
            todo.extend(item)
        else:
            seen.append(str(item))
    return " ".join(seen)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=30,
)
KEYS = st.sampled_from(["a", "b", "body", "to", "", "a b", "it's"])
STEP = st.one_of(
    KEYS.map(lambda k: f"['{k}']".replace("'s", "\\'s")),
    st.sampled_from([".a", ".b", ".body", ".to"]),
    st.just("[*]"),
    st.integers(0, 3).map(lambda n: f"[{n}]"),
)
PATHS = st.lists(st.lists(STEP, max_size=4).map(lambda steps: "$" + "".join(steps)), max_size=4)


@settings(max_examples=400, deadline=None)
@given(JSON, PATHS)
def test_masking_never_raises_and_only_masks(data: object, paths: list[str]) -> None:
    before = json.dumps(data, sort_keys=True)
    out = masked(data, *paths)
    assert json.dumps(data, sort_keys=True) == before  # the input is untouched
    json.dumps(out)  # still JSON
    assert _same_shape(data, out)


def _same_shape(a: object, b: object) -> bool:
    """``b`` is ``a`` with some values replaced by MASK: same keys, same lengths."""
    if b == MASK and not isinstance(a, dict | list):
        return True
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_shape(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_same_shape(x, y) for x, y in zip(a, b, strict=True))
    return a == b


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_any_text_parses_or_is_refused_clearly(text: str) -> None:
    try:
        parse_path(text)
    except PathError as exc:
        assert str(exc).startswith("redaction path ")


# -- policies ---------------------------------------------------------------------------------


def test_the_graph_queues_have_defaults_and_a_setting_replaces_them() -> None:
    default = Redaction.of()
    assert default.mask("outlook-outbound", MAIL) == {
        **MAIL,
        "body": MASK,
        "attachments": [{"name": "a.txt", "contentBytes": MASK}],
    }
    assert default.mask("teams-outbound", {"chatId": "c", "content": "hi"}) == {"chatId": "c", "content": MASK}
    assert default.mask("work", MAIL) is MAIL
    configured = Redaction.of({"outlook-outbound": ["$.to[*]"], "teams-outbound": [], "work": ["$.body"]})
    assert configured.mask("outlook-outbound", MAIL)["body"] == "the secret body"  # type: ignore[index]
    assert configured.mask("outlook-outbound", MAIL)["to"] == [MASK, MASK]  # type: ignore[index]
    assert configured.mask("teams-outbound", {"content": "hi"}) == {"content": "hi"}
    assert configured.paths("work") == ("$.body",)
    assert set(Redaction.of({"x": None}).policies) == set(DEFAULTS)


def test_a_search_key_under_a_masked_path_is_named() -> None:
    policy = Redaction.of({"work": ["$.body.text", "$.to[*]"], "all": ["$"]})
    assert policy.masked_key("work", "body") == "work"
    assert policy.masked_key("work", "to") == "work"
    assert policy.masked_key("work", "userId") is None
    assert policy.masked_key("all", "anything") == "all"
    assert policy.masked_key(None, "body") == "all"  # any queue: every policy counts
    assert Redaction.of({}).masked_key(None, "userId") is None


def test_the_config_file_validates_paths_at_load(tmp_path: FilePath) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[queues.work]\nredact = ["$.body", "$.to[*]"]\n')
    loaded = load_settings(good, environ={})
    assert redaction_of(loaded.settings).paths("work") == ("$.body", "$.to[*]")
    bad = tmp_path / "bad.toml"
    bad.write_text('[queues.work]\nredact = ["$.body", "$.to[x]"]\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(bad, environ={})
    assert "queues.work.redact" in str(caught.value)
    assert "'$.to[x]'" in str(caught.value)
