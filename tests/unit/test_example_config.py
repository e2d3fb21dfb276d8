"""config.example.toml is the documentation of every key: it must load and mention each one."""

from __future__ import annotations

import re
from pathlib import Path

from fleetbox.config import Settings, effective_values, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def test_example_config_loads_with_the_defaults_it_documents() -> None:
    loaded = load_settings(EXAMPLE, environ={})
    defaults = Settings()
    # The file states the defaults: loading it changes nothing but the file's own source label.
    assert loaded.settings.pools == defaults.pools
    assert loaded.settings.retry == defaults.retry
    assert loaded.settings.appliance.lease_seconds == defaults.appliance.lease_seconds


def test_example_config_mentions_every_key() -> None:
    text = EXAMPLE.read_text()
    for key, _value, _source in effective_values(load_settings(EXAMPLE, environ={})):
        if key == "queues":
            continue
        leaf = key.rsplit(".", 1)[-1]
        assert re.search(rf"^#? ?{re.escape(leaf)} =", text, re.MULTILINE), f"{key} is not documented"
