"""Every example in docs/training.md runs, on a tiny setting.

An example is a fenced block right after ``<!-- example: NAME -->``. Its ``UPPER_CASE = ...``
settings are replaced (a tiny recipe of the test plugin, one epoch, small images) and the
code runs in a fresh interpreter, as a user would run it. Each test carries the marker of
what it needs: ``torch``, ``albumentations``, or ``readers`` (ultralytics).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from dataset_factory import make_inputs, write_recipe

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "training.md"


def examples() -> dict[str, tuple[str, str]]:
    """name -> (language, code) of every marked example."""
    text = DOC.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: ([\w-]+) -->\n```(\w+)\n(.*?)```", text, re.S)
    return {name: (lang, code) for name, lang, code in found}


def with_settings(code: str, **settings: Any) -> str:
    for name, value in settings.items():
        code, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", code, flags=re.M)
        assert n == 1, f"docs/training.md example has no single setting {name}"
    return code


def user_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a user's shell would have: without pytest's variables (ultralytics
    writes its runs into its own package folder when it sees PYTEST_CURRENT_TEST)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    return {**env, **(extra or {})}


def run_python(
    code: str, tmp: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    script = tmp / "example.py"
    script.write_text(code, encoding="utf-8")
    out = subprocess.run(
        [sys.executable, str(script)], cwd=cwd or tmp, capture_output=True, text=True,
        env=user_env(env), timeout=600,
    )
    assert out.returncode == 0, f"example failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A tiny recipe of the test plugin (4 images of 96x128, 2 variants each)."""
    make_inputs(tmp_path, n=4)
    return write_recipe(tmp_path, variants=2, negatives=0.25, output={"formats": ["yolo"]})


def test_every_example_is_tested() -> None:
    assert set(examples()) == {
        "api", "torch", "torchvision", "albumentations", "ultralytics-generate", "ultralytics"
    }


def test_python_api_example(tmp_path: Path) -> None:
    _, code = examples()["api"]
    # runs on the real fixtures and built-in generators, from the repository root (as the
    # docs say: the demo recipe reads ../images, which a recipe may only do from there)
    run_python(code, tmp_path, cwd=ROOT)


@pytest.mark.torch
def test_torch_dataloader_example(tiny: Path) -> None:
    pytest.importorskip("torch")
    _, code = examples()["torch"]
    out = run_python(with_settings(code, RECIPE=str(tiny), EPOCHS=2, NUM_WORKERS=2), tiny.parent)
    assert "epoch 0: 8 images" in out and "epoch 1: 8 images" in out


@pytest.mark.torch
def test_torchvision_training_example(tiny: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    _, code = examples()["torchvision"]
    out = run_python(with_settings(code, RECIPE=str(tiny), STEPS=2), tiny.parent)
    assert "2 steps, last loss" in out


@pytest.mark.albumentations
def test_albumentations_example(tiny: Path) -> None:
    pytest.importorskip("albumentations")
    _, code = examples()["albumentations"]
    image = tiny.parent / "images" / "p0.png"
    out = run_python(with_settings(code, IMAGE=str(image), RECIPE=str(tiny), ROUNDS=4),
                     tiny.parent)
    lines = out.strip().splitlines()
    assert len(lines) == 4 and any("blob" in line or "bright" in line for line in lines)


@pytest.mark.readers
def test_ultralytics_example(tiny: Path) -> None:
    if importlib.util.find_spec("ultralytics") is None:  # not imported here: it would
        pytest.skip("ultralytics is not installed")  # write settings into $HOME
    tmp = tiny.parent
    env = {
        "YOLO_OFFLINE": "1",
        "YOLO_AUTOINSTALL": "False",
        "YOLO_CONFIG_DIR": str(tmp / "yolo-config"),
    }
    _, command = examples()["ultralytics-generate"]
    args = shlex.split(command.strip().replace("fixtures/recipes/demo.yaml", str(tiny)))
    assert args[:2] == ["defectsynth", "generate"]
    subprocess.run([sys.executable, "-m", "defectsynth.cli", *args[1:]], cwd=tmp, check=True,
                   capture_output=True, env=user_env(env))
    assert (tmp / "out" / "demo" / "data.yaml").is_file()
    _, code = examples()["ultralytics"]
    run_python(with_settings(code, EPOCHS=1, IMGSZ=64), tmp, env)
    assert list((tmp / "runs").rglob("best.pt"))
