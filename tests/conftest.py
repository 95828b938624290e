"""Shared test setup."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectsynth.recipe import ALLOW_ENV
from defectsynth.transplant.library import CACHE_ENV

#: the test plugins that recipes in the tests name by absolute path
TEST_PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture(autouse=True)
def _recipes_may_read_the_test_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recipes written into tmp folders name tests/plugins in ``plugin_dirs``; a recipe may
    only read its own folder and the working directory unless a folder is allowed, as a
    user would with ``DEFECTSYNTH_ALLOW_PATHS``."""
    monkeypatch.setenv(ALLOW_ENV, str(TEST_PLUGINS))


@pytest.fixture(autouse=True)
def _a_cache_of_its_own(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The suite never writes to the user's cache (~/.cache/defectsynth): transplant
    libraries go to a temporary folder shared by the session, through the documented
    DEFECTSYNTH_CACHE_DIR. A test that sets the variable itself overrides this."""
    monkeypatch.setenv(CACHE_ENV, str(_session_cache(tmp_path_factory)))


_CACHE: list[Path] = []


def _session_cache(factory: pytest.TempPathFactory) -> Path:
    if not _CACHE:
        _CACHE.append(factory.mktemp("defectsynth-cache"))
    return _CACHE[0]
