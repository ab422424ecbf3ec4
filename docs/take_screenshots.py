"""Screenshots of the dashboard for the README, from real runs on the emulated stack.

    python docs/take_screenshots.py        # writes docs/dashboard-*.png (about two minutes)

Starts the local stack with the bundled example competition, runs jobs through the real
pipeline, and photographs the pages in headless Chromium (Debian's package).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from batch_agent.local.stack import EmulatedStack, StackOptions  # noqa: E402

SLUG = "breast-cancer-diagnosis"
URL = f"https://www.kaggle.com/competitions/{SLUG}"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    with tempfile.TemporaryDirectory() as work, EmulatedStack(StackOptions(work_dir=Path(work))) as stack:
        stack.seed_competition(SLUG, ROOT / "examples" / SLUG)
        with stack.api_server(8765) as base, httpx.Client(base_url=base, timeout=30) as api:
            # A competition that is not cached fails at prepare (no Kaggle here): a real FAILED row.
            api.post("/run", json={"url": "https://www.kaggle.com/competitions/titanic", "time_limit": 60})
            api.post("/run", json={"url": URL, "time_limit": 60, "max_attempts": 1, "compute": "cpu"})
            job_id = api.post("/run", json={"url": URL, "time_limit": 150, "max_attempts": 4}).json()["job_id"]
            deadline = time.monotonic() + 600
            while api.get(f"/status/{job_id}").json()["status"] not in ("SUCCEEDED", "FAILED"):
                if time.monotonic() > deadline:
                    raise SystemExit("the job did not finish in 10 minutes")
                time.sleep(2)
            api.post("/run", json={"url": URL, "time_limit": 120})  # still running in the list's picture
            time.sleep(8)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1200, "height": 520})
                page.goto(base + "/")
                page.locator("#jobs tbody tr").first.wait_for()
                page.screenshot(path=str(ROOT / "docs" / "dashboard-jobs.png"))
                page.set_viewport_size({"width": 1200, "height": 900})
                page.goto(f"{base}/#/jobs/{job_id}")
                page.locator("#logs details").first.wait_for()
                page.screenshot(path=str(ROOT / "docs" / "dashboard-job.png"), full_page=True)
                phone = browser.new_page(viewport={"width": 390, "height": 760}, is_mobile=True)
                phone.goto(f"{base}/#/jobs/{job_id}")
                phone.locator("#chart svg").wait_for()
                phone.screenshot(path=str(ROOT / "docs" / "dashboard-phone.png"))
                browser.close()


if __name__ == "__main__":
    main()
