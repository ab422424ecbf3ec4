"""report.html: self-contained, its data cannot break out of the page, the chart script inlined."""

from __future__ import annotations

import re
from pathlib import Path

from batch_agent.solver.report import SCORE_CHART_JS, render_report, write_report

SUMMARY = {
    "competition": "demo",
    "task": "binary",
    "target": "y",
    "metric": "roc_auc",
    "higher_is_better": True,
    "cv_score": 0.9,
    "seconds": 12.0,
    "attempts": 1,
    "best": "lightgbm",
    "author": "templates",
    "output": "submission.csv",
    "workdir": "/tmp/run",
    "history": [
        {"number": 1, "program": "</script><script>alert(1)</script>", "origin": "llm-draft", "ok": True,
         "cv_score": 0.9, "seconds": 5.0, "log_tail": "<b>log</b>", "workdir": "a"},
    ],
}


def test_report_loads_nothing_from_outside_the_file() -> None:
    html = render_report(SUMMARY)

    assert SCORE_CHART_JS.read_text() in html
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", html)
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html


def test_program_names_and_logs_cannot_close_the_data_script_or_add_markup() -> None:
    html = render_report(SUMMARY)

    # Exactly the report's own three scripts, whatever the program was called.
    assert html.count("<script") == 3
    assert html.count("</script>") == 3
    assert "<b>log</b>" not in html and "&lt;b&gt;log&lt;/b&gt;" in html


def test_write_report_writes_the_file_it_returns(tmp_path: Path) -> None:
    path = write_report(SUMMARY, tmp_path / "report.html", notes=["leaderboard (CV): rank 3 of 120"])

    assert path == tmp_path / "report.html"
    assert "rank 3 of 120" in path.read_text()
