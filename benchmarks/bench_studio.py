"""The studio's latency: from a slider change to the new picture, on a 512x512 image.

Target (issue 17): under 300 ms. A real server (uvicorn, on 127.0.0.1 in a thread) gets
what the page sends after a slider moves, over HTTP: the whole recipe with one parameter
changed (so the recipe is validated and the synthesizer rebuilt, as on a real change),
and the time runs until the answer (the picture after, the label overlay and the
instance table, as PNG data URLs in JSON) is read and parsed. Per generator alone (three
instances), and for the demo recipe's mix. The browser's own share (decoding two PNGs)
is printed by the end-to-end test (tests/test_studio.py, -s): about 70 ms in total there.

    python benchmarks/bench_studio.py [--repeat 20] [--generators scratch,dent]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from defectsynth.studio import Studio
from defectsynth.studio.app import StudioServer

ROOT = Path(__file__).parents[1]
TARGET_MS = 300.0


def make_project(folder: Path) -> Path:
    """A 512x512 colour image (cut from a fixture) and a recipe with the demo's mix."""
    (folder / "images").mkdir()
    photo = cv2.imread(str(ROOT / "fixtures" / "images" / "brushed_metal.png"))
    cv2.imwrite(str(folder / "images" / "metal512.png"), photo[:512, :512])
    recipe = folder / "bench.yaml"
    recipe.write_text(
        "seed: 1\ninputs: {images: images}\ninstances: [3, 3]\n"
        "defects: [scratch, dent, crack, pit, stain, discoloration]\n",
        encoding="utf-8",
    )
    return recipe


def post(server: StudioServer, body: dict[str, Any]) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request("POST", "/api/preview", body=json.dumps(body).encode(), headers={
        "Host": f"127.0.0.1:{server.port}", "X-Studio-Token": server.token,
        "Content-Type": "application/json"})
    resp = conn.getresponse()
    data: dict[str, Any] = json.loads(resp.read())
    conn.close()
    if resp.status != 200:
        raise RuntimeError(data)
    return data


def slider_values(schema: dict[str, Any], repeat: int) -> tuple[str, list[Any]]:
    """A numeric parameter of a generator and ``repeat`` [lo, hi] positions of its slider
    inside the generator's own variation."""
    for p in schema["params"]:
        if p["control"] == "range" and p["vary"]:
            lo, hi = (float(v) for v in p["vary"])
            steps = [lo + (hi - lo) * k / (repeat + 1) for k in range(1, repeat + 1)]
            if p["kind"] == "int":
                return p["name"], [[int(lo), max(int(lo), round(s))] for s in steps]
            return p["name"], [[round(lo, 4), round(s, 4)] for s in steps]
    return "", []


def measure(server: StudioServer, recipe: dict[str, Any], entry: int, name: str,
            values: list[Any]) -> tuple[list[float], list[float]]:
    """Round trips (ms) and the render's share (ms) of one slider's moves."""
    totals, renders = [], []
    for v in values:
        changed = json.loads(json.dumps(recipe))
        if name:
            changed["defects"][entry].setdefault("params", {})[name] = v
        t = time.perf_counter()
        answer = post(server, {"recipe": changed, "image": "metal512.png", "seed": 1})
        totals.append((time.perf_counter() - t) * 1000)
        renders.append(float(answer["render_ms"]))
    return totals, renders


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--generators", default="scratch,dent,crack,pit,stain,discoloration")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        studio = Studio(make_project(Path(tmp)))
        schemas = {g["name"]: g for g in studio.state()["generators"]}
        server = StudioServer(studio).start()
        try:
            post(server, {"recipe": studio.data, "before": True})  # warm up: decode, import
            everything: list[float] = []
            print(f"{'entries':<16}{'median':>9}{'p95':>9}{'max':>9}{'render':>9}  (ms; "
                  f"{args.repeat} slider moves each)")
            mixes = [(g, [{"generator": g}]) for g in args.generators.split(",") if g]
            mixes.append(("demo mix", studio.data["defects"]))
            for label, defects in mixes:
                recipe = dict(studio.data, defects=defects)
                first = defects[0]["generator"] if isinstance(defects[0], dict) else defects[0]
                name, values = slider_values(schemas[first], args.repeat)
                recipe["defects"] = [d if isinstance(d, dict) else {"generator": d}
                                     for d in defects]
                totals, renders = measure(server, recipe, 0, name, values)
                everything += totals
                q95 = statistics.quantiles(totals, n=20)[-1]
                print(f"{label:<16}{statistics.median(totals):9.1f}{q95:9.1f}"
                      f"{max(totals):9.1f}{statistics.median(renders):9.1f}")
        finally:
            server.stop()
    median = statistics.median(everything)
    q95 = statistics.quantiles(everything, n=20)[-1]
    verdict = "meets" if q95 < TARGET_MS else "MISSES"
    print(f"\nslider change -> new picture (server side, 512x512): median {median:.0f} ms, "
          f"95th percentile {q95:.0f} ms; {verdict} the {TARGET_MS:.0f} ms target")


if __name__ == "__main__":
    main()
