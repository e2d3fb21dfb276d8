"""The container recipe: its base image is a build argument (a tag by default, a digest where the
builder pins one), and what it installs is the lock file, then fleetbox without dependencies."""

from __future__ import annotations

import re
from pathlib import Path

RECIPE = Path(__file__).resolve().parents[2] / ".ci" / "Containerfile"


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) in order, comments and continuation lines folded."""
    text = re.sub(r"\\\n", " ", RECIPE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_base_image_is_an_argument_defaulting_to_the_tag_and_the_digest_recipe_is_documented() -> None:
    steps = instructions()
    assert steps[0] == ("ARG", "BASE=python:3.11-slim")
    assert steps[1] == ("FROM", "${BASE}")
    assert [s for s in steps if s[0] == "FROM"] == [("FROM", "${BASE}")]
    comments = RECIPE.read_text()
    assert "docker buildx imagetools inspect python:3.11-slim" in comments
    assert "--build-arg BASE=python:3.11-slim@sha256:" in comments


def test_dependencies_come_from_the_lock_file_and_the_port_is_exposed() -> None:
    steps = instructions()
    runs = [args for word, args in steps if word == "RUN"]
    assert any("pip install -r requirements.lock" in r for r in runs)
    assert any("pip install --no-deps ." in r for r in runs)
    assert ("EXPOSE", "8080") in steps
    assert ("USER", "fleetbox") in steps
