"""The run's parts and their seams: typed manifest records, typed worker results, the
backend interface, and the old ``defectsynth.run`` names still importable."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import typing
from pathlib import Path

import numpy as np
import pytest
from dataset_factory import PLUGINS, make_inputs, write_recipe

from defectsynth.backends import SharedOutput
from defectsynth.build import load_recipe
from defectsynth.plugins import PluginHost
from defectsynth.rle import crop_rle, encode_rle
from defectsynth.run import generate
from defectsynth.run.manifest import MANIFEST, AnnotationRecord, Record, iter_records
from defectsynth.run.plan import Plan
from defectsynth.run.worker import Made, RunnerFactory, Skipped, TaskRunner, WorkerSpec


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("manifest")
    make_inputs(tmp, n=2)
    write_recipe(tmp, variants=3)
    host = PluginHost([PLUGINS])
    generate(load_recipe(tmp / "recipe.yaml", host=host), tmp / "ds", host=host, workers=1)
    return tmp / "ds"


def test_manifest_lines_have_exactly_the_record_keys_in_order(dataset: Path) -> None:
    record_keys = list(typing.get_type_hints(Record))
    annotation_keys = list(typing.get_type_hints(AnnotationRecord))
    lines = (dataset / MANIFEST).read_text(encoding="utf-8").splitlines()
    assert lines
    n_annotations = 0
    for line in lines:
        rec = json.loads(line)
        assert list(rec) == record_keys
        for a in rec["annotations"]:
            assert list(a) == annotation_keys
            n_annotations += 1
    assert n_annotations > 0
    assert [r["task"] for r in iter_records(dataset)] == [json.loads(x)["task"] for x in lines]


def test_crop_rle_equals_the_full_mask_encoding() -> None:
    rng = np.random.default_rng(3)
    full = np.zeros((40, 30), bool)
    full[5:20, 7:19] = rng.random((15, 12)) > 0.4
    full[5, 7] = full[19, 18] = True
    ys, xs = np.nonzero(full)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    crop = full[box[1] : box[3], box[0] : box[2]]
    assert crop_rle(crop, box, full.shape) == encode_rle(full)
    from defectsynth import run

    assert run.crop_rle is crop_rle  # the old import path still works


def test_old_run_names_are_reexported() -> None:
    from defectsynth import run

    for name in run.__all__:
        assert getattr(run, name) is not None, name
    with pytest.raises(AttributeError):
        run.no_such_name  # noqa: B018


def test_manifest_module_does_not_load_the_engine() -> None:
    code = (
        "import sys, defectsynth.run.manifest\n"
        "print(','.join(m for m in ('defectsynth.synthesizer', 'defectsynth.recipe', "
        "'defectsynth.run.driver', 'defectsynth.run.worker') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""


def test_worker_results_are_typed_and_picklable(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=1)
    (tmp_path / "images" / "broken.png").write_bytes(b"not a png")
    write_recipe(tmp_path, variants=1)
    host = PluginHost([PLUGINS])
    recipe = load_recipe(tmp_path / "recipe.yaml", host=host)
    out = tmp_path / "out"
    out.mkdir()
    factory = RunnerFactory(WorkerSpec(recipe=recipe, out_dir=str(out)), host=host)
    runner = factory()
    assert isinstance(runner, TaskRunner) and runner.synth is not None
    results = [runner(task) for task in Plan.build(recipe).tasks()]
    kinds = sorted(type(r).__name__ for r in results)
    assert kinds == ["Made", "Skipped"]
    made = next(r for r in results if isinstance(r, Made))
    skipped = next(r for r in results if isinstance(r, Skipped))
    assert (out / made.record["image"]).is_file()
    assert "broken.png" in skipped.source and skipped.reason
    for r in results:
        assert pickle.loads(pickle.dumps(r)) == r


def test_the_runner_factory_is_the_backends_shared_output_and_drops_its_host(
    tmp_path: Path,
) -> None:
    make_inputs(tmp_path, n=1)
    write_recipe(tmp_path, variants=1)
    host = PluginHost([PLUGINS])
    recipe = load_recipe(tmp_path / "recipe.yaml", host=host)
    factory = RunnerFactory(WorkerSpec(recipe=recipe, out_dir=str(tmp_path / "o")), host=host)
    assert isinstance(factory, SharedOutput)
    assert factory.probe_file == str(tmp_path / "o" / "dataset.json")
    shipped = pickle.loads(pickle.dumps(factory))
    assert shipped.host is None and shipped.spec == factory.spec
