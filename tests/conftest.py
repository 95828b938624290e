"""Shared test setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectsynth.recipe import ALLOW_ENV

#: the test plugins that recipes in the tests name by absolute path
TEST_PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(autouse=True)
def _recipes_may_read_the_test_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recipes written into tmp folders name tests/plugins in ``plugin_dirs``; a recipe may
    only read its own folder and the working directory unless a folder is allowed, as a
    user would with ``DEFECTSYNTH_ALLOW_PATHS``."""
    monkeypatch.setenv(ALLOW_ENV, str(TEST_PLUGINS))
