"""The dashboard in headless Chromium against the API on loopback and the emulated stack (moto server).

Jobs are written into DynamoDB/S3 directly, so each test controls what the page must
show; one test starts a real run from the form and follows it to its submission.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import sync_playwright

from batch_agent.local.stack import EmulatedStack, StackOptions
from batch_agent.service import jobs
from batch_agent.service.jobs import AttemptSummary
from batch_agent.solver.report import write_report
from tests.integration.lambdas.dashboard_jobs import SUBMISSION_CSV, put_attempt_logs, put_finished_job, put_job

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "breast-cancer-diagnosis"
SLUG = "breast-cancer-diagnosis"
BULK_JOBS = 500
POLL_MS = 300
WAIT_MS = 15_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedStack]:
    with EmulatedStack(StackOptions(work_dir=tmp_path_factory.mktemp("stack"), memory_limit_mb=2048)) as emulated:
        emulated.seed_competition(SLUG, EXAMPLE)
        # Older than anything a test writes: the list shows them after the tests' own jobs.
        start = datetime.now(UTC) - timedelta(days=30)
        for i in range(BULK_JOBS):
            put_job(emulated, f"bulk-{i:03d}", created=start + timedelta(minutes=i), status="SUCCEEDED",
                    stage="done", cv_score=0.5 + i / 10_000)
        yield emulated


@pytest.fixture(scope="module")
def base_url(stack: EmulatedStack) -> Iterator[str]:
    with stack.api_server(_free_port()) as base:
        yield base


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


def _new_page(browser: Any, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(WAIT_MS)
    page.add_init_script(f"window.KAGGLE_SOLVER_POLL_MS = {POLL_MS};")
    return page


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = _new_page(browser, viewport={"width": 1280, "height": 900})
    yield page
    page.context.close()


def _mark_document(page: Any) -> None:
    # A full reload would lose this property: the checks that follow prove the update came by polling.
    page.evaluate("window.__sameDocument = true")


def _same_document(page: Any) -> bool:
    return bool(page.evaluate("window.__sameDocument === true"))


def test_job_list_shows_the_newest_jobs_first_and_pages_through_500(
    stack: EmulatedStack, base_url: str, page: Any
) -> None:
    newest = put_job(stack, "newest-competition", status="RUNNING", stage="train", attempt=2)

    page.goto(base_url + "/")
    first_row = page.locator("#jobs tbody tr").first
    first_row.wait_for()

    assert "newest-competition" in first_row.inner_text()
    assert "train · attempt 2/5" in first_row.inner_text()
    assert page.locator("#jobs tbody tr").count() == 50
    seen = set(page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.job)"))
    assert newest.job_id in seen
    started = time.monotonic()
    pages = 1
    while not page.locator("#next-page").is_disabled():
        page.click("#next-page")
        pages += 1
        page.wait_for_function(f"document.getElementById('page-label').textContent === 'page {pages}'")
        page.wait_for_function("document.querySelectorAll('#jobs tbody tr').length > 0")
        seen |= set(page.locator("#jobs tbody tr").evaluate_all("rows => rows.map(r => r.dataset.job)"))
    per_page_s = (time.monotonic() - started) / max(1, pages - 1)

    assert len(seen) >= BULK_JOBS + 1
    assert per_page_s < 5, f"{per_page_s:.1f} s per page of 50 jobs"
    # The oldest bulk job is the last row of the last page.
    assert "bulk-000" in page.locator("#jobs tbody tr").last.inner_text()


def test_job_list_fits_a_phone_screen(stack: EmulatedStack, base_url: str, browser: Any) -> None:
    put_job(stack, "a-competition-with-a-rather-long-name-for-a-phone", status="RUNNING", stage="train", attempt=1)
    page = _new_page(browser, viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True)
    try:
        page.goto(base_url + "/")
        page.locator("#jobs tbody tr").first.wait_for()

        # The page itself never scrolls sideways; only the table's own box may.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        assert page.locator("#jobs tbody tr").first.is_visible()
        assert page.locator("#nav-new").is_visible()
    finally:
        page.context.close()


def test_following_a_job_shows_its_attempts_chart_rank_logs_and_download_link(
    stack: EmulatedStack, base_url: str, page: Any
) -> None:
    job = put_finished_job(stack, "finished-competition")

    page.goto(base_url + "/")
    page.locator(f"tr[data-job='{job.job_id}'] a").click()
    page.locator("#chart svg").wait_for()

    assert page.url.endswith(f"#/jobs/{job.job_id}")
    assert "finished-competition" in page.locator("h1").inner_text()
    assert page.locator("#chart circle.attempt-point").count() == 2
    assert page.locator("#chart path.attempt-failed").count() == 1
    assert page.locator("#chart path.best-line").count() == 1
    assert "best 0.992" in (page.locator("#chart text.final-label").text_content() or "")
    rows = page.locator("#attempts tbody tr")
    assert rows.count() == 3
    assert "template" in rows.nth(0).inner_text()
    assert "Claude (draft)" in rows.nth(1).inner_text() and "ModuleNotFoundError" in rows.nth(1).inner_text()
    assert "3 of 120" in page.locator("#rank").inner_text()
    assert "gold ≤ 10 · silver ≤ 24 · bronze ≤ 48" in page.locator("#leaderboard").inner_text()
    assert "$0.0450" in page.inner_text("main")
    page.locator("#logs details").first.wait_for()
    assert page.locator("#logs details").count() == 3
    page.locator("#logs details summary").first.click()
    assert "fold 5/5 done (lightgbm)" in page.locator("#logs pre.log-tail").first.inner_text()
    assert page.locator("#cancel").count() == 0  # finished: nothing to cancel
    link = page.locator("#download")
    assert link.is_visible()
    href = link.get_attribute("href")
    assert href is not None and href.startswith(stack.endpoint_for("s3"))
    assert httpx.get(href).text == SUBMISSION_CSV


def test_job_page_updates_live_without_a_reload(stack: EmulatedStack, base_url: str, page: Any) -> None:
    first = AttemptSummary(number=1, program="lightgbm", origin="template", ok=True, cv_score=0.95, seconds=10.0)
    job = put_job(stack, "live-competition", status="RUNNING", stage="train", attempt=1, attempts=[first])
    page.goto(f"{base_url}/#/jobs/{job.job_id}")
    page.locator("#chart circle.attempt-point").first.wait_for()
    assert page.locator("#cancel").is_visible()
    _mark_document(page)

    second = AttemptSummary(number=2, program="xgboost", origin="template", ok=True, cv_score=0.97, seconds=8.0)
    jobs.update_job(stack.client("dynamodb"), stack.table, job.job_id, attempt=2, stage="validate",
                    cv_score=0.97, attempts=[first.model_dump(), second.model_dump()])
    page.wait_for_function("document.querySelectorAll('#chart circle.attempt-point').length === 2")
    assert "validate · attempt 2/5" in page.inner_text("main")

    jobs.update_job(stack.client("dynamodb"), stack.table, job.job_id, status="SUCCEEDED", stage="done")
    page.wait_for_function("document.querySelector('h1 .status').textContent === 'SUCCEEDED'")

    assert page.locator("#cancel").count() == 0
    assert "0.97" in page.locator("#best-score").inner_text()
    assert _same_document(page)


def test_job_list_updates_live_without_a_reload(stack: EmulatedStack, base_url: str, page: Any) -> None:
    page.goto(base_url + "/")
    page.locator("#jobs tbody tr").first.wait_for()
    _mark_document(page)

    job = put_job(stack, "arrives-later", status="QUEUED")
    row = page.locator(f"tr[data-job='{job.job_id}']")
    row.wait_for()
    assert "QUEUED" in row.inner_text()

    jobs.update_job(stack.client("dynamodb"), stack.table, job.job_id, status="RUNNING", stage="prepare")
    page.wait_for_function(
        f"(document.querySelector(\"tr[data-job='{job.job_id}']\") || {{}}).innerText?.includes('RUNNING')"
    )
    assert _same_document(page)


def test_program_names_are_shown_as_text_never_run_as_html(stack: EmulatedStack, base_url: str, page: Any) -> None:
    hostile = '<img src=x onerror="window.__pwned=1">'
    attempt = AttemptSummary(number=1, program=hostile, origin="llm-draft", ok=False, seconds=1.0, reason=hostile)
    job = put_job(stack, "hostile-competition", status="FAILED", stage="train", attempt=1, attempts=[attempt],
                  message=hostile)
    put_attempt_logs(stack, job.job_id, [attempt])

    page.goto(f"{base_url}/#/jobs/{job.job_id}")
    page.locator("#attempts").wait_for()
    page.locator("#logs details").first.wait_for()

    assert hostile in page.locator("#attempts tbody tr").first.inner_text()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img").count() == 0


def test_run_form_starts_a_job_and_the_page_follows_it_to_its_submission(
    stack: EmulatedStack, base_url: str, page: Any
) -> None:
    page.goto(base_url + "/#/new")
    page.fill("#run-url", f"https://www.kaggle.com/competitions/{SLUG}")
    page.fill("#run-time", "40")
    page.fill("#run-attempts", "1")
    page.select_option("#run-compute", "cpu")
    page.click("#run-submit")
    page.wait_for_url("**/#/jobs/*")
    job_id = page.url.rsplit("/", 1)[-1]
    _mark_document(page)

    record = jobs.get_job(stack.client("dynamodb"), stack.table, job_id)
    assert record is not None
    assert (record.competition, record.time_limit, record.max_attempts, record.compute) == (SLUG, 40, 1, "cpu")
    # The real pipeline runs on the emulated stack; the page polls until the submission is there.
    page.locator("#download").wait_for(timeout=240_000)
    assert page.locator("h1 .status").inner_text() == "SUCCEEDED"
    assert page.locator("#chart circle.attempt-point").count() == 1
    href = page.locator("#download").get_attribute("href")
    assert href is not None and httpx.get(href).text.startswith("id,")
    assert _same_document(page)


def test_run_form_shows_the_api_reason_when_a_run_is_refused(base_url: str, page: Any) -> None:
    page.goto(base_url + "/#/new")
    page.fill("#run-url", "https://example.com/not-kaggle")
    page.click("#run-submit")

    message = page.locator("#run-result.error")
    message.wait_for()
    assert "kaggle" in message.inner_text().lower()
    assert page.url.endswith("#/new")


def _cancel_route_exists(base_url: str) -> bool:
    paths = httpx.get(base_url + "/openapi.json").json()["paths"]
    return "delete" in paths.get("/jobs/{job_id}", {})


def test_cancel_button_cancels_a_running_job(stack: EmulatedStack, base_url: str, page: Any) -> None:
    if not _cancel_route_exists(base_url):
        pytest.skip("this API has no DELETE /jobs/{job_id} yet")
    job = put_job(stack, "cancel-me", status="RUNNING", stage="train", attempt=1)
    page.goto(f"{base_url}/#/jobs/{job.job_id}")
    page.on("dialog", lambda dialog: dialog.accept())
    _mark_document(page)

    page.click("#cancel")

    page.wait_for_function("document.querySelector('h1 .status').textContent === 'CANCELLED'")
    assert page.locator("#cancel").count() == 0
    assert _same_document(page)


def test_cancel_button_says_so_when_the_api_cannot_cancel(stack: EmulatedStack, base_url: str, page: Any) -> None:
    if _cancel_route_exists(base_url):
        pytest.skip("this API has DELETE /jobs/{job_id}: test_cancel_button_cancels_a_running_job covers it")
    job = put_job(stack, "cannot-cancel", status="RUNNING", stage="train", attempt=1)
    page.goto(f"{base_url}/#/jobs/{job.job_id}")
    page.on("dialog", lambda dialog: dialog.accept())

    page.click("#cancel")

    message = page.locator("#action-result.error")
    message.wait_for()
    assert "cannot cancel" in message.inner_text()
    assert page.locator("h1 .status").inner_text() == "RUNNING"


def test_page_asks_for_the_api_key_once_and_keeps_it(stack: EmulatedStack, browser: Any) -> None:
    put_job(stack, "keyed-competition", status="SUCCEEDED", stage="done")
    with stack.api_server(_free_port(), api_key="s3cret-key") as keyed_base:
        page = _new_page(browser, viewport={"width": 1280, "height": 900})
        try:
            page.goto(keyed_base + "/")
            page.locator("#key-dialog[open]").wait_for()
            assert "s3cret-key" not in page.content()
            page.fill("#key-input", "s3cret-key")
            page.click("#key-save")
            page.locator("#jobs tbody tr").first.wait_for()
            assert page.evaluate("localStorage.getItem('kaggle-solver.api-key')") == "s3cret-key"

            page.reload()
            page.locator("#jobs tbody tr").first.wait_for()
            assert page.locator("#key-dialog[open]").count() == 0
        finally:
            page.context.close()


def test_report_html_opens_from_disk_and_draws_the_chart(tmp_path: Path, page: Any) -> None:
    history = [
        {"number": 1, "program": "lightgbm", "origin": "template", "ok": True, "cv_score": 0.41, "seconds": 9.0,
         "log_tail": "done", "workdir": "a1"},
        {"number": 2, "program": "</script><b id=broken>", "origin": "llm-draft", "ok": False, "seconds": 2.0,
         "reason": "invalid submission", "log_tail": "", "workdir": "a2"},
        {"number": 3, "program": "catboost", "origin": "template", "ok": True, "cv_score": 0.38, "seconds": 14.0,
         "log_tail": "done", "workdir": "a3"},
    ]
    summary = {"competition": "house-prices", "task": "regression", "target": "price", "metric": "rmse",
               "higher_is_better": False, "cv_score": 0.37, "seconds": 30.0, "attempts": 3, "best": "blend",
               "blend": {"lightgbm": 0.4, "catboost": 0.6}, "author": "templates", "output": "submission.csv",
               "workdir": str(tmp_path), "history": history}
    report = write_report(summary, tmp_path / "report.html")

    page.goto(report.as_uri())
    page.locator("#chart svg").wait_for()

    assert page.locator("#chart circle.attempt-point").count() == 2
    assert page.locator("#chart path.attempt-failed").count() == 1
    # Lower is better: the best-so-far line steps down to catboost's 0.38.
    best_line = page.locator("#chart path.best-line").get_attribute("d")
    assert best_line is not None and best_line.count("L") >= 3
    assert page.locator("#chart text.final-label").text_content() == "submission (blend) 0.37"
    assert page.locator("#attempts tbody tr").count() == 3
    assert "</script><b id=broken>" in page.locator("#attempts tbody tr").nth(1).inner_text()
    assert page.locator("#broken").count() == 0
    assert "0.40×lightgbm, 0.60×catboost" in page.inner_text("main")
