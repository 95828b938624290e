"""`defectsynth plugins`, `describe` and `--version` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from defectsynth import __version__
from defectsynth.cli import cli

HERE = Path(__file__).parent


def run(*args: str) -> tuple[int, str, str]:
    res = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def test_version() -> None:
    code, out, _ = run("--version")
    assert code == 0 and out.strip() == f"defectsynth, version {__version__}"


def test_plugins_lists_source_version_generators_and_errors() -> None:
    code, out, _ = run("--plugin-dir", str(HERE / "plugins"), "--plugin-dir",
                       str(HERE / "plugins_broken"), "plugins")
    assert code == 0
    assert f"blob 0.0.1  [{HERE / 'plugins' / 'blob.py'}]\n    generators: blob\n" in out
    assert "scratch 0.1.0  [builtin]\n    generators: scratch" in out
    assert "coco 0.1.0  [builtin]\n    writers:    coco" in out
    assert (f"import_error  [{HERE / 'plugins_broken' / 'import_error.py'}]\n"
            "    ERROR: failed to import: ModuleNotFoundError: No module named "
            "'this_module_does_not_exist'") in out
    assert "Traceback" not in out


def test_plugins_verbose_shows_tracebacks() -> None:
    code, out, _ = run("-v", "--plugin-dir", str(HERE / "plugins_broken"), "plugins")
    assert code == 0 and "Traceback (most recent call last)" in out


def test_plugins_json() -> None:
    code, out, _ = run("--plugin-dir", str(HERE / "plugins"), "plugins", "--json")
    assert code == 0
    data = {p["name"]: p for p in json.loads(out)}
    assert data["blob"] == {
        "name": "blob", "source": str(HERE / "plugins" / "blob.py"), "version": "0.0.1",
        "generators": ["blob"], "writers": [], "errors": [],
    }
    assert data["dent"]["source"] == "builtin"


def test_describe_shows_params_types_defaults_ranges_and_doc() -> None:
    code, out, _ = run("--plugin-dir", str(HERE / "plugins_broken"), "describe", "spot")
    assert code == 0
    assert "spot v1 (plugin 'zz_good', " in out
    assert "A dark round spot." in out
    assert "  radius (int, default 6, allowed [2, 50]; varies [4, 9] by default)" in out
    assert "  shade (str, default 'dark', allowed one of 'dark', 'light')" in out
    assert "  sharp (bool, default False, allowed true or false)" in out


def test_describe_json() -> None:
    code, out, _ = run("--plugin-dir", str(HERE / "plugins"), "describe", "blob", "--json")
    d = json.loads(out)
    assert d["name"] == "blob" and d["params"][0]["name"] == "radius"
    assert d["params"][0]["allowed"] == "[1, 200]"


def test_describe_unknown_generator_suggests() -> None:
    res = CliRunner().invoke(cli, ["describe", "scrach"])
    assert res.exit_code == 1
    assert "unknown generator 'scrach' (did you mean 'scratch'?)" in res.stderr


def test_help_teaches() -> None:
    code, out, _ = run("--help")
    assert code == 0
    for word in ("plugins", "describe", "--plugin-dir", "--trace-plugins"):
        assert word in out
