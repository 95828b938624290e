"""Regenerate the defect gallery: ``docs/gallery/<generator>.png`` for every built-in generator.

Each strip has one row per fixture (``fixtures/images`` with ``fixtures/masks``) and, for
each of a few seeds, four panels around the defect: the clean image, the image with the
defect, the instance mask, and the labels drawn (``Sample.draw()``). Defects are made by
the public API exactly as a user would: ``Synthesizer([{"generator": name}], instances=1,
product_mask=mask)``. Also refreshes the parameter tables in ``docs/defects.md`` (between
``<!-- params:NAME -->`` markers) from the generators' ``Params``.

    python scripts/make_gallery.py [--seeds 3] [--only scratch,dent]

``--variety`` instead draws ``docs/gallery/transplant_variety.png``: a few defects of the
demo library as extracted, each followed by eight transplants of it onto a fixture with
the default variation (``Synthesizer([{"generator": "transplant", "params": {"pick":
...}}])``: only the defect is fixed).

    python scripts/make_gallery.py --variety

``--layout`` draws ``docs/gallery/transplant_layout.png``: opens and shorts that the pcb
plugin draws on one procedural board scan, used as a transplant source, placed on another
with ``context: 0`` (as drawn) and with the default ``context`` (where the board has the
layout they were cut from). Needs ``pip install ./plugins/pcb``.

    python scripts/make_gallery.py --layout

Plugin generators are drawn when named with ``--only`` (any registered generator), and
``--combine NAME`` puts every named generator in one picture, one row each
(``docs/gallery/NAME.png``). ``--fixtures`` picks the fixtures by name; ``scan`` is an
extra one made here, a DeepPCB-like binarised board scan (black copper on white, JPEG
noise). The pcb plugin's strip:

    python scripts/make_gallery.py --combine pcb --fixtures pcb,scan --seeds 1 \
        --only pcb_open,pcb_short,pcb_mousebite,pcb_spur,pcb_spurious_copper,pcb_pinhole
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import cv2
import numpy as np

from defectsynth import DefectGenerator, Sample, Synthesizer, source_id
from defectsynth.generator import describe_range, param_info
from defectsynth.plugins import BUILTIN_PLUGINS, get_host

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
GALLERY = ROOT / "docs" / "gallery"
DOC = ROOT / "docs" / "defects.md"
PANEL = 176
TITLES = ("clean", "defect", "mask", "labels")


def load_fixtures() -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for path in sorted((FIXTURES / "images").glob("*.png")):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        mask = cv2.imread(str(FIXTURES / "masks" / path.name), cv2.IMREAD_GRAYSCALE)
        if image is None or mask is None:
            raise SystemExit(f"cannot read fixture {path.name} or its mask")
        out.append((path.stem, image, mask))
    return out


def procedural_scan(seed: int = 0, size: int = 640) -> np.ndarray:
    """A binarised board scan like DeepPCB's (black copper on white, 8-bit gray): rows of
    traces of several widths with 45-degree jogs, ring pads at their ends, a row of
    rectangular pads with holes and a pour with its clearance, JPEG-compressed."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 255, np.uint8)
    y = 40
    while y < size - 170:
        w = int(rng.integers(8, 18))
        x = int(rng.integers(10, 60))
        while x < size - 90:
            pts = [(x, y)]
            end = min(x + int(rng.integers(90, 260)), size - 30)
            if rng.random() < 0.5 and end - x > 90:  # a 45-degree jog down and back
                j = x + int(rng.integers(20, 50))
                d = int(rng.integers(8, 16))
                pts += [(j, y), (j + d, y + d), (j + d + 30, y + d), (j + 2 * d + 30, y)]
            pts.append((end, y))
            cv2.polylines(img, [np.array(pts, np.int32)], False, 0, w, cv2.LINE_8)
            if rng.random() < 0.7:
                cv2.circle(img, (end, y), w // 2 + 7, 0, -1)
                cv2.circle(img, (end, y), 4, 255, -1)
            x = end + int(rng.integers(30, 70))
        y += w + int(rng.integers(14, 30)) + 16
    for k in range(6):  # a row of pads
        cx = 50 + k * 70
        cv2.rectangle(img, (cx - 18, size - 140), (cx + 18, size - 100), 0, -1)
        cv2.circle(img, (cx, size - 120), 5, 255, -1)
    cv2.rectangle(img, (size - 190, size - 150), (size - 20, size - 20), 0, -1)  # a pour
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img


def window(sample: Sample, shape: tuple[int, int]) -> tuple[int, int, int]:
    """(x0, y0, side) of a square crop around the first defect (possibly cutting a large
    one: the panels are for judging the rendering, the full picture is in the labels)."""
    h, w = shape
    x1, y1, x2, y2 = sample.annotations[0].box
    # small defects at 2x, most at 1x, large ones shrunk a little (never more than 208/176)
    want = 1.3 * max(x2 - x1, y2 - y1)
    side = PANEL // 2 if want <= PANEL // 2 else PANEL if want <= PANEL else min(208, int(want))
    side = min(side, h, w)
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    x0 = int(np.clip(cx - side // 2, 0, w - side))
    y0 = int(np.clip(cy - side // 2, 0, h - side))
    return x0, y0, side


def panel(img: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    crop = img[y0 : y0 + side, x0 : x0 + side]
    interp = cv2.INTER_AREA if side > PANEL else cv2.INTER_NEAREST
    return cv2.resize(bgr(crop), (PANEL, PANEL), interpolation=interp)


def caption(img: np.ndarray, text: str) -> None:
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.36, 1)
    cv2.rectangle(img, (0, 0), (tw + 6, th + 7), (0, 0, 0), -1)
    cv2.putText(
        img, text, (3, th + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA
    )


def footer(img: np.ndarray, text: str) -> None:
    """A caption in the bottom-left corner."""
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.36, 1)
    h = img.shape[0]
    cv2.rectangle(img, (0, h - th - 7), (tw + 6, h), (0, 0, 0), -1)
    cv2.putText(
        img, text, (3, h - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA
    )


def cell(
    name: str, fixture: str, image: np.ndarray, mask: np.ndarray, seed: int,
    label: bool = False,
) -> tuple[list[np.ndarray], int]:
    """Four panels for one (generator, fixture, seed); the seed moves on if nothing was
    placed (the visibility gate dropped every attempt)."""
    synth = Synthesizer([{"generator": name}], instances=1, product_mask=mask)
    sid = source_id(f"{fixture}.png")
    for s in range(seed, seed + 50):
        sample = synth.apply(image, seed=s, source_id=sid)
        if sample.annotations:
            break
    else:
        raise SystemExit(f"{name} on {fixture}: no instance passed the gate in 50 seeds")
    ann = sample.annotations[0]
    x0, y0, side = window(sample, image.shape[:2])
    clean = panel(image, x0, y0, side)
    defect = panel(sample.image, x0, y0, side)
    m = panel((ann.mask * 255).astype(np.uint8), x0, y0, side)
    labels = panel(sample.draw(), x0, y0, side)
    az, el = sample.light
    caption(clean, f"{name}: {fixture} seed {s}" if label else f"{fixture} seed {s}")
    caption(defect, f"light az {az:.0f} el {el:.0f}")
    caption(m, f"area {ann.area} px")
    caption(labels, f"box {ann.box[2] - ann.box[0]}x{ann.box[3] - ann.box[1]}")
    return [clean, defect, m, labels], s


def combined(
    names: list[str], fixtures: list[tuple[str, np.ndarray, np.ndarray]], seeds: int
) -> tuple[np.ndarray, list[str]]:
    """One row per generator: ``seeds`` cells on each fixture, the generator named in the
    first panel of each cell."""
    rows = []
    used: list[str] = []
    gap = np.full((PANEL, 6, 3), 255, np.uint8)
    for name in names:
        parts: list[np.ndarray] = []
        for fixture, image, mask in fixtures:
            seed = 1
            for _ in range(seeds):
                panels, s = cell(name, fixture, image, mask, seed, label=True)
                used.append(f"{name}:{fixture}:{s}")
                seed = s + 1
                if parts:
                    parts.append(gap)
                parts.extend(panels)
        rows.append(np.hstack(parts))
    width = rows[0].shape[1]
    header = np.full((22, width, 3), 255, np.uint8)
    for k in range(len(fixtures) * seeds):
        for j, t in enumerate(TITLES):
            x = k * (4 * PANEL + 6) + j * PANEL + 6
            cv2.putText(
                header, t, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
            )
    sep = np.full((3, width, 3), 255, np.uint8)
    body: list[np.ndarray] = [header]
    for r in rows:
        body += [r, sep]
    return np.vstack(body[:-1]), used


def strip(
    name: str, fixtures: list[tuple[str, np.ndarray, np.ndarray]], seeds: int
) -> tuple[np.ndarray, list[str]]:
    rows = []
    used: list[str] = []
    gap = np.full((PANEL, 6, 3), 255, np.uint8)
    if get_host().generator(name).placement == "edge":
        # an edge generator needs a product edge in the image: the fixtures that have
        # one, three rows each
        with_edge = [f for f in fixtures if not f[2].all()]
        fixtures = [f for f in with_edge for _ in range(3)]
    starts: dict[str, int] = {}
    for fixture, image, mask in fixtures:
        parts: list[np.ndarray] = []
        seed = starts.get(fixture, 1)
        for k in range(seeds):
            panels, s = cell(name, fixture, image, mask, seed)
            used.append(f"{fixture}:{s}")
            seed = s + 1
            if k:
                parts.append(gap)
            parts.extend(panels)
        starts[fixture] = seed
        rows.append(np.hstack(parts))
    width = rows[0].shape[1]
    header = np.full((22, width, 3), 255, np.uint8)
    for k in range(seeds):
        for j, t in enumerate(TITLES):
            x = k * (4 * PANEL + 6) + j * PANEL + 6
            cv2.putText(
                header, t, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA
            )
    sep = np.full((3, width, 3), 255, np.uint8)
    body: list[np.ndarray] = [header]
    for r in rows:
        body += [r, sep]
    return np.vstack(body[:-1]), used


# (demo library entry, fixture it is placed on): a coloured stain on blue paint shows the
# recolouring, a scratch and a crack show the bends and stretches
VARIETY = ((6, "painted_casing"), (7, "brushed_metal"), (0, "machined_flange"))
VARIETY_PANEL = 136


def variety_strip(fixtures: list[tuple[str, np.ndarray, np.ndarray]], n: int = 8) -> np.ndarray:
    """One row per source defect: the entry as extracted (mask outlined), then ``n``
    transplants of it with the default variation, cropped to the same window size."""
    from defectsynth.transplant import load_library

    lib = load_library("")
    by_name = {f: (image, mask) for f, image, mask in fixtures}
    gap = np.full((VARIETY_PANEL, 6, 3), 255, np.uint8)
    rows = []
    for k, fixture in VARIETY:
        entry = lib.entries[k]
        image, mask = by_name[fixture]
        side = int(2.0 * max(entry.shape))
        src = np.clip(np.rint(entry.pixels * 255), 0, 255).astype(np.uint8)
        src = bgr(src[:, :, 0] if src.shape[2] == 1 else src)
        contours, _ = cv2.findContours(
            entry.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        big = cv2.resize(src, None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
        cv2.drawContours(big, [c * 4 + 2 for c in contours], -1, (0, 255, 255), 1)
        first = np.full((VARIETY_PANEL, VARIETY_PANEL, 3), 255, np.uint8)
        f = min(VARIETY_PANEL / big.shape[0], VARIETY_PANEL / big.shape[1])
        big = cv2.resize(big, (int(big.shape[1] * f), int(big.shape[0] * f)),
                         interpolation=cv2.INTER_AREA)
        first[: big.shape[0], : big.shape[1]] = big
        caption(first, f"source: {entry.category}")
        panels: list[np.ndarray] = [first, gap]
        synth = Synthesizer(
            [{"generator": "transplant", "params": {"pick": (k + 0.5) / len(lib)}}],
            instances=1,
            product_mask=mask,
        )
        sid = source_id(f"{fixture}.png")
        seed = 1
        for _ in range(n):
            while True:
                sample = synth.apply(image, seed=seed, source_id=sid)
                seed += 1
                if sample.annotations:
                    break
            ann = sample.annotations[0]
            x1, y1, x2, y2 = ann.box
            h, w = image.shape[:2]
            x0 = int(np.clip((x1 + x2) // 2 - side // 2, 0, w - side))
            y0 = int(np.clip((y1 + y2) // 2 - side // 2, 0, h - side))
            crop = bgr(sample.image[y0 : y0 + side, x0 : x0 + side])
            tile = cv2.resize(crop, (VARIETY_PANEL, VARIETY_PANEL), interpolation=cv2.INTER_CUBIC)
            p = ann.params
            caption(tile, f"warp {p['warp']:.2f} sev {p['severity']:.2f}")
            footer(tile, f"{p['stretch_along']:.2f} x {p['stretch_across']:.2f} "
                         f"recol {p['recolor']:.2f}")
            panels.append(tile)
        rows.append(np.hstack(panels))
    sep = np.full((3, rows[0].shape[1], 3), 255, np.uint8)
    body: list[np.ndarray] = []
    for r in rows:
        body += [r, sep]
    return np.vstack(body[:-1])


def layout_strip(n: int = 6) -> np.ndarray:
    """Rows: transplanted opens, then shorts, placed as drawn (``context: 0``) and by the
    layout they were cut from (default ``context``); each panel a defect with its label's
    outline in red."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        kinds = (("open", "pcb_open"), ("short", "pcb_short"))
        for kind, gen in kinds:
            (src / "images" / kind).mkdir(parents=True)
            (src / "masks" / kind).mkdir(parents=True)
            synth = Synthesizer([{"generator": gen}], instances=4)
            for k in range(3):
                board = procedural_scan(seed=1 + k)
                sample = synth.apply(board, seed=k)
                mask = np.zeros(board.shape, np.uint8)
                for a in sample.annotations:
                    mask[a.mask] = 255
                cv2.imwrite(str(src / "images" / kind / f"b{k}.png"), sample.image)
                cv2.imwrite(str(src / "masks" / kind / f"b{k}.png"), mask)
        host = procedural_scan(seed=0)
        for kind, _ in kinds:
            for context in (0.0, None):
                params: dict[str, object] = {"source": str(src), "pick": [0.0, 1.0]}
                if context is not None:
                    params["context"] = context
                synth = Synthesizer([{"generator": "transplant", "params": params}],
                                    instances=1)
                panels: list[np.ndarray] = []
                for seed in range(400):
                    if len(panels) == n:
                        break
                    sample = synth.apply(host, seed=seed, source_id=source_id("scan.png"))
                    if not sample.annotations or sample.annotations[0].category != kind:
                        continue
                    ann = sample.annotations[0]
                    x0, y0, side = window(sample, host.shape)
                    shown = bgr(sample.image.copy())
                    outline, _ = cv2.findContours(ann.mask.astype(np.uint8),
                                                  cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                    cv2.drawContours(shown, outline, -1, (0, 0, 255), 1)
                    tile = panel(shown, x0, y0, side)
                    caption(tile, f"{kind}, context {'0' if context == 0.0 else 'default'}")
                    panels.append(tile)
                panels += [np.zeros((PANEL, PANEL, 3), np.uint8)] * (n - len(panels))
                rows.append(np.hstack(panels))
    return np.vstack(rows)


def params_table(cls: type[DefectGenerator]) -> str:
    lines = [
        "| param | default | allowed | drawn when not set | meaning |",
        "|---|---|---|---|---|",
    ]
    for f in dataclasses.fields(cls.Params):
        info = param_info(f)
        vary = "fixed" if info.vary is None else ", ".join(_fmt(v) for v in info.vary)
        if info.vary is not None and info.choices is None and len(info.vary) == 2:
            vary = f"[{_fmt(info.vary[0])}, {_fmt(info.vary[1])}]"
        allowed = describe_range(f)
        lines.append(f"| `{f.name}` | {_fmt(f.default)} | {allowed} | {vary} | {info.doc} |")
    return "\n".join(lines)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, str):
        return f"`{v}`"
    return str(v)


def refresh_doc(classes: dict[str, type[DefectGenerator]]) -> None:
    if not DOC.exists():
        return
    text = DOC.read_text()
    for name, cls in classes.items():
        pattern = re.compile(rf"(<!-- params:{name} -->\n).*?(<!-- /params:{name} -->)", re.S)
        table = params_table(cls)

        def fill(m: re.Match[str], table: str = table) -> str:
            return m.group(1) + table + "\n" + m.group(2)

        text = pattern.sub(fill, text)
    if text != DOC.read_text():  # others edit this file too: write only a real change
        DOC.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds (panel groups) per fixture")
    ap.add_argument("--only", default="",
                    help="comma-separated generator names (any registered generator)")
    ap.add_argument("--fixtures", default="",
                    help="comma-separated fixture names (default all); 'scan' adds a "
                    "procedural binarised PCB scan")
    ap.add_argument("--combine", default="",
                    help="one picture NAME.png with a row per generator named by --only")
    ap.add_argument("--out", default=str(GALLERY))
    ap.add_argument(
        "--variety",
        action="store_true",
        help="only draw transplant_variety.png (demo defects, eight variations of each)",
    )
    ap.add_argument(
        "--layout",
        action="store_true",
        help="only draw transplant_layout.png (board defects placed as drawn and by layout)",
    )
    args = ap.parse_args()
    if args.variety or args.layout:  # a single transplant picture
        name = "transplant_variety" if args.variety else "transplant_layout"
        path = Path(args.out) / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        picture = variety_strip(load_fixtures()) if args.variety else layout_strip()
        cv2.imwrite(str(path), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{path}  {picture.shape[1]}x{picture.shape[0]}")
        return
    host = get_host()
    builtin = {m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS}
    classes = {
        n: host.generator(n)
        for n in host.generators
        if (p := host.provider("generator", n)) is not None and p.name in builtin
    }
    only = [n for n in args.only.split(",") if n]
    for n in only:  # plugin generators, when named
        if n not in classes:
            classes[n] = host.generator(n)
    fixtures = load_fixtures()
    picked = [n for n in args.fixtures.split(",") if n]
    if picked:
        known = {f[0]: f for f in fixtures}
        scan = procedural_scan()
        known["scan"] = ("scan", scan, np.full(scan.shape, 255, np.uint8))
        missing = [n for n in picked if n not in known]
        if missing:
            raise SystemExit(f"unknown fixtures: {', '.join(missing)}; known: "
                             f"{', '.join(known)}")
        fixtures = [known[n] for n in picked]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.combine:
        if not only:
            raise SystemExit("--combine needs --only with the generators to draw")
        picture, used = combined(only, fixtures, args.seeds)
        path = out / f"{args.combine}.png"
        cv2.imwrite(str(path), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(f"{path}  {picture.shape[1]}x{picture.shape[0]}  seeds {' '.join(used)}")
        return
    for name in classes:
        if only and name not in only:
            continue
        picture, used = strip(name, fixtures, args.seeds)
        path = out / f"{name}.png"
        cv2.imwrite(str(path), picture, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        print(
            f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  "
            f"{picture.shape[1]}x{picture.shape[0]}  seeds {' '.join(used)}"
        )
    refresh_doc(classes)


if __name__ == "__main__":
    main()
