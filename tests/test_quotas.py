"""Coverage quotas: the dataset is the shortest prefix of the task order that meets every
quota, the same bytes for any worker count and after SIGKILL + --resume; an impossible
quota is a clear error."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from dataset_factory import PLUGINS, make_inputs, tree_bytes, write_recipe

from defectsynth.build import load_recipe
from defectsynth.cli import cli
from defectsynth.errors import RecipeError, RunError
from defectsynth.plugins import PluginHost
from defectsynth.run import MANIFEST, Plan, generate

QUOTAS = {"blob": 12, "bright": 9}


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost([PLUGINS])


def _recipe(tmp: Path, **over: object) -> Path:
    make_inputs(tmp, n=4)
    over = {"variants": None, "quotas": QUOTAS, "max_samples": 200, **over}
    return write_recipe(tmp, **over)


def _manifest(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / MANIFEST).read_text().splitlines()]


def test_counts_meet_the_quotas_exactly_at_the_prefix_boundary(
    tmp_path: Path, host: PluginHost
) -> None:
    recipe = load_recipe(_recipe(tmp_path), host=host)
    result = generate(recipe, tmp_path / "ds", host=host, workers=1)
    plan = Plan.build(recipe, exclude=[tmp_path / "ds"])
    records = {r["task"]: r for r in _manifest(tmp_path / "ds")}
    order = list(plan.quota_order())
    n = len(records)
    # the dataset is exactly the first n tasks of the order (no source skipped here)
    assert sorted(records) == sorted(order[:n])
    have: Counter[str] = Counter()
    for k, index in enumerate(order[:n]):
        have.update(a["category"] for a in records[index]["annotations"])
        met = all(have[c] >= q for c, q in QUOTAS.items())
        assert met == (k == n - 1), f"quotas met at {k}, the prefix ends at {n - 1}"
    assert result.report["tasks"] == n
    assert result.report["quotas"] == {
        c: {"quota": q, "instances": have[c]} for c, q in QUOTAS.items()
    }
    assert result.report["instances"] == dict(have)
    # the prefix is spread over the sources (variant 0 of each first)
    assert len({r["source"] for r in records.values()}) == 4


def test_identical_for_one_and_two_workers(tmp_path: Path, host: PluginHost) -> None:
    recipe = load_recipe(_recipe(tmp_path), host=host)
    generate(recipe, tmp_path / "ds", host=host, workers=1)
    (tmp_path / "ds").rename(tmp_path / "ref")
    generate(recipe, tmp_path / "ds", host=host, workers=2)
    assert tree_bytes(tmp_path / "ds") == tree_bytes(tmp_path / "ref")


def test_an_impossible_quota_is_a_clear_error(tmp_path: Path, host: PluginHost) -> None:
    # every defect is far too faint for this gate: no instance is ever labeled
    recipe = load_recipe(_recipe(tmp_path, max_samples=8, gate={"min_contrast": 0.99}),
                         host=host)
    with pytest.raises(RunError, match=r"quotas cannot be met: after max_samples = 8 "
                                       r"samples the run has blob 0 of 12, bright 0 of 9"):
        generate(recipe, tmp_path / "ds", host=host, workers=1)
    res = CliRunner().invoke(cli, ["generate", str(tmp_path / "recipe.yaml"), "-o",
                                   str(tmp_path / "cli"), "--no-progress", "-j", "1"])
    assert res.exit_code == 1 and "quotas cannot be met" in res.output


@pytest.mark.parametrize(
    ("over", "key", "text"),
    [
        ({"quotas": {"nope": 3}}, "quotas.nope", "no defect entry labels 'nope'"),
        ({"quotas": {"blob": 0}}, "quotas.blob", ""),
        ({"quotas": [1]}, "quotas", "expected a mapping"),
        ({"variants": 3}, "quotas", "remove variants"),
        ({"quotas": None}, "max_samples", "caps a run with quotas"),
    ],
)
def test_quota_recipe_errors_name_the_key(
    tmp_path: Path, host: PluginHost, over: dict, key: str, text: str
) -> None:
    path = _recipe(tmp_path, **over)
    with pytest.raises(RecipeError) as info:
        recipe = load_recipe(path, host=host)
        generate(recipe, tmp_path / "ds", host=host, workers=1)
    assert key in str(info.value) and text in str(info.value)


def test_limit_does_not_go_with_quotas(tmp_path: Path, host: PluginHost) -> None:
    recipe = load_recipe(_recipe(tmp_path), host=host)
    with pytest.raises(RunError, match="--limit does not go with quotas"):
        generate(recipe, tmp_path / "ds", host=host, workers=1, limit=3)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_sigkill_then_resume_gives_the_same_prefix(tmp_path: Path) -> None:
    path = _recipe(tmp_path)
    cmd = [sys.executable, "-m", "defectsynth.cli", "generate", str(path), "-o"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    ref = tmp_path / "ds"
    subprocess.run([*cmd, str(ref), "-j", "2", "--no-progress"], check=True, env=env,
                   capture_output=True)
    total = _lines(ref / MANIFEST)
    ref.rename(tmp_path / "ref")
    rnd = random.Random(os.getpid())
    for _attempt in range(5):  # on a loaded machine the run may finish before the kill
        shutil.rmtree(ref, ignore_errors=True)
        kill_after = rnd.randint(1, total - 1)
        proc = subprocess.Popen([*cmd, str(ref), "-j", "2", "--no-progress"], env=env,
                                start_new_session=True, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while _lines(ref / MANIFEST) < kill_after and proc.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        time.sleep(rnd.uniform(0, 0.02))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        if not (ref / "report.json").exists():
            break
    else:
        pytest.fail("the run always finished before it could be killed")
    res = subprocess.run([*cmd, str(ref), "-j", "2", "--resume", "--no-progress"], env=env,
                         capture_output=True)
    assert res.returncode == 0, res.stderr
    assert tree_bytes(ref) == tree_bytes(tmp_path / "ref")


@pytest.mark.dask
def test_dask_gives_the_bytes_of_a_local_run_with_bad_sources(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    path = _recipe(tmp_path)
    (tmp_path / "images" / "zero.png").write_bytes(b"")
    runner = CliRunner()
    base = ["generate", str(path), "-o", str(tmp_path / "ds"), "--no-progress"]
    res = runner.invoke(cli, [*base, "-j", "1"])
    assert res.exit_code == 0, res.output
    assert "quotas:" in res.output and "zero.png" in res.output
    (tmp_path / "ds").rename(tmp_path / "ref")
    # small chunks complete out of order, and some run past the prefix
    res = runner.invoke(cli, [*base, "--dask-local", "2", "--chunk-size", "2"])
    assert res.exit_code == 0, res.output
    assert tree_bytes(tmp_path / "ds") == tree_bytes(tmp_path / "ref")


@pytest.mark.report
def test_the_report_shows_quotas_against_counts(tmp_path: Path, host: PluginHost) -> None:
    pytest.importorskip("matplotlib", reason="the report extra: pip install -e '.[report]'")
    from defectsynth.report.page import write_report

    recipe = load_recipe(_recipe(tmp_path), host=host)
    result = generate(recipe, tmp_path / "ds", host=host, workers=1)
    page, data = write_report(tmp_path / "ds", host=host)
    assert data["quotas"] == QUOTAS
    html = page.read_text(encoding="utf-8")
    table = html[html.index("<table id='quotas'>"):]
    table = table[: table.index("</table>")]
    for cat, want in QUOTAS.items():
        have = result.report["quotas"][cat]["instances"]
        assert f"<td>{cat}</td><td>{want}</td><td>{have}</td><td class='met'>met</td>" in table


def test_generator_failures_count_in_position_order_and_inside_the_prefix_only(
    tmp_path: Path, host: PluginHost
) -> None:
    """The failure watch sees the call summaries of contiguous positions inside the prefix,
    in position order: results arriving out of order (dask) or past the boundary (tasks
    in flight when the quotas were met) cannot stop one run and not another."""
    from defectsynth.run.quotas import Quota
    from defectsynth.run.worker import Made

    recipe = load_recipe(_recipe(tmp_path, quotas={"blob": 2}), host=host)
    plan = Plan.build(recipe)
    order = list(plan.quota_order())
    quota = Quota(plan, [("blob", 2)])

    def made(k: int, blobs: int) -> Made:
        calls = {"blob": {"ok": 0, "lead": 0, "trail": 0, "most": 0, "failed": 1,
                          "error": f"at {k}"}}
        record = {"annotations": [{"category": "blob"}] * blobs}
        return Made(task=order[k], record=record, calls=calls)  # type: ignore[arg-type]

    quota.take(made(1, 1))  # arrives first, but position 0 is not in yet
    assert quota.ready_calls() == []
    quota.take(made(0, 0))
    assert [c["blob"]["error"] for c in quota.ready_calls()] == ["at 0", "at 1"]
    quota.take(made(2, 1))  # meets the quota: the prefix ends here
    quota.take(made(3, 0))  # in flight, past the boundary
    assert quota.met and quota.boundary == 2
    assert [c["blob"]["error"] for c in quota.ready_calls()] == ["at 2"]
    quota.take(made(4, 0))
    assert quota.ready_calls() == []
