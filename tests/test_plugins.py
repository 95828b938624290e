"""The plugin host: discovery from every source, isolation of broken plugins, tracing."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from defectsynth.plugins import BUILTIN_PLUGINS, PluginHost

HERE = Path(__file__).parent
TEST_PLUGINS = HERE / "plugins"
BROKEN = HERE / "plugins_broken"
REPO = HERE.parent


def by_name(host: PluginHost, name: str):
    matches = [p for p in host.plugins if p.name == name]
    assert matches, f"plugin {name!r} not listed; have {[p.name for p in host.plugins]}"
    return matches[0]


def test_builtins_register_through_the_hook_and_load_cleanly() -> None:
    host = PluginHost(entry_points=False)
    builtin = [p for p in host.plugins if p.source == "builtin"]
    assert [p.name for p in builtin] == [m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS]
    for p in builtin:
        assert not p.errors, f"builtin {p.name}: {p.errors}"
    for name in ("scratch", "dent", "discoloration", "crack", "pit", "stain"):
        assert by_name(host, name).generators == [name]
    assert {"coco", "yolo", "voc", "anomaly"} <= set(host.writers)


def test_entry_point_plugin_is_found_through_its_entry_point() -> None:
    eps = {ep.name: ep for ep in importlib.metadata.entry_points(group="defectsynth")}
    if "corrosion" not in eps:
        pytest.skip("defectsynth-corrosion is not installed (pip install ./plugins/corrosion)")
    host = PluginHost(builtins=())  # no plugin folders at all: only entry points
    info = by_name(host, "corrosion")
    assert info.source == "entry point"
    assert info.version == eps["corrosion"].dist.version
    assert info.generators == ["corrosion"]
    assert not info.errors
    # it came from the installed distribution, not from a plugin folder
    module = sys.modules[eps["corrosion"].value]
    assert "defectsynth_plugin_" not in module.__name__


def test_plugin_folder_files_load_with_their_path_as_source() -> None:
    host = PluginHost([TEST_PLUGINS], builtins=(), entry_points=False)
    info = by_name(host, "blob")
    assert info.source == str(TEST_PLUGINS / "blob.py")
    assert info.version == "0.0.1"
    assert "blob" in host.generators


def test_env_variable_names_plugin_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEFECTSYNTH_PLUGIN_DIRS", f"{TEST_PLUGINS}{__import__('os').pathsep}")
    host = PluginHost(builtins=(), entry_points=False)
    assert "blob" in host.generators


def test_load_plugins_variable_restricts_third_party_plugins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DEFECTSYNTH_LOAD_PLUGINS", "zz_good")
    host = PluginHost([BROKEN, TEST_PLUGINS], builtins=(), entry_points=False)
    assert [p.name for p in host.plugins] == ["zz_good"]
    assert set(host.generators) == {"spot"}


def test_no_implicit_plugin_folder(tmp_path: Path) -> None:
    """Running inside an untrusted checkout must not execute its ./plugins files."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    marker = tmp_path / "executed"
    (plugins / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    proc = subprocess.run(
        [sys.executable, "-m", "defectsynth.cli", "plugins", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()
    assert "evil" not in proc.stdout


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([TEST_PLUGINS, BROKEN], builtins=(), entry_points=False)


class TestBrokenPlugins:

    def test_import_error_is_reported_with_name_source_and_error(self, host: PluginHost) -> None:
        info = by_name(host, "import_error")
        assert info.source == str(BROKEN / "import_error.py")
        assert len(info.errors) == 1
        assert "failed to import" in info.errors[0]
        assert "this_module_does_not_exist" in info.errors[0]
        assert "Traceback" in info.tracebacks[0]

    def test_hook_that_raises(self, host: PluginHost) -> None:
        info = by_name(host, "hook_raises")
        assert info.errors == ["register_generators raised RuntimeError: boom inside "
                               "register_generators"]

    def test_invalid_registrations_are_refused_one_by_one(self, host: PluginHost) -> None:
        info = by_name(host, "invalid_registration")
        assert info.generators == ["fine"]
        assert len(info.errors) == 2
        assert "is not a DefectGenerator subclass" in info.errors[0]
        assert "Params.width" in info.errors[1] and "above the maximum 10" in info.errors[1]
        assert "bad_params" not in host.generators

    def test_misspelled_hook_fails_loudly(self, host: PluginHost) -> None:
        info = by_name(host, "misspelled_hook")
        assert info.errors and "register_generator" in info.errors[0]
        assert "unknown hook" in info.errors[0]

    def test_duplicate_name_keeps_the_first_and_names_both_sources(
        self, host: PluginHost
    ) -> None:
        info = by_name(host, "duplicate_blob")
        assert info.generators == []
        (msg,) = info.errors
        assert "'blob' is already provided by plugin 'blob'" in msg
        assert str(TEST_PLUGINS / "blob.py") in msg and str(BROKEN / "duplicate_blob.py") in msg
        assert host.generators["blob"].__module__.startswith("defectsynth_plugin_blob")

    def test_the_others_still_load(self, host: PluginHost) -> None:
        assert {"blob", "fine", "spot"} == set(host.generators)
        assert not by_name(host, "zz_good").errors


def test_missing_plugin_folder_is_an_error_not_a_crash(tmp_path: Path) -> None:
    host = PluginHost([tmp_path / "nope"], builtins=(), entry_points=False)
    assert any("does not exist" in e for e in host.errors)


def test_trace_prints_every_hook_call(capsys: pytest.CaptureFixture[str]) -> None:
    PluginHost([TEST_PLUGINS], builtins=(), entry_points=False, trace=True)
    err = capsys.readouterr().err
    assert "calling register_generators of plugin 'blob'" in err
    assert "-> ['blob']" in err


def test_unknown_generator_suggests_the_closest_name() -> None:
    host = PluginHost([TEST_PLUGINS], builtins=(), entry_points=False)
    with pytest.raises(KeyError, match=r"unknown generator 'blb' \(did you mean 'blob'\?\)"):
        host.generator("blb")
