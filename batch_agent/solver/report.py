"""report.html: one run's summary, attempts, score chart and logs in a single file that opens from disk.

Everything is inlined (styles, the chart script, the data), so the file needs no server
and no network. The chart is drawn by ``score_chart.js``, the same script the service's
dashboard serves. Stdlib only: the API Lambda imports this module for the script's path.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

SCORE_CHART_JS = Path(__file__).resolve().parent / "score_chart.js"
REPORT_NAME = "report.html"

_STYLE = """
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2330;background:#f6f7f9}
header{padding:12px 16px;background:#1d2330;color:#fff}header h1{margin:0;font-size:20px}
main{padding:12px 16px 40px;max-width:1100px;margin:0 auto}h2{font-size:16px;margin:20px 0 8px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:8px}
.card{background:#fff;border:1px solid #dde;border-radius:4px;padding:8px 10px}
.label{font-size:12px;color:#667}.value{font-size:16px;font-weight:600;word-break:break-word}
.chart{background:#fff;border:1px solid #dde;border-radius:4px;padding:8px}
.chart svg{width:100%;height:auto;max-height:320px;display:block}
.scroll{overflow-x:auto;background:#fff;border:1px solid #dde;border-radius:4px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eef;
vertical-align:top}th{background:#eef0f4}.num{text-align:right;font-variant-numeric:tabular-nums}
.error{color:#a11}.muted{color:#667}
pre{background:#10141c;color:#d8dee9;padding:8px;overflow-x:auto;max-height:320px;font-size:12px}
"""


def write_report(
    summary: Mapping[str, Any],
    path: Path,
    *,
    notes: Sequence[str] = (),
    llm_usage: Mapping[str, Any] | None = None,
) -> Path:
    """Write report.html for a finished run; ``summary`` is SolveResult's JSON form (summary.json)."""
    path.write_text(render_report(summary, notes=notes, llm_usage=llm_usage), encoding="utf-8")
    return path


def render_report(
    summary: Mapping[str, Any], *, notes: Sequence[str] = (), llm_usage: Mapping[str, Any] | None = None
) -> str:
    history: list[Mapping[str, Any]] = list(summary.get("history") or [])
    higher = bool(summary.get("higher_is_better", True))
    blend: Mapping[str, float] = summary.get("blend") or {}
    best = str(summary.get("best", ""))
    if len(blend) > 1:
        best += " = " + ", ".join(f"{weight:.2f}×{name}" for name, weight in blend.items())
    cards = [
        ("CV score", f"{_score(summary.get('cv_score'))}"),
        ("Metric", f"{summary.get('metric', '')} ({'higher' if higher else 'lower'} is better)"),
        ("Task", f"{summary.get('task', '')}, target {summary.get('target', '')}"),
        ("Submission", best),
        ("Attempts", str(summary.get("attempts", len(history)))),
        ("Time", f"{_seconds(summary.get('seconds'))}"
         + (f" (first valid at {_seconds(summary.get('first_valid_seconds'))})"
            if summary.get("first_valid_seconds") is not None else "")),
        ("Written by", str(summary.get("author", ""))),
    ]
    if llm_usage:
        cards.append(("LLM", str(llm_usage.get("summary") or "")))
    chart_points = [
        {k: attempt.get(k) for k in ("number", "program", "ok", "cv_score", "seconds", "reason")} for attempt in history
    ]
    options = {"higherIsBetter": higher, "width": 760, "height": 280, "finalScore": summary.get("cv_score"),
               "finalLabel": f"submission ({summary.get('best', '')})"}
    title = f"kaggle-solver report: {summary.get('competition', '')}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)}</title><style>{_STYLE}</style></head>
<body><header><h1>{escape(title)}</h1></header><main>
<div class="cards">{"".join(_card(label, value) for label, value in cards)}</div>
{_notes(notes)}
<h2>Scores over time</h2><div class="chart" id="chart"><noscript>The chart needs JavaScript.</noscript></div>
<h2>Attempts</h2>{_attempts_table(history)}
<h2>Logs</h2>{_logs(history)}
<p class="muted">Output: {escape(str(summary.get("output", "")))} · programs and logs in
{escape(str(summary.get("workdir", "")))}</p>
</main>
<script type="application/json" id="attempts-data">{_json_for_script(chart_points)}</script>
<script>{SCORE_CHART_JS.read_text(encoding="utf-8")}</script>
<script>
document.getElementById("chart").innerHTML = scoreChartSvg(
  JSON.parse(document.getElementById("attempts-data").textContent), {_json_for_script(options)});
</script>
</body></html>
"""


def _json_for_script(value: Any) -> str:
    # Inside <script>, "</script" would end the element and "<!--" change how it is parsed: JSON may
    # spell every angle bracket and ampersand as a \u escape, so none reaches the HTML parser.
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _card(label: str, value: str) -> str:
    return f'<div class="card"><div class="label">{escape(label)}</div><div class="value">{escape(value)}</div></div>'


def _notes(notes: Sequence[str]) -> str:
    if not notes:
        return ""
    return "<h2>Leaderboard</h2><ul>" + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul>"


def _attempts_table(history: Sequence[Mapping[str, Any]]) -> str:
    if not history:
        return '<p class="muted">No attempts.</p>'
    rows = []
    for attempt in history:
        ok = bool(attempt.get("ok"))
        origin = str(attempt.get("origin", ""))
        result = "ok" if ok else f'<span class="error">{escape(str(attempt.get("reason") or "failed"))}</span>'
        claim = attempt.get("claimed_cv_score")
        rows.append(
            f"<tr><td>{escape(str(attempt.get('number', '')))}</td><td>{escape(str(attempt.get('program', '')))}</td>"
            f"<td>{'template' if origin == 'template' else escape('Claude (' + origin.removeprefix('llm-') + ')')}</td>"
            f'<td class="num">{_score(attempt.get("cv_score")) if ok else "—"}</td>'
            f'<td class="num">{_score(claim) if claim is not None else "—"}</td>'
            f'<td class="num">{_seconds(attempt.get("seconds"))}</td><td>{result}</td></tr>'
        )
    return (
        '<div class="scroll"><table id="attempts"><thead><tr><th>#</th><th>Program</th><th>Written by</th>'
        '<th class="num">CV (product)</th><th class="num">CV (program\'s claim)</th><th class="num">Seconds</th>'
        "<th>Result</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>"
    )


def _logs(history: Sequence[Mapping[str, Any]]) -> str:
    parts = [
        f"<details><summary>#{escape(str(a.get('number', '')))} {escape(str(a.get('program', '')))}</summary>"
        f"<pre>{escape(str(a.get('log_tail') or '(empty)'))}</pre></details>"
        for a in history
    ]
    return "".join(parts) or '<p class="muted">No logs.</p>'


def _score(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, int | float) else "—"


def _seconds(value: Any) -> str:
    return f"{value:.1f} s" if isinstance(value, int | float) else "—"
