"""Settings: precedence of the layers, where each value came from, secrets, and clear errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fleetbox.config import (
    LoadedSettings,
    Settings,
    config_file_notes,
    effective_values,
    load_settings,
    parse_assignment,
    redact_dsn,
)
from fleetbox.errors import ConfigError
from fleetbox.models import Job, Tier
from fleetbox.worker.registry import build_registry, import_handler

SECRET = "hunter2-s3cret"


async def sample_handler(job: Job) -> None:
    """An async handler importable by path (tests.unit.test_config:sample_handler)."""


def sync_handler(job: Job) -> None:
    """Not async: rejected as a handler."""


NOT_CALLABLE = 42


@pytest.fixture(autouse=True)
def _no_cwd_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings looks for ./fleetbox.toml when no file is given: start from an empty directory.
    monkeypatch.chdir(tmp_path)


def write(tmp_path: Path, text: str, name: str = "fleetbox-test.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def values(loaded: LoadedSettings) -> dict[str, tuple[str, str]]:
    return {key: (value, source) for key, value, source in effective_values(loaded)}


# -- precedence -----------------------------------------------------------------------------


def test_defaults_when_nothing_is_set() -> None:
    loaded = load_settings(None, None, environ={})
    assert loaded.config_file is None
    assert loaded.settings.pools.high == 20
    assert loaded.settings.pools.medium == 10
    assert loaded.settings.pools.low == 5
    assert loaded.settings.retention.archive_hours == 24
    assert loaded.settings.retention.delete_days == 7
    assert loaded.settings.monitor.interval_seconds == 60
    shown = values(loaded)
    assert shown["pools.high"] == ("20", "default")
    assert shown["database.password"] == ("(not set)", "default")


def test_each_layer_wins_over_the_ones_below(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [pools]
        high = 11
        medium = 12
        low = 13
        [database]
        host = "file-host"
        port = 1111
        name = "file-db"
        user = "file-user"
        [monitor]
        interval_seconds = 11
        """,
    )
    environ = {
        # spec names: above the file
        "DB_HOST": "spec-host",
        "DB_PORT": "2222",
        "DB_NAME": "spec-db",
        "QUEUE_MONITOR_INTERVAL": "22",
        # FLEETBOX_ names: above the spec names
        "FLEETBOX_DATABASE__PORT": "3333",
        "FLEETBOX_POOLS__MEDIUM": "32",
        "FLEETBOX_POOLS__HIGH": "31",
    }
    loaded = load_settings(path, {"pools": {"high": 41}}, environ=environ)
    s = loaded.settings
    assert s.pools.high == 41  # flag > FLEETBOX_ env > file
    assert s.pools.medium == 32  # FLEETBOX_ env > file
    assert s.pools.low == 13  # file > default
    assert s.database.port == 3333  # FLEETBOX_ env > spec env > file
    assert s.database.host == "spec-host"  # spec env > file
    assert s.database.name == "spec-db"
    assert s.database.user == "file-user"
    assert s.database.schema_name == "fleetbox"  # default
    assert s.monitor.interval_seconds == 22

    shown = values(loaded)
    assert shown["pools.high"] == ("41", "flag")
    assert shown["pools.medium"] == ("32", "environment")
    assert shown["pools.low"] == ("13", f"file {path}")
    assert shown["database.port"] == ("3333", "environment")
    assert shown["database.host"] == ("spec-host", "environment (spec name)")
    assert shown["database.user"] == ("file-user", f"file {path}")
    assert shown["database.schema_name"] == ("fleetbox", "default")
    assert shown["monitor.interval_seconds"] == ("22.0", "environment (spec name)")
    assert loaded.config_file == path


@pytest.mark.parametrize(
    ("var", "value", "key", "expected"),
    [
        ("DB_HOST", "db.example", "database.host", "db.example"),
        ("DB_PORT", "6543", "database.port", 6543),
        ("DB_NAME", "fleetdb", "database.name", "fleetdb"),
        ("DB_USER", "fleetadmin", "database.user", "fleetadmin"),
        ("QUEUE_ARCHIVE_HOURS", "12", "retention.archive_hours", 12.0),
        ("QUEUE_DELETE_DAYS", "3", "retention.delete_days", 3.0),
        ("QUEUE_MONITOR_INTERVAL", "30", "monitor.interval_seconds", 30.0),
    ],
)
def test_spec_environment_names(var: str, value: str, key: str, expected: object) -> None:
    loaded = load_settings(None, None, environ={var: value})
    section, name = key.split(".")
    assert getattr(getattr(loaded.settings, section), name) == expected
    assert values(loaded)[key][1] == "environment (spec name)"


def test_spec_secret_names_are_read_and_redacted() -> None:
    environ = {
        "DATABASE_URL": f"postgresql://fleet:{SECRET}@db.example:5432/fleetdb",
        "DB_PASSWORD": SECRET,
        "ADMIN_KEY": SECRET + "-admin",
    }
    loaded = load_settings(None, None, environ=environ)
    s = loaded.settings
    assert s.database.dsn is not None
    assert s.database.dsn.get_secret_value() == environ["DATABASE_URL"]
    assert s.database.password is not None
    assert s.database.password.get_secret_value() == SECRET
    assert s.admin.key is not None
    assert s.admin.key.get_secret_value() == SECRET + "-admin"
    assert s.database.resolved_dsn() == environ["DATABASE_URL"]  # the DSN wins over host parts
    shown = values(loaded)
    for key in ("database.dsn", "database.password", "admin.key"):
        assert shown[key] == ("(set, redacted)", "environment (spec name)")
    assert SECRET not in repr(effective_values(loaded))
    assert SECRET not in repr(s)


def test_fleetbox_variable_beats_the_spec_name_for_the_same_key() -> None:
    loaded = load_settings(None, None, environ={"ADMIN_KEY": "spec-key", "FLEETBOX_ADMIN__KEY": "fleetbox-key"})
    assert loaded.settings.admin.key is not None
    assert loaded.settings.admin.key.get_secret_value() == "fleetbox-key"
    assert values(loaded)["admin.key"] == ("(set, redacted)", "environment")


def test_empty_spec_variable_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nhost = "file-host"\n')
    loaded = load_settings(path, None, environ={"DB_HOST": ""})
    assert loaded.settings.database.host == "file-host"


def test_config_file_from_fleetbox_config_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "[pools]\nlow = 3\n", name="elsewhere.toml")
    loaded = load_settings(None, None, environ={"FLEETBOX_CONFIG": str(path)})
    assert loaded.settings.pools.low == 3
    assert loaded.config_file == path


def test_fleetbox_toml_in_the_working_directory_is_found(tmp_path: Path) -> None:
    write(tmp_path, "[pools]\nlow = 4\n", name="fleetbox.toml")
    loaded = load_settings(None, None, environ={})
    assert loaded.settings.pools.low == 4
    assert loaded.config_file == tmp_path / "fleetbox.toml"  # in full: which directory matters
    assert loaded.config_origin == "the working directory"
    (note,) = config_file_notes(loaded)
    assert f"using the config file {tmp_path / 'fleetbox.toml'} (found in the working directory" in note


def test_a_config_file_holding_secrets_readable_by_others_gets_a_warning(tmp_path: Path) -> None:
    path = write(
        tmp_path, f'[database]\npassword = "{SECRET}"\nhost = "db"\n[admin]\nkey = "{SECRET}"\n', name="s.toml"
    )
    path.chmod(0o644)
    (warning,) = config_file_notes(load_settings(path, None, environ={}))
    assert f"{path} holds secrets (admin.key, database.password)" in warning
    assert "mode 0644" in warning and f"chmod 600 {path}" in warning and SECRET not in warning
    path.chmod(0o600)
    assert config_file_notes(load_settings(path, None, environ={})) == []
    # a readable file without secrets is fine; so are secrets that come from the environment
    plain = write(tmp_path, "[pools]\nlow = 2\n", name="plain.toml")
    plain.chmod(0o644)
    assert config_file_notes(load_settings(plain, None, environ={"DB_PASSWORD": SECRET, "DB_HOST": "db"})) == []


def test_nested_queue_settings_from_environment() -> None:
    loaded = load_settings(
        None,
        None,
        environ={
            "FLEETBOX_QUEUES__REPORTS__TIER": "low",
            "FLEETBOX_QUEUES__REPORTS__MAX_ATTEMPTS": "4",
        },
    )
    assert loaded.settings.queues["reports"].tier == "low"
    assert loaded.settings.queues["reports"].max_attempts == 4
    assert values(loaded)["queues.reports.tier"] == ("low", "environment")


def test_a_retry_rule_can_be_set_in_part(tmp_path: Path) -> None:
    path = write(tmp_path, "[retry.rate_limited]\nbase_seconds = 5\n")
    loaded = load_settings(path, None, environ={"FLEETBOX_RETRY__TRANSIENT__MAX_RETRIES": "2"})
    transient = loaded.settings.retry.transient
    assert (transient.max_retries, transient.base_seconds, transient.max_seconds) == (2, 1, 16)
    rate = loaded.settings.retry.rate_limited
    assert (rate.max_retries, rate.base_seconds, rate.max_seconds) == (5, 5, 300)
    shown = values(loaded)
    assert shown["retry.transient.max_retries"] == ("2", "environment")
    assert shown["retry.rate_limited.base_seconds"] == ("5.0", f"file {path}")
    assert shown["retry.transient.base_seconds"] == ("1.0", "default")


# -- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "flags", "key", "source"),
    [
        ({"FLEETBOX_POOLS__HIGH": "lots"}, None, "pools.high", "from environment"),
        ({"FLEETBOX_POOLS__HIGH": "0"}, None, "pools.high", "from environment"),
        ({}, {"pools": {"high": -1}}, "pools.high", "from flag"),
        ({"DB_PORT": "not-a-port"}, None, "database.port", "from environment (spec name)"),
        ({"DB_PORT": "70000"}, None, "database.port", "from environment (spec name)"),
        ({"QUEUE_ARCHIVE_HOURS": "-1"}, None, "retention.archive_hours", "(spec name)"),
        ({"QUEUE_DELETE_DAYS": "soon"}, None, "retention.delete_days", "(spec name)"),
        ({"QUEUE_MONITOR_INTERVAL": "0"}, None, "monitor.interval_seconds", "(spec name)"),
        ({}, {"appliance": {"log_level": "LOUD"}}, "appliance.log_level", "from flag"),
        ({}, {"database": {"schema_name": "Bad-Schema"}}, "database.schema_name", "from flag"),
    ],
)
def test_bad_value_names_key_and_source(
    environ: dict[str, str], flags: dict[str, object] | None, key: str, source: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, flags, environ=environ)
    assert key in str(err.value)
    assert source in str(err.value)


def test_bad_value_in_file_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[pools]\nhigh = 'many'\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, None, environ={})
    assert "pools.high" in str(err.value)
    assert f"file {path}" in str(err.value)


def test_a_flag_fixes_a_bad_file_value(tmp_path: Path) -> None:
    path = write(tmp_path, "[pools]\nhigh = 'many'\n")
    loaded = load_settings(path, {"pools": {"high": 8}}, environ={})
    assert loaded.settings.pools.high == 8


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[bogus]\nx = 1\n", "bogus"),
        ("[pools]\nhgh = 1\n", "pools.hgh"),
        ("[database]\npasword = 'x'\n", "database.pasword"),
        ("[queues.reports]\ntier = 'low'\ncolour = 'red'\n", "queues.reports.colour"),
        ("[retry.transient]\nmax_retires = 3\n", "retry.transient.max_retires"),
    ],
)
def test_unknown_keys_in_file_are_rejected(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, None, environ={})
    assert key in str(err.value)
    assert "Extra inputs are not permitted" in str(err.value)


def test_unknown_keys_in_environment_and_flags_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"pools\.bogus.*from environment"):
        load_settings(None, None, environ={"FLEETBOX_POOLS__BOGUS": "1"})
    with pytest.raises(ConfigError, match="FLEETBOX_POLS__HIGH"):
        load_settings(None, None, environ={"FLEETBOX_POLS__HIGH": "40"})
    with pytest.raises(ConfigError, match=r"appliance\.colour.*from flag"):
        load_settings(None, {"appliance": {"colour": "red"}}, environ={})


def test_unrelated_fleetbox_variables_are_left_alone() -> None:
    loaded = load_settings(None, None, environ={"FLEETBOX_TEST_DSN": "postgresql://x@y/z"})
    assert loaded.settings.database.dsn is None


def test_invalid_toml_is_a_clear_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[pools\nhigh = 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path, None, environ={})
    message = str(err.value)
    assert str(path) in message
    assert "not valid TOML" in message
    assert "line 1" in message


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist") as err:
        load_settings(missing, None, environ={})
    assert str(missing) in str(err.value)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(None, None, environ={"FLEETBOX_CONFIG": str(missing)})


def test_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(tmp_path, None, environ={})  # a directory
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe[pools]")
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings(binary, None, environ={})


def test_whole_section_variable_that_is_not_json_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="database") as err:
        load_settings(None, None, environ={"FLEETBOX_DATABASE": SECRET})
    assert SECRET not in str(err.value)


def test_heartbeat_must_be_shorter_than_lease() -> None:
    for heartbeat in (30, 45):
        with pytest.raises(ConfigError, match="heartbeat_seconds must be shorter than lease_seconds"):
            load_settings(
                None,
                {"appliance": {"lease_seconds": 30, "heartbeat_seconds": heartbeat}},
                environ={},
            )
    loaded = load_settings(None, {"appliance": {"lease_seconds": 30, "heartbeat_seconds": 29}}, environ={})
    assert loaded.settings.appliance.heartbeat_seconds == 29


# -- secrets --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ",
    [
        {"DB_PASSWORD": SECRET},
        {"DATABASE_URL": f"postgresql://u:{SECRET}@h/db"},
        {"ADMIN_KEY": SECRET},
        {"FLEETBOX_DATABASE__PASSWORD": SECRET},
        {"FLEETBOX_DATABASE__DSN": f"postgresql://u:{SECRET}@h/db"},
        {"FLEETBOX_ADMIN__KEY": SECRET},
        {"FLEETBOX_ADMIN__READ_KEY": SECRET},
    ],
)
def test_secrets_never_shown_in_effective_values(environ: dict[str, str]) -> None:
    loaded = load_settings(None, None, environ=environ)
    rows = effective_values(loaded)
    assert all(SECRET not in value for _key, value, _source in rows)
    assert any(value == "(set, redacted)" for _key, value, _source in rows)
    assert SECRET not in str(rows)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f'[database]\npassword = ["{SECRET}"]\n', "database.password"),
        (f'[database]\ndsn = {{ url = "postgresql://u:{SECRET}@h/db" }}\n', "database.dsn"),
        (f'[admin]\nkey = ["{SECRET}"]\n', "admin.key"),
        (f'[admin]\nread_key = {{ v = "{SECRET}" }}\n', "admin.read_key"),
    ],
)
def test_invalid_secret_in_file_is_not_echoed(tmp_path: Path, text: str, key: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_settings(path, None, environ={})
    assert key in str(err.value)
    assert SECRET not in str(err.value)
    assert SECRET not in repr(err.value)


def test_invalid_secret_from_flag_or_json_env_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"database": {"password": [SECRET]}}, environ={})
    assert "database.password" in str(err.value)
    assert SECRET not in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(None, None, environ={"FLEETBOX_ADMIN": f'{{"key": ["{SECRET}"], "port": 1}}'})
    assert "admin.key" in str(err.value)
    assert SECRET not in str(err.value)
    with pytest.raises(ConfigError) as err:  # broken JSON holding a secret
        load_settings(None, None, environ={"FLEETBOX_DATABASE": f'{{"password": "{SECRET}"'})
    assert SECRET not in str(err.value)


def test_secret_next_to_a_bad_value_is_not_echoed() -> None:
    environ = {
        "DB_PASSWORD": SECRET,
        "DATABASE_URL": f"postgresql://u:{SECRET}@h/db",
        "ADMIN_KEY": SECRET,
        "DB_PORT": "nope",
    }
    with pytest.raises(ConfigError) as err:
        load_settings(None, None, environ=environ)
    assert "database.port" in str(err.value)
    assert SECRET not in str(err.value)


def test_invalid_toml_around_a_secret_is_not_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, f"[database]\npassword = {SECRET}\n")  # unquoted: not TOML
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_settings(path, None, environ={})
    assert SECRET not in str(err.value)


# -- --set and DSN redaction -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pools.high=40", {"pools": {"high": 40}}),
        ("appliance.lease_seconds=12.5", {"appliance": {"lease_seconds": 12.5}}),
        ("appliance.name=box-1", {"appliance": {"name": "box-1"}}),
        ('appliance.name="quoted name"', {"appliance": {"name": "quoted name"}}),
        ("admin.port = 9000", {"admin": {"port": 9000}}),
        ("admin.port=9000", {"admin": {"port": 9000}}),
        ("queues.reports.tier=low", {"queues": {"reports": {"tier": "low"}}}),
        ("appliance.log_format=text", {"appliance": {"log_format": "text"}}),
        ("database.dsn=postgresql://u:p@h/db", {"database": {"dsn": "postgresql://u:p@h/db"}}),
        ("x.flag=true", {"x": {"flag": True}}),
        ("x.list=[1, 2]", {"x": {"list": [1, 2]}}),
    ],
)
def test_parse_assignment(text: str, expected: dict[str, object]) -> None:
    assert parse_assignment(text) == expected


def test_parse_assignment_value_may_contain_equals() -> None:
    assert parse_assignment("database.dsn=postgresql://h/db?a=b") == {"database": {"dsn": "postgresql://h/db?a=b"}}


@pytest.mark.parametrize("text", ["pools.high", "=5", "pools..high=1", "pools high=1", ".x=1"])
def test_parse_assignment_rejects_malformed(text: str) -> None:
    with pytest.raises(ConfigError, match=r"expected section\.key=value"):
        parse_assignment(text)


def test_parse_assignment_error_does_not_echo_a_value() -> None:
    for text in (f"database.password {SECRET}", f"database.password:{SECRET}"):
        with pytest.raises(ConfigError) as err:
            parse_assignment(text)
        assert SECRET not in str(err.value)


def test_set_flags_feed_load_settings() -> None:
    flags = parse_assignment("pools.high=40")
    loaded = load_settings(None, flags, environ={"FLEETBOX_POOLS__HIGH": "30"})
    assert loaded.settings.pools.high == 40
    assert values(loaded)["pools.high"] == ("40", "flag")


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://fleet:pw@db:5432/fleetdb", "postgresql://fleet:***@db:5432/fleetdb"),
        ("postgresql://fleet@db/fleetdb", "postgresql://fleet@db/fleetdb"),
        ("postgresql://db/fleetdb", "postgresql://db/fleetdb"),
        ("postgresql://fleet:p%40ss@db/fleetdb?sslmode=require", "postgresql://fleet:***@db/fleetdb?sslmode=require"),
        ("postgresql://fleet:@db/fleetdb", "postgresql://fleet:@db/fleetdb"),  # an empty password hides nothing
    ],
)
def test_redact_dsn(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


def test_redact_dsn_never_returns_the_password() -> None:
    dsn = f"postgresql://fleet:{SECRET}@db:5432/fleetdb"
    assert SECRET not in redact_dsn(dsn)
    assert redact_dsn("http://[::1") == "http://[::1"  # nothing secret in it; never an exception


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://u@db/fleet?password={SECRET}",
        f"postgresql://u@db/fleet?sslmode=require&sslpassword={SECRET}&application_name=x",
        f"postgresql://u:{SECRET}@db/fleet?password={SECRET}",
        f"postgresql://u:p@{SECRET}@db/fleet",  # an unencoded @ in the password
        f"host=db user=u password={SECRET} dbname=fleet",
        f"host=db password='{SECRET} with spaces' sslpassword={SECRET}",
        f"could not connect to postgresql://u:{SECRET}@db:5432/x: refused",
        f'{{"dsn": "host=db password=\\"{SECRET}\\""}}',
        f"DB_PASSWORD={SECRET}",
        f"PASSWORD = {SECRET}",
    ],
)
def test_redact_dsn_hides_every_form_of_dsn_secret(text: str) -> None:
    redacted = redact_dsn(text)
    assert SECRET not in redacted and "***" in redacted


def test_redact_dsn_keeps_what_is_not_secret() -> None:
    dsn = "postgresql://u@db:5432/fleet?sslmode=require&passfile=/etc/fleetbox/pgpass&host=/run/pg"
    assert redact_dsn(dsn) == dsn


@pytest.mark.parametrize(
    ("dsn", "reason"),
    [
        ("postgresql://u@h:abc/db", "port must be a number from 1 to 65535, got 'abc'"),
        ("postgresql://u@h:99999/db", "port must be a number from 1 to 65535, got '99999'"),
        ("postgresql://u@h:0/db", "port must be a number from 1 to 65535"),
        ("postgresql://u@[::1/db", "malformed URL"),
        ("postgresql://u@::1:5432/db", "an IPv6 host must be written in brackets"),
        ("postgresql://u@[::1]x/db", "malformed IPv6 host"),
        ("postgresql://u@h/db?port=70000", "port must be a number from 1 to 65535"),
        ("postgresql://u@h/db?a=1&&=", "malformed query string"),
        (f"host=h user=u password={SECRET}", "must be a URL such as postgresql://"),
        ("mysql://u@h/db", "must be a URL such as postgresql://"),
    ],
)
def test_a_malformed_dsn_is_a_config_error_naming_what_is_wrong(dsn: str, reason: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"database": {"dsn": dsn}}, environ={})
    message = str(err.value)
    assert message.startswith("invalid configuration: database.dsn: ") and reason in message, message
    assert message.endswith("(from flag)") and "\n" not in message
    assert SECRET not in message


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:pw@db:5432/fleet",
        "postgres://db/fleet",
        "postgresql://u@[::1]:5432/fleet",
        "postgresql://u@h1:5432,h2:5433/fleet?target_session_attrs=read-write",
        "postgresql://postgres@/postgres?host=/tmp/fleetbox/pgdata",
    ],
)
def test_well_formed_dsns_are_accepted(dsn: str) -> None:
    assert load_settings(None, {"database": {"dsn": dsn}}, environ={}).settings.database.resolved_dsn() == dsn


def test_an_ipv6_db_host_is_bracketed_in_the_dsn() -> None:
    loaded = load_settings(None, None, environ={"DB_HOST": "::1", "DB_PORT": "6543"})
    assert loaded.settings.database.resolved_dsn() == "postgresql://postgres@[::1]:6543/postgres"


def test_resolved_dsn_from_parts_quotes_the_password() -> None:
    loaded = load_settings(
        None,
        None,
        environ={"DB_HOST": "db", "DB_USER": "fleet admin", "DB_PASSWORD": "p@ss:w/rd", "DB_NAME": "fleetdb"},
    )
    dsn = loaded.settings.database.resolved_dsn()
    assert dsn == "postgresql://fleet%20admin:p%40ss%3Aw%2Frd@db:5432/fleetdb"
    assert redact_dsn(dsn) == "postgresql://fleet%20admin:***@db:5432/fleetdb"


# -- queues and handlers --------------------------------------------------------------------


def test_spec_queues_and_the_alert_deliveries_are_registered_with_their_tiers() -> None:
    registry = build_registry(Settings())
    assert {name: spec.tier for name, spec in registry.items()} == {
        "teams-outbound": Tier.HIGH,
        "outlook-outbound": Tier.HIGH,
        "notifications": Tier.HIGH,
        "teams-inbound": Tier.MEDIUM,
        "outlook-inbound": Tier.MEDIUM,
        "webhooks": Tier.MEDIUM,
        "attachments": Tier.LOW,
        "sync": Tier.LOW,
        "dead-letter": Tier.DEAD,
        "alert-webhooks": Tier.HIGH,
    }
    assert all(spec.handler is None for spec in registry.values())


def test_custom_queue_without_tier_is_rejected() -> None:
    settings = Settings(queues={"reports": {"max_attempts": 3}})
    with pytest.raises(ConfigError, match=r"queues\.reports\.tier.*needs a tier"):
        build_registry(settings)


def test_custom_queue_with_tier_and_spec_queue_retiered() -> None:
    settings = Settings(queues={"reports": {"tier": "low"}, "sync": {"tier": "high"}})
    registry = build_registry(settings)
    assert registry["reports"].tier is Tier.LOW
    assert registry["sync"].tier is Tier.HIGH


def test_bad_custom_queue_name_is_rejected() -> None:
    with pytest.raises(ConfigError, match="queue name"):
        build_registry(Settings(queues={"Reports Q": {"tier": "low"}}))


def test_dead_letter_queue_cannot_be_configured() -> None:
    with pytest.raises(ConfigError, match="dead-letter"):
        build_registry(Settings(queues={"dead-letter": {"tier": "low"}}))


def test_handler_for_an_undeclared_queue_is_rejected() -> None:
    with pytest.raises(ConfigError, match="'reports'"):
        build_registry(Settings(), {"reports": sample_handler})


def test_handler_imported_from_config_path() -> None:
    settings = Settings(queues={"reports": {"tier": "low", "handler": "tests.unit.test_config:sample_handler"}})
    registry = build_registry(settings)
    assert registry["reports"].handler is sample_handler

    # a handler given in code wins over the configured path
    async def other(job: Job) -> None:
        return None

    assert build_registry(settings, {"reports": other})["reports"].handler is other


@pytest.mark.parametrize(
    "path", ["no_colon_here", "module:", ":func", "pkg.mod:func:extra", "pkg mod:func", "pkg.mod:1func"]
)
def test_handler_path_must_look_like_module_colon_function(path: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(None, {"queues": {"reports": {"tier": "low", "handler": path}}}, environ={})
    assert "queues.reports.handler" in str(err.value)
    assert "package.module:function" in str(err.value)


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("tests.unit.no_such_module_xyz:handle", "cannot import"),
        ("tests.unit.test_config:missing_handler", "has no attribute 'missing_handler'"),
        ("tests.unit.test_config:NOT_CALLABLE", "is not callable"),
        ("tests.unit.test_config:sync_handler", "must be an async function"),
    ],
)
def test_handler_import_errors_name_the_handler(path: str, reason: str) -> None:
    settings = Settings(queues={"reports": {"tier": "low", "handler": path}})
    with pytest.raises(ConfigError) as err:
        build_registry(settings)
    assert repr(path) in str(err.value)
    assert reason in str(err.value)
    # without importing, the registry still builds (for commands that run no jobs)
    assert build_registry(settings, import_handlers=False)["reports"].handler is None


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("def broken(:\n", "SyntaxError"),
        ("raise RuntimeError('boom at import')\n", "RuntimeError"),
        ("import no_such_dependency_xyz\n", "No module named 'no_such_dependency_xyz'"),
    ],
)
def test_handler_module_that_fails_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, error: str
) -> None:
    name = f"fleetbox_broken_{abs(hash(source))}"
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError) as err:
        import_handler(f"{name}:handle")
    assert f"'{name}:handle'" in str(err.value)
    assert error in str(err.value)
