"""Tests that keep the docs honest."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from defectsynth import hookspecs
from defectsynth.plugins import PluginHost
from defectsynth.testing import check_generator

DOCS = Path(__file__).parents[1] / "docs"


def hook_names() -> list[str]:
    return [
        name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "defectsynth_spec")
    ]


def test_every_hook_is_specified_with_param_docs() -> None:
    names = hook_names()
    assert names, "no hookspecs found"
    for name in names:
        doc = getattr(hookspecs, name).__doc__ or ""
        for arg in inspect.signature(getattr(hookspecs, name)).parameters:
            assert f":param {arg}:" in doc, f"hookspec {name} lacks a :param {arg}: line"


def test_every_hook_is_documented_in_the_plugin_guide() -> None:
    text = (DOCS / "plugins.md").read_text()
    for name in hook_names():
        sig = inspect.signature(getattr(hookspecs, name))
        heading = f"### `{name}({', '.join(sig.parameters)})`"
        assert heading in text, f"docs/plugins.md has no section {heading}"


def test_the_plugin_guide_example_is_a_working_plugin(tmp_path: Path) -> None:
    text = (DOCS / "plugins.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S)
    assert code is not None
    (tmp_path / "smudge.py").write_text(code.group(1))
    host = PluginHost([tmp_path], builtins=(), entry_points=False)
    assert not host.errors, host.errors
    info = [p for p in host.plugins if p.name == "smudge"][0]
    assert info.version == "0.1.0" and info.generators == ["smudge"]
    check_generator(host.generators["smudge"])
