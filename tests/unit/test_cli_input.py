"""Arbitrary command-line input: every value the CLI reads ends in a result or a clear error
(ConfigError, or argparse's exit 2), never another exception, and no DSN secret survives redaction
(of a message or of a log line)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import string
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fleetbox.cli import _parser
from fleetbox.config import load_settings, parse_assignment, redact_dsn
from fleetbox.errors import ConfigError
from fleetbox.logs import JsonFormatter, TextFormatter

TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=200)
#: DSN-looking text: the parts a malformed DSN is made of, in any order
DSN_PARTS = st.lists(
    st.sampled_from(
        [
            "postgresql://",
            "postgres://",
            "u",
            ":",
            "@",
            "[",
            "]",
            "::1",
            "h",
            "/",
            "db",
            "?",
            "&",
            "=",
            "port",
            "password",
            "99999",
            "0",
            "-1",
            "5432",
            ",",
            "%",
            "%zz",
            " ",
            "host=",
            "'",
        ]
    ),
    max_size=14,
).map("".join)


@pytest.fixture(autouse=True)
def _no_cwd_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./fleetbox.toml is picked up


@settings(max_examples=400, deadline=None)
@given(st.one_of(TEXT, DSN_PARTS))
def test_any_dsn_is_accepted_or_a_config_error(dsn: str) -> None:
    try:
        loaded = load_settings(None, {"database": {"dsn": dsn}}, environ={})
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("invalid configuration: database.dsn: ") and "\n" not in message
        return
    assert loaded.settings.database.resolved_dsn() == dsn


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, st.builds(lambda k, v: f"{k}={v}", TEXT, TEXT)))
@example("pools.high=" + "[" * 5000)
@example("a." * 3000 + "b=1")
@example("queues.x.retry.transient.max_retries=" + "{a=" * 2000)
def test_any_set_assignment_is_applied_or_a_config_error(text: str) -> None:
    with contextlib.suppress(ConfigError):
        load_settings(None, parse_assignment(text), environ={})


@pytest.mark.parametrize(
    "environ",
    [{"FLEETBOX_POOLS": '{"high":' + "[" * 5000}, {"FLEETBOX_QUEUES": '{"a":' * 5000}],
    ids=["array", "object"],
)
def test_deep_json_in_the_environment_is_a_config_error(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(None, None, environ=environ)


def test_a_deep_or_endless_config_file_is_a_config_error(tmp_path: Path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 5000, encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_settings(deep, None, environ={})
    with pytest.raises(ConfigError, match="larger than 4194304 bytes"):
        load_settings("/dev/zero", None, environ={})


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [
            ["job"],
            ["retry"],
            ["dead", "retry"],
            ["jobs", "q", "--state"],
            ["dead", "list", "--reviewed"],
            ["dead", "list", "--limit"],
            ["bench", "--jobs"],
            ["enqueue", "q", "--data", "{}", "--priority"],
        ]
    ),
    st.one_of(TEXT, st.integers().map(str)),
)
def test_any_command_line_value_parses_or_exits_2(command: list[str], value: str) -> None:
    with contextlib.redirect_stderr(io.StringIO()) as err:
        try:
            _parser().parse_args([*command, value])
        except SystemExit as exc:
            assert exc.code == 2
            assert "error:" in err.getvalue() and "Traceback" not in err.getvalue()


# The DSN text around a password ("postgresql://fleet@db/fleet?password=...&sslmode=require") is
# not secret: a password that is a piece of it (hypothesis found "passwo") would be "seen" in the
# redacted line without having leaked.
_DSN_WORDS = "postgresql://fleet:@db:5432/fleet?password=&sslmode=require sslpassword host=db user=fleet dbname=fleet x"
PASSWORD = st.text(alphabet=string.ascii_letters + string.digits + "!$()*+;@~", min_size=6, max_size=30).filter(
    lambda password: password.replace(";", "") not in _DSN_WORDS
)


@settings(max_examples=300, deadline=None)
@given(PASSWORD, st.sampled_from(["userinfo", "userinfo-raw", "query", "sslpassword", "keyvalue", "quoted"]), TEXT)
def test_no_dsn_password_survives_redaction(password: str, form: str, around: str) -> None:
    dsn = {
        "userinfo": f"postgresql://fleet:{quote(password, safe='')}@db:5432/fleet",
        "userinfo-raw": f"postgresql://fleet:{password}@db:5432/fleet",
        "query": f"postgresql://fleet@db/fleet?password={quote(password, safe='')}&sslmode=require",
        "sslpassword": f"postgresql://fleet@db/fleet?sslpassword={quote(password, safe='')}",
        "keyvalue": f"host=db user=fleet password={password.replace(';', '')} dbname=fleet",
        "quoted": f"host=db password='{password} x' dbname=fleet",
    }[form]
    secret = quote(password, safe="") if form in ("userinfo", "query", "sslpassword") else password.replace(";", "")
    line = f"{around} {dsn} {around}"
    assert secret not in redact_dsn(line).replace(around, "")


@pytest.mark.parametrize("formatter", [JsonFormatter(), TextFormatter()], ids=["json", "text"])
def test_log_lines_never_carry_a_dsn_secret(formatter: logging.Formatter) -> None:
    secret = "logsecret-7d1f"
    try:
        raise ConnectionError(f"cannot reach postgresql://fleet:{secret}@db/fleet")
    except ConnectionError:
        record = logging.getLogger("fleetbox.test").makeRecord(
            "fleetbox.test",
            logging.ERROR,
            __file__,
            1,
            "connecting to %s failed",
            (f"postgresql://fleet@db/fleet?password={secret}",),
            sys.exc_info(),
            extra={"event": "db_down", "dsn": f"host=db password={secret}", "other": f"sslpassword={secret}"},
        )
    line = formatter.format(record)
    assert secret not in line
    assert "postgresql://fleet@db/fleet?password=***" in line and "ConnectionError" in line


def test_an_uncollected_background_error_is_one_log_line_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    from fleetbox.cli import _loop_exception

    loop = asyncio.new_event_loop()
    try:
        error = ConnectionRefusedError("connect call failed ('127.0.0.1', 5432)")
        with caplog.at_level(logging.INFO, logger="fleetbox"):
            _loop_exception(loop, {"message": "Task exception was never retrieved", "exception": error})
            _loop_exception(loop, {"message": "Unclosed connection"})
        first, second = caplog.records
        assert first.getMessage() == f"background error: ConnectionRefusedError: {error}" and first.exc_info is None
        assert second.getMessage() == "background error: Unclosed connection"
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="fleetbox"):
            _loop_exception(loop, {"message": "x", "exception": error})
        assert caplog.records[0].exc_info is not None  # the traceback, when asked for with -vv
    finally:
        loop.close()
