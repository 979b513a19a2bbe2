"""Make docs/report.png: the report of the embedded default (`sn probe` with its defaults), in headless Chromium.

    SN_HOME=/tmp/sn-shot python docs/screenshot.py      # probes first when the workspace has no run yet
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from sn_store import leaderboard
from sn_store.report import write_report

OUT = Path(__file__).with_name("report.png")


def main() -> None:
    if not leaderboard.default_db_path().exists():
        from sn_store.flows.probe import probe

        probe()
    page = write_report(leaderboard.latest_run())
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        tab = browser.new_page(viewport={"width": 1100, "height": 800})
        tab.goto(page.resolve().as_uri())
        tab.screenshot(path=str(OUT), full_page=True)
        browser.close()
    with Image.open(OUT) as im:  # 256 colours keep text and plots sharp at a fraction of the size
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(OUT, optimize=True)
    print(OUT, f"{OUT.stat().st_size / 1024:.0f} KB", file=sys.stderr)


if __name__ == "__main__":
    main()
