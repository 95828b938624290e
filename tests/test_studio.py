"""``defectsynth studio``: the page in a real headless Chromium (move a slider, the
preview changes; add a generator; save; the saved recipe generates a valid dataset), and
the server's trust rules (token, Host, Origin, folders) checked request by request."""

from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from defectsynth.build import load_recipe
from defectsynth.cli import cli
from defectsynth.validate import validate_dataset

pytestmark = pytest.mark.studio
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from defectsynth.studio import Studio, StudioError  # noqa: E402
from defectsynth.studio.app import StudioServer  # noqa: E402

ROOT = Path(__file__).parents[1]
FIXTURES = ROOT / "fixtures"
REAL = FIXTURES / "defects" / "coco"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
IMAGES = ("brushed_metal.png", "pcb.png", "steel_strip_gray.png")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo recipe with three fixture images and their masks, in a fresh folder that
    is also the working directory (as a user's project would be)."""
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        for name in IMAGES:
            shutil.copy(FIXTURES / sub / name, tmp_path / sub / name)
    (tmp_path / "recipes").mkdir()
    shutil.copy(FIXTURES / "recipes" / "demo.yaml", tmp_path / "recipes" / "demo.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- the server's trust rules ----------------------------------------------------------------


@pytest.fixture
def served(project: Path) -> Iterator[StudioServer]:
    server = StudioServer(Studio(project / "recipes" / "demo.yaml")).start()
    try:
        yield server
    finally:
        server.stop()


def _request(server: StudioServer, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any] | str]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    sent = {"Host": f"127.0.0.1:{server.port}", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    conn.request(method, path, body=data, headers=sent)
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    is_json = resp.getheader("content-type", "").startswith("application/json")
    return resp.status, json.loads(text) if is_json else text


def _recipe(server: StudioServer) -> dict[str, Any]:
    status, state = _request(server, "GET", "/api/state",
                             headers={"X-Studio-Token": server.token})
    assert status == 200 and isinstance(state, dict)
    return dict(state["recipe"])


def test_binds_to_localhost_only(served: StudioServer) -> None:
    assert served.sock.getsockname()[0] == "127.0.0.1"
    assert served.url.startswith(f"http://127.0.0.1:{served.port}/?token=")
    assert len(served.token) >= 32


def test_requests_without_the_token_are_refused(served: StudioServer) -> None:
    recipe = _recipe(served)
    assert _request(served, "GET", "/")[0] == 403
    assert _request(served, "GET", "/api/state")[0] == 403
    assert _request(served, "GET", "/?token=" + "x" * len(served.token))[0] == 403
    assert _request(served, "POST", "/api/save", {"recipe": recipe})[0] == 403
    # a cookie is not a token: a cross-site page cannot borrow it
    assert _request(served, "GET", "/api/state",
                    headers={"Cookie": f"token={served.token}"})[0] == 403
    status, page = _request(served, "GET", "/?token=" + served.token)
    assert status == 200 and "defectsynth studio" in str(page)
    assert not (Path.cwd() / "recipes" / "demo.studio.yaml").exists()


def test_a_foreign_host_header_is_refused(served: StudioServer) -> None:
    """A DNS-rebinding page reaches 127.0.0.1 under its own name: refused even with the
    token (which such a page would not have either)."""
    port = served.port
    for host in (f"evil.example:{port}", "127.0.0.1", "127.0.0.1:1", f"0.0.0.0:{port}"):
        status, body = _request(served, "GET", "/api/state",
                                headers={"Host": host, "X-Studio-Token": served.token})
        assert status == 400, host
        assert "Host" in body["error"]  # type: ignore[index]
    status, _ = _request(served, "GET", "/api/state",
                         headers={"Host": f"localhost:{served.port}",
                                  "X-Studio-Token": served.token})
    assert status == 200


def test_cross_site_posts_are_refused(served: StudioServer) -> None:
    recipe = _recipe(served)
    token = {"X-Studio-Token": served.token}
    status, _ = _request(served, "POST", "/api/save", {"recipe": recipe},
                         {**token, "Origin": "https://evil.example"})
    assert status == 403
    # a form post (no preflight) is not JSON
    status, _ = _request(served, "POST", "/api/save", {"recipe": recipe},
                         {**token, "Content-Type": "text/plain"})
    assert status == 415
    status, _ = _request(served, "POST", "/api/validate", {"recipe": recipe},
                         {**token, "Origin": f"http://127.0.0.1:{served.port}"})
    assert status == 200


def test_paths_outside_the_allowed_folders_are_refused(served: StudioServer,
                                                       project: Path) -> None:
    token = {"X-Studio-Token": served.token}
    recipe = _recipe(served)
    outside = project.parent / "elsewhere"
    outside.mkdir(exist_ok=True)
    shutil.copy(FIXTURES / "images" / "pcb.png", outside / "pcb.png")
    # the working directory is allowed to a recipe, not to the studio: only the folders
    # it was started with
    (project / "other").mkdir()
    shutil.copy(FIXTURES / "images" / "pcb.png", project / "other" / "pcb.png")
    for images in ("/etc", str(outside), "../../elsewhere", "../other"):
        bad = json.loads(json.dumps(recipe))
        bad["inputs"]["images"] = images
        status, body = _request(served, "POST", "/api/preview", {"recipe": bad}, token)
        assert status == 422, images
        assert isinstance(body, dict) and body["key"] == "inputs.images", body
        assert "outside the folders" in body["error"]
    bad = json.loads(json.dumps(recipe))
    bad["inputs"]["product_mask"] = "/etc/{stem}"
    status, body = _request(served, "POST", "/api/preview", {"recipe": bad}, token)
    assert status == 422 and body["key"] == "inputs.product_mask"  # type: ignore[index]
    # an image is picked from the recipe's list, never by path
    status, body = _request(served, "POST", "/api/preview",
                            {"recipe": recipe, "image": "../../../etc/passwd"}, token)
    assert status == 404
    # plugin_dirs would load code
    bad = dict(recipe, plugin_dirs=["."])
    status, body = _request(served, "POST", "/api/preview", {"recipe": bad}, token)
    assert status == 422 and body["key"] == "plugin_dirs"  # type: ignore[index]


# -- the studio's work, without a server --------------------------------------------------


def test_every_generator_is_offered_with_its_parameters(project: Path) -> None:
    studio = Studio(project / "recipes" / "demo.yaml")
    gens = studio.state()["generators"]
    assert [g["name"] for g in gens] == sorted(studio.host.generators)
    scratch = next(g for g in gens if g["name"] == "scratch")
    width = next(p for p in scratch["params"] if p["name"] == "width")
    assert width["control"] == "range" and (width["min"], width["max"]) == (0.5, 16.0)
    assert width["doc"] and width["size"]
    disc = next(g for g in gens if g["name"] == "discoloration")
    kind = next(p for p in disc["params"] if p["name"] == "kind")
    assert kind["control"] == "choices" and "oxidation" in kind["choices"]


def test_save_is_validated_and_never_overwrites_the_original(project: Path) -> None:
    original = (project / "recipes" / "demo.yaml").read_text()
    studio = Studio(project / "recipes" / "demo.yaml")
    data = json.loads(json.dumps(studio.data))
    data["defects"][0]["params"] = {"width": 40}
    with pytest.raises(StudioError) as err:
        studio.save(data)
    assert err.value.key == "defects[0].params.width" and "maximum 16" in str(err.value)
    data["defects"][0]["params"] = {"width": [2, 3]}
    data["defects"][1]["category"] = "good"
    with pytest.raises(StudioError) as err:
        studio.save(data)
    assert err.value.key == "defects[1].category"
    assert not studio.save_path.exists()
    del data["defects"][1]["category"]
    saved = studio.save(data)
    assert Path(saved["path"]) == project / "recipes" / "demo.studio.yaml"
    assert (project / "recipes" / "demo.yaml").read_text() == original
    rec = load_recipe(saved["path"])
    assert rec.defects[0].params == {"width": [2, 3]} and rec.seed == 7


def test_save_over_the_starting_recipe_is_refused(project: Path) -> None:
    with pytest.raises(StudioError, match="never over it"):
        Studio(project / "recipes" / "demo.yaml", save_to=project / "recipes" / "demo.yaml")


def test_images_and_allowed_folders_outside_the_working_directory(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The studio's folders are its own: started from anywhere, --images and --allow-path
    folders elsewhere are readable (the recipe check used the working directory's)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    studio = Studio(images=project / "images", save_to=elsewhere / "studio.yaml")
    assert studio.preview(studio.data, sorted(IMAGES)[0], seed=1)["after"]
    Studio(project / "recipes" / "demo.yaml", allow_paths=[project])


def test_preview_reports_instances_light_and_contrast(project: Path) -> None:
    studio = Studio(project / "recipes" / "demo.yaml")
    data = dict(studio.data, instances=[3, 3])
    out = studio.preview(data, "pcb.png", seed=3, before=True)
    assert out["before"].startswith("data:image/png;base64,")
    assert out["size"] == [640, 512] and out["stats"]["requested"] == 3
    assert 0 <= out["light"]["azimuth"] <= 360
    for inst in out["instances"]:
        assert inst["contrast"] >= 0.02 and len(inst["box"]) == 4
    again = studio.preview(data, "pcb.png", seed=3)
    assert again["after"] == out["after"]  # same seed, same picture
    grid = studio.grid(data, "pcb.png", seed=3)
    assert len(grid["tiles"]) == 10


def test_starts_from_a_folder_of_images(project: Path) -> None:
    studio = Studio(images=project / "images")
    assert studio.save_path == project / "studio.yaml"
    assert [d["generator"] for d in studio.data["defects"]] == ["scratch", "dent", "discoloration"]
    assert studio.state()["images"] == sorted(IMAGES)
    studio.save(studio.data)
    assert load_recipe(project / "studio.yaml").inputs.images == ("images",)


def test_real_crops_and_score(project: Path) -> None:
    pytest.importorskip("sklearn")
    studio = Studio(project / "recipes" / "demo.yaml", real=REAL)
    crops = studio.real_crops()
    assert crops["count"] >= 4 and len(crops["crops"]) == crops["count"]
    result = studio.score(studio.data, samples=40)
    assert 0.0 <= result["auc"] <= 1.0 and "realism score" in result["text"]


# -- end to end in a real browser -------------------------------------------------------------


def _chromium() -> Any:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("needs Debian's chromium and chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1500,1100"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


def _start_cli(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """``defectsynth studio ...`` in a subprocess; the address it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "from defectsynth.cli import main; main()", "studio", *args],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if not sel.select(timeout=1):
            continue
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(r"(http://127\.0\.0\.1:\d+/\?token=\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise AssertionError("the studio printed no address:\n" + "".join(seen))


def _wait(what: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


class _Page:
    def __init__(self, driver: Any) -> None:
        self.d = driver

    def js(self, script: str, *args: Any) -> Any:
        return self.d.execute_script(script, *args)

    def previews(self) -> int:
        return int(self.js("return Number(document.body.dataset.previews || 0)"))

    def settle(self, after: int) -> None:
        """Wait until a preview newer than number ``after`` is shown and none is pending."""
        _wait(lambda: self.previews() > after and self.js("return window.studio.idle()"))

    def after_src(self) -> str:
        return str(self.js("return document.getElementById('after').src"))

    def set_dual(self, row: Any, lo: float, hi: float) -> None:
        self.js("const [a, b] = arguments[0].querySelectorAll('.dual input');"
                "b.value = arguments[2]; b.dispatchEvent(new Event('input'));"
                "a.value = arguments[1]; a.dispatchEvent(new Event('input'));", row, lo, hi)

    def param_row(self, entry: int, name: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.d.find_element(
            By.CSS_SELECTOR, f".entry[data-entry='{entry}'] .row[data-param='{name}']")

    def change(self, action: Callable[[], Any]) -> None:
        n = self.previews()
        action()
        self.settle(n)


@pytest.mark.browser
def test_studio_in_headless_chromium(project: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    proc, url = _start_cli(["recipes/demo.yaml", "--port", "0", "--real", str(REAL)], project)
    driver = _chromium()
    page = _Page(driver)
    try:
        driver.get(url)
        _wait(lambda: page.js("return document.body.dataset.ready === '1'"))
        page.settle(0)
        driver.save_screenshot(str(tmp_path / "studio_start.png"))
        # keep scratch alone, three instances each time
        removes = driver.find_elements(By.CSS_SELECTOR, ".entry .remove")
        assert len(removes) == 6
        for _ in range(5):
            page.change(lambda: driver.find_elements(By.CSS_SELECTOR, ".entry .remove")[1].click())
        instances = driver.find_element(By.CSS_SELECTOR, "[data-setting='instances']")
        page.change(lambda: page.set_dual(instances, 3, 3))
        first = page.after_src()
        # a range slider of a generator parameter: the picture changes
        width = page.param_row(0, "width")
        assert "auto" in width.get_attribute("class")
        page.change(lambda: page.set_dual(width, 6, 8))
        assert page.after_src() != first
        assert "auto" not in width.get_attribute("class")
        assert page.js("return document.querySelectorAll('#insts tbody tr').length") == 3
        latency = page.js("return window.studio.lastMs()")
        # an error is shown beside the control that caused it, and goes away when fixed
        cat = driver.find_element(By.CSS_SELECTOR, ".entry[data-entry='0'] input[type=text]")
        cat.send_keys("good\n")
        err = driver.find_element(By.CSS_SELECTOR, ".err[data-key='defects[0].category']")
        _wait(lambda: err.is_displayed())
        assert "good" in err.text
        page.change(lambda: (cat.clear(), cat.send_keys("\n")))
        assert not err.is_displayed()
        # add a generator (a plugin's when one is installed)
        names = [o.get_attribute("value") for o in
                 Select(driver.find_element(By.ID, "addgen")).options]
        added = "corrosion" if "corrosion" in names else "dent"
        Select(driver.find_element(By.ID, "addgen")).select_by_value(added)
        page.change(lambda: driver.find_element(By.ID, "addbtn").click())
        assert len(driver.find_elements(By.CSS_SELECTOR, ".entry")) == 2
        # ten more, real crops beside them
        driver.find_element(By.ID, "more").click()
        _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#grid figure")) == 10)
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#realcrops img"))
        driver.save_screenshot(str(tmp_path / "studio.png"))
        driver.find_element(By.ID, "save").click()
        saved = _wait(lambda: page.js("return document.body.dataset.saved"))
        broken = page.js("return Array.from(document.images).filter(i => i.getAttribute('src')"
                         " && !(i.complete && i.naturalWidth > 0)).length")
        logs = driver.get_log("browser")
    finally:
        driver.quit()
        proc.terminate()
        proc.wait(10)
    print(f"browser latency from a slider change to the new picture: {latency:.0f} ms")
    assert broken == 0
    # the one refused request is the bad category above (422, shown beside its control)
    severe = [e for e in logs if e["level"] == "SEVERE"]
    assert [e for e in severe if "422" not in e["message"]] == [], severe
    assert Path(saved) == project / "recipes" / "demo.studio.yaml"
    rec = load_recipe(saved)
    assert [d.generator for d in rec.defects] == ["scratch", added]
    assert rec.defects[0].params == {"width": [6, 8]} and rec.instances == (3, 3)
    res = CliRunner().invoke(cli, ["generate", saved, "-o", str(project / "out"), "--limit", "4",
                                   "--workers", "1"])
    assert res.exit_code == 0, res.output
    report = validate_dataset(project / "out")
    assert report.ok, report.problems
    assert report.samples == 4


def test_large_photos_are_sent_smaller_with_boxes_in_their_own_pixels(tmp_path: Path) -> None:
    import base64

    import cv2
    import numpy as np

    (tmp_path / "photos").mkdir()
    photo = cv2.resize(cv2.imread(str(FIXTURES / "images" / "painted_casing.png")), (2400, 1800))
    cv2.imwrite(str(tmp_path / "photos" / "big.png"), photo)
    studio = Studio(images=tmp_path / "photos", save_to=tmp_path / "r.yaml")
    out = studio.preview(dict(studio.data, instances=[2, 2]), before=True)
    assert out["size"] == [2400, 1800]
    for key in ("before", "after", "overlay"):
        raw = base64.b64decode(out[key].split(",", 1)[1])
        shown = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        assert shown.shape[:2] == (1200, 1600), key
    for inst in out["instances"]:
        assert inst["box"][2] <= 2400 and inst["box"][3] <= 1800


def test_cli_refuses_a_bad_start_without_serving(project: Path) -> None:
    res = CliRunner().invoke(cli, ["studio"])
    assert res.exit_code == 2 and "--images" in res.output
    bad = project / "recipes" / "bad.yaml"
    bad.write_text("inputs: {images: ../images}\ndefects: [scrach]\n")
    res = CliRunner().invoke(cli, ["studio", str(bad), "--port", "0"])
    assert res.exit_code == 2 and "defects[0].generator" in res.output
    res = CliRunner().invoke(cli, ["studio", str(bad), "--save", str(project / "x.yaml")])
    assert res.exit_code == 2
    outside = project / "recipes" / "outside.yaml"
    outside.write_text("inputs: {images: /etc}\ndefects: [scratch]\n")
    res = CliRunner().invoke(cli, ["studio", str(outside), "--port", "0"])
    assert res.exit_code == 2 and "inputs.images" in res.output


def test_the_page_is_locked_down(served: StudioServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    conn.request("GET", "/?token=" + served.token, headers={"Host": f"127.0.0.1:{served.port}"})
    resp = conn.getresponse()
    page = resp.read().decode()
    conn.close()
    csp = resp.getheader("Content-Security-Policy", "")
    nonce = re.search(r"'nonce-([^']+)'", csp)
    assert nonce and f'<script nonce="{nonce.group(1)}">' in page
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert resp.getheader("Set-Cookie") is None
    assert not re.search(r"(src|href)=\"https?://", page)  # nothing loaded from elsewhere
