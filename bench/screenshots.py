"""Screenshots of every dashboard page at 390 px (a phone) and 1280 px (a laptop), into docs/screenshots/.

The store is tests/test_browser_widths.py's showcase (the same pages its width test checks): the vLLM-Omni corpus
(../shared/corpus/), the dashboard tests' perf and JUnit stores (a PR with two pushes, flaky tests, reruns) and a
synthetic Ascend910B3 history with a regression, an improvement and a CANN change, filled in a fresh SQLite
file and served by uvicorn on 127.0.0.1; pages are drawn by Debian's Chromium through Playwright, on the suite's
clock (GUARDRAIL_NOW) so ages read the same on every run. It prints, per page and width, the document's width and
the smallest text, and exits 1 when a page scrolls sideways.

    python bench/screenshots.py [--out docs/screenshots] [--only overview,series] [--max-height 6000]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.timeline import NOW  # noqa: E402

# The fixtures are dated relative to the suite's NOW; the product's clock must read the same.
os.environ.setdefault("GUARDRAIL_NOW", NOW.isoformat())


def _shrink(path: Path) -> None:
    """A 256-colour palette without dithering: a third of the bytes, and flat UI colours stay exact enough."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--only", default="", help="comma-separated page names (default: every page)")
    ap.add_argument(
        "--max-height", type=int, default=6000, help="px; a taller page is cut there (the series index is ~28,000)"
    )
    args = ap.parse_args()

    from tests.test_browser_dashboard import ARGS, CHROMIUM, serving, sync_api
    from tests.test_browser_widths import MEASURE, WIDTHS, fill_showcase, pages
    from web.app import create_app

    only = {x for x in args.only.split(",") if x}
    args.out.mkdir(parents=True, exist_ok=True)
    wide = []
    with tempfile.TemporaryDirectory(prefix="guardrail-shots-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'guardrail.db'}"
        ids = fill_showcase(url, Path(tmp))
        with serving(create_app(url, cache_ttl=0)) as base, sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                for width in WIDTHS:
                    context = browser.new_context(viewport={"width": width, "height": 900})
                    page = context.new_page()
                    page.set_default_timeout(15000)
                    for name, path in pages(ids).items():
                        if only and name not in only:
                            continue
                        page.goto(base + path)
                        if "/series/" in path:
                            page.wait_for_selector("#series-chart[data-ready='1'] canvas")
                        m = page.evaluate(MEASURE)
                        height = page.evaluate("document.documentElement.scrollHeight")
                        shot = args.out / f"{name}-{width}.png"
                        clip = {"x": 0, "y": 0, "width": width, "height": min(height, args.max_height)}
                        page.screenshot(path=str(shot), full_page=True, clip=clip)
                        _shrink(shot)
                        small = m["small"] or {"size": 0, "text": ""}
                        flag = "  WIDER THAN THE WINDOW" if m["scroll"] > m["inner"] else ""
                        print(
                            f"{width:>5} {name:<15} {path:<48} width {m['scroll']:>5} px  height {height:>6} px  "
                            f"smallest text {small['size']:.1f} px ({small['text'][:20]!r}){flag}"
                        )
                        if flag:
                            wide.append(f"{name} at {width} px")
                    context.close()
            finally:
                browser.close()
    n = {w: len(list(args.out.glob(f"*-{w}.png"))) for w in (390, 1280)}
    print(f"{n[390]} + {n[1280]} screenshots in {args.out}")
    if wide:
        print("wider than the window: " + ", ".join(wide))
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
