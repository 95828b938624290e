"""Remake docs/report.png and docs/report_examples.png: the demo dataset's report page
(with the fixture real defects overlaid), shot in headless Chromium.

    python scripts/make_report_screenshot.py        # needs .[report,browser,fit] and
                                                    # apt-get install chromium chromium-driver
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
SHOTS = (("report.png", None, 1500), ("report_examples.png", "examples", 900))


def main() -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory() as tmp:
        out, page = Path(tmp) / "demo", Path(tmp) / "demo.html"
        run = [sys.executable, "-m", "defectsynth.cli"]
        subprocess.run([*run, "generate", "fixtures/recipes/demo.yaml", "-o", str(out),
                        "--no-progress", "-j", "1"], check=True, cwd=ROOT)
        subprocess.run([*run, "report", str(out), "--real", "fixtures/defects/coco",
                        "--sources", "fixtures/images", "-o", str(page)], check=True, cwd=ROOT)
        opts = webdriver.ChromeOptions()
        opts.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1300,1500"):
            opts.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"),
                                  options=opts)
        try:
            driver.get(page.as_uri())
            for name, anchor, height in SHOTS:
                y = 0 if anchor is None else driver.execute_script(
                    f"return document.getElementById('{anchor}').getBoundingClientRect().top"
                    " + window.scrollY - 10"
                )
                driver.execute_script(f"window.scrollTo(0, {y})")
                shot = Path(tmp) / name
                driver.save_screenshot(str(shot))
                image = cv2.imread(str(shot))[:height]
                small = cv2.resize(image, (image.shape[1] * 3 // 4, image.shape[0] * 3 // 4),
                                   interpolation=cv2.INTER_AREA)
                cv2.imwrite(str(ROOT / "docs" / name), small)
                print(f"wrote docs/{name}")
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
