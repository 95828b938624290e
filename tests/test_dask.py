"""Runs on a real dask cluster (a LocalCluster of 2 worker processes): the output is
byte-identical to a local run, a worker killed mid-run changes nothing, and a run resumes
across backends (interrupted on dask and finished locally, and the reverse)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from dataset_factory import PLUGINS, make_inputs, tree_bytes, write_recipe

from defectsynth.build import load_recipe
from defectsynth.cli import cli
from defectsynth.errors import RunError
from defectsynth.run import MANIFEST, generate, read_manifest
from defectsynth.writing import TMP_MARK

pytestmark = pytest.mark.dask
distributed = pytest.importorskip("distributed")

from defectsynth.backends.dask import (  # noqa: E402
    DaskBackend,
    _check_output_visible,
    default_chunksize,
    run_chunk,
    versions,
)

# A test plugin written per test: a blob generator that can sleep (so a run lasts long
# enough to be interrupted) and kill the dask worker running it, once, at its Nth render
# anywhere on the cluster. Its output never depends on either.
TRIPWIRE = """
import os, signal, time
from dataclasses import dataclass
import numpy as np
from defectsynth import DefectGenerator, Layer, Region, hookimpl, param

STATE = {state!r}
KILL_AT = {kill_at!r}
SLEEP = {sleep!r}
LEFTOVER = {leftover!r}


def _in_dask_worker():
    try:
        from distributed import get_worker
        get_worker()
        return True
    except (ImportError, ValueError):
        return False


class TripwireGenerator(DefectGenerator):
    name = "tripwire"

    @dataclass(frozen=True)
    class Params:
        radius: float = param(8.0, lo=1.0, hi=200.0, vary=(4.0, 14.0))
        strength: float = param(-0.5, lo=-1.0, hi=1.0, vary=(-0.7, -0.35))

    def extent(self, params, rng):
        side = int(np.ceil(params.radius * 2 + 6))
        return side, side

    def render(self, region, params, rng):
        time.sleep(SLEEP)
        if KILL_AT == 0 and _in_dask_worker():  # a chunk that kills every worker it meets
            os.kill(os.getpid(), signal.SIGKILL)
        if KILL_AT is not None and _in_dask_worker():
            with open(os.path.join(STATE, "renders"), "ab") as fh:
                fh.write(b"x")
            if os.path.getsize(os.path.join(STATE, "renders")) >= KILL_AT:
                try:
                    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY
                    fd = os.open(os.path.join(STATE, "killed"), flags)
                except FileExistsError:
                    pass
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    # as if killed while writing a file: a torn temporary file stays behind
                    os.makedirs(os.path.dirname(LEFTOVER), exist_ok=True)
                    with open(LEFTOVER + str(os.getpid()), "wb") as fh:
                        fh.write(b"torn")
                    os.kill(os.getpid(), signal.SIGKILL)
        h, w = region.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        r = np.hypot(xx - (w - 1) / 2, yy - (h - 1) / 2) / params.radius
        cov = np.clip((1.0 - r) / 0.3, 0.0, 1.0).astype(np.float32)
        px = np.clip(region.pixels + params.strength, 0.0, 1.0).astype(np.float32)
        return Layer(pixels=px, coverage=cov)


@hookimpl
def register_generators(register):
    register(TripwireGenerator)
"""


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A LocalCluster of 2 worker processes (1 thread each) shared by the tests."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster.scheduler_address


def _tripwire_recipe(
    tmp: Path, *, kill_at: int | None = None, sleep: float = 0.0, variants: int = 4
) -> Path:
    kit = tmp / "kit"
    kit.mkdir(exist_ok=True)
    (tmp / "state").mkdir(exist_ok=True)
    leftover = str(tmp / "ds" / "images" / "train" / f".p0_000.png{TMP_MARK}")
    source = TRIPWIRE.format(
        state=str(tmp / "state"), kill_at=kill_at, sleep=sleep, leftover=leftover
    )
    (kit / "tripwire.py").write_text(source, encoding="utf-8")
    return write_recipe(
        tmp,
        variants=variants,
        plugin_dirs=[str(PLUGINS), str(kit)],
        defects=[
            {"generator": "tripwire"},
            {"generator": "blob", "category": "bright", "params": {"strength": [0.35, 0.7]}},
        ],
    )


def _reference(tmp: Path, recipe: Path) -> dict[str, bytes]:
    """An uninterrupted local run into tmp/ds, moved aside; returns its bytes."""
    generate(load_recipe(recipe), tmp / "ds", workers=1)
    ref = tree_bytes(tmp / "ds")
    (tmp / "ds").rename(tmp / "ref")
    return ref


def _wait_idle(address: str, timeout: float = 30.0) -> None:
    """Until the cluster has no task left (chunks of a killed driver finish on their own)."""
    from distributed import Client

    with Client(address, timeout=timeout) as client:
        deadline = time.monotonic() + timeout
        while client.run_on_scheduler(_scheduler_tasks) > 0:
            assert time.monotonic() < deadline, "the cluster did not become idle"
            time.sleep(0.05)


def _heap_reuse_restored() -> bool:
    import defectsynth.backends.dask as backend_module

    return bool(backend_module._heap_reuse_done)


def _scheduler_tasks(dask_scheduler: Any) -> int:
    return sum(1 for key in dask_scheduler.tasks if str(key).startswith("defectsynth-"))


def test_importing_defectsynth_does_not_import_dask() -> None:
    code = (
        "import sys, defectsynth, defectsynth.cli, defectsynth.run, defectsynth.backends\n"
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"


def test_without_dask_the_cli_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    make_inputs(tmp_path, n=1)
    recipe = write_recipe(tmp_path, variants=1)
    res = CliRunner().invoke(
        cli, ["generate", str(recipe), "-o", str(tmp_path / "ds"), "--dask-local", "2"]
    )
    assert res.exit_code == 1
    assert "pip install 'defectsynth[dask]'" in res.output
    assert not (tmp_path / "ds").exists()


def test_chunk_sizes_cover_whole_sources() -> None:
    assert default_chunksize(1) == 8 and default_chunksize(3) == 9
    assert default_chunksize(12) == 12 and default_chunksize(40) == 16


def test_workers_refuse_other_versions_and_an_invisible_output(tmp_path: Path) -> None:
    import cloudpickle

    payload = cloudpickle.dumps(lambda: lambda t: {"task": t})
    other = {**versions(), "opencv": "0.0.1"}
    with pytest.raises(RunError, match=r"other versions than the driver \(opencv"):
        run_chunk("t1", payload, other, [1])
    assert run_chunk("t2", payload, versions(), [1, 2]) == [{"task": 1}, {"task": 2}]
    with pytest.raises(RunError, match="does not see the output folder .*shared storage"):
        _check_output_visible(tmp_path / "elsewhere" / "dataset.json", "dask worker on x", wait=0)
    (tmp_path / "dataset.json").write_text("{}")
    _check_output_visible(tmp_path / "dataset.json", "dask worker on x", wait=0)


def test_dask_local_cli_output_is_byte_identical_to_local(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=4)
    imgs = tmp_path / "images"
    (imgs / "zero.png").write_bytes(b"")
    (imgs / "text.png").write_text("not an image")
    recipe = write_recipe(tmp_path, variants=3)
    runner = CliRunner()
    base = ["generate", str(recipe), "-o", str(tmp_path / "ds"), "--no-progress"]
    res = runner.invoke(cli, [*base, "-j", "1"])
    assert res.exit_code == 0, res.output
    local_out = res.output
    (tmp_path / "ds").rename(tmp_path / "ref")
    # small chunks: they complete out of order and the driver must put them back in order
    res = runner.invoke(cli, [*base, "--dask-local", "2", "--chunk-size", "2"])
    assert res.exit_code == 0, res.output
    assert "running on a local dask cluster of 2 worker processes" in res.output
    assert tree_bytes(tmp_path / "ds") == tree_bytes(tmp_path / "ref")
    # bad inputs are reported exactly as the local backend reports them
    skipped = [x for x in res.output.splitlines() if "zero.png" in x or "text.png" in x]
    assert len(skipped) == 2
    assert skipped == [x for x in local_out.splitlines() if "zero.png" in x or "text.png" in x]
    report = json.loads((tmp_path / "ds" / "report.json").read_text())
    assert {s["source"] for s in report["skipped_sources"]} == {"zero.png", "text.png"}


def test_cli_rejects_conflicting_backend_options(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=1)
    recipe = write_recipe(tmp_path, variants=1)
    runner = CliRunner()
    base = ["generate", str(recipe), "-o", str(tmp_path / "ds")]
    for extra, msg in (
        (["--dask-local", "2", "--scheduler", "tcp://x:1"], "exclude each other"),
        (["--dask-local", "2", "-j", "2"], "--workers is for local runs"),
        (["--chunk-size", "4"], "--chunk-size applies to"),
    ):
        res = runner.invoke(cli, [*base, *extra])
        assert res.exit_code == 2 and msg in res.output, res.output
    assert not (tmp_path / "ds").exists()


def test_worker_killed_mid_run_changes_nothing(tmp_path: Path, scheduler: str) -> None:
    make_inputs(tmp_path, n=4)
    recipe = _tripwire_recipe(tmp_path, kill_at=4)
    (tmp_path / "state" / "killed").write_text("reference run: no kill")
    ref = _reference(tmp_path, recipe)
    (tmp_path / "state" / "killed").unlink()
    with DaskBackend(scheduler, chunksize=2) as backend:
        result = generate(load_recipe(recipe), tmp_path / "ds", backend=backend)
    killed = int((tmp_path / "state" / "killed").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(killed, 0)  # the worker process really died
    assert result.samples == 16
    assert tree_bytes(tmp_path / "ds") == ref  # no leftover temporary file, nothing lost


def test_resume_across_backends(tmp_path: Path, scheduler: str) -> None:
    make_inputs(tmp_path, n=4, size=(96, 128))
    recipe = _tripwire_recipe(tmp_path, sleep=0.03, variants=6)
    ref = _reference(tmp_path, recipe)
    out = tmp_path / "ds"
    total = 24

    # started on dask, driver killed (SIGKILL) part-way, finished locally
    cmd = [sys.executable, "-m", "defectsynth.cli", "generate", str(recipe), "-o", str(out)]
    proc = subprocess.Popen(
        [*cmd, "--scheduler", scheduler, "--chunk-size", "2", "--no-progress"],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while len(read_manifest(out)) < 4 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    _wait_idle(scheduler)
    assert 4 <= len(read_manifest(out)) < total, "the run finished before it could be killed"
    generate(load_recipe(recipe), out, workers=1, resume=True)
    assert tree_bytes(out) == ref

    # started locally (a crash: records missing, a torn line, a temporary file), finished on dask
    lines = (out / MANIFEST).read_bytes().splitlines(keepends=True)
    (out / MANIFEST).write_bytes(b"".join(lines[:5]) + lines[5][:20])
    (out / "masks" / f".p1_002_00.png{TMP_MARK}1-ab").write_bytes(b"torn")
    (out / "report.json").unlink()
    with DaskBackend(scheduler, chunksize=3) as backend:
        generate(load_recipe(recipe), out, resume=True, backend=backend)
        # workers started with dask's MALLOC_TRIM_THRESHOLD_ get glibc's heap reuse back
        trim = backend.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_")
        fixed = backend.client.run(_heap_reuse_restored)
    assert tree_bytes(out) == ref
    if sys.platform.startswith("linux") and all(trim.values()):
        assert any(fixed.values())


def test_ctrl_c_on_dask_local_finishes_the_chunks_in_flight(tmp_path: Path) -> None:
    make_inputs(tmp_path, n=6)
    recipe = _tripwire_recipe(tmp_path, sleep=0.03, variants=8)
    ref = _reference(tmp_path, recipe)
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "defectsynth.cli", "generate", str(recipe), "-o", str(out)]
    # Ctrl-C in a terminal reaches the whole process group: driver and cluster workers
    proc = subprocess.Popen(
        [*cmd, "--dask-local", "2", "--chunk-size", "4", "--no-progress"],
        # SIGINT at its default, as from a terminal, even when the tests run as a
        # background job (which ignores it, and the run then leaves it ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(read_manifest(out)) < 4 and proc.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 130, err
    assert "stopped after the samples in flight" in err and "--resume --dask-local 2" in err
    assert 4 <= len(read_manifest(out)) < 48
    assert not [p for p in out.rglob("*") if TMP_MARK in p.name]
    generate(load_recipe(recipe), out, workers=1, resume=True)
    assert tree_bytes(out) == ref


def test_a_cluster_without_workers_yet_runs_when_they_come(tmp_path: Path) -> None:
    """As on a batch system, where the worker jobs wait in the queue."""
    from distributed import LocalCluster

    make_inputs(tmp_path, n=2)
    recipe = write_recipe(tmp_path, variants=2)
    generate(load_recipe(recipe), tmp_path / "ds", workers=1)
    (tmp_path / "ds").rename(tmp_path / "ref")
    with LocalCluster(
        n_workers=0, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        backend = DaskBackend(cluster.scheduler_address, timeout=0.5).start()
        try:
            assert "no worker yet" in backend.describe()
            cluster.scale(1)
            generate(load_recipe(recipe), tmp_path / "ds", backend=backend)
        finally:
            backend.close()
    assert tree_bytes(tmp_path / "ds") == tree_bytes(tmp_path / "ref")


def test_a_chunk_that_keeps_killing_workers_stops_the_run(tmp_path: Path) -> None:
    import dask
    from distributed import LocalCluster

    make_inputs(tmp_path, n=2)
    recipe = _tripwire_recipe(tmp_path, kill_at=0, variants=2)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
    with cluster, DaskBackend(cluster.scheduler_address, chunksize=2) as backend:
        with pytest.raises(RunError, match=r"chunk starting at task \d+ killed dask workers"):
            generate(load_recipe(recipe), tmp_path / "ds", backend=backend)
    assert read_manifest(tmp_path / "ds") == []
