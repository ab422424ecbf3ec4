"""The whole solver loop with Claude's programs, scripted by the fake Messages API.

The competition is built in the test: the target is the parity of two digit
columns, which a raw-feature model barely learns and a parity feature learns
perfectly, so CV scores order the programs for real.
"""

from __future__ import annotations

import csv
import json
import random
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from batch_agent.cli import main
from batch_agent.llm.author import ClaudeAuthor
from batch_agent.llm.calls import LLMSettings
from batch_agent.llm.prompts import IMPROVE_TOOL, PLAN_TOOL, PROGRAM_TOOL, REPAIR_TOOL
from batch_agent.solver.author import ProgramAuthor
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import AttemptResult, Plan, Program
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.solve import SolveOptions, solve
from batch_agent.solver.submission import validate_submission
from batch_agent.solver.templates import TemplateAuthor
from tests.fakes.anthropic_server import (
    FakeAnthropic,
    Recorded,
    Reply,
    error_reply,
    fake_anthropic,
    tool_reply,
)

__all__ = ["fake_anthropic"]

PLAN_INPUT: dict[str, Any] = {
    "approach": "Logistic regression on engineered features.",
    "features": ["parity of a + b"],
    "validation": "stratified 5-fold",
    "n_folds": 5,
    "models": [{"family": "logistic regression"}],
    "compute": "cpu",
    "draft_time_fraction": 0.5,
}

PROGRAM = """\
import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--time-budget", type=float, required=True)
args = parser.parse_args()
train = pd.read_csv(Path(args.data) / "train.csv")
test = pd.read_csv(Path(args.data) / "test.csv")


def features(frame):
    return {features}


X, X_test, y = features(train), features(test), train["target"].to_numpy()
oof, pred = np.zeros(len(train)), np.zeros(len(test))
for fit, val in StratifiedKFold(5, shuffle=True, random_state=42).split(X, y):
    model = LogisticRegression().fit(X.iloc[fit], y[fit])
    oof[val] = model.predict_proba(X.iloc[val])[:, 1]
    pred += model.predict_proba(X_test)[:, 1] / 5
pd.DataFrame({{"id": test["id"], "target": pred}}).to_csv("submission.csv", index=False)
pd.DataFrame({{"id": train["id"], "target": oof}}).to_csv("oof.csv", index=False)
Path("metrics.json").write_text(json.dumps({{"cv_score": float(roc_auc_score(y, oof))}}))
print("cv", roc_auc_score(y, oof))
"""
CRASHING = PROGRAM.format(features='frame[["fare"]]  # no such column')
RAW = PROGRAM.format(features='frame[["a", "b"]]')
CONSTANT = PROGRAM.format(features='pd.DataFrame({"one": np.ones(len(frame))})')
PARITY = PROGRAM.format(features='pd.DataFrame({"parity": ((frame["a"] + frame["b"]) % 2).astype(float)})')


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    folder = tmp_path / "parity"
    folder.mkdir()
    rng = random.Random(7)

    def rows(n: int, start: int) -> list[dict[str, Any]]:
        out = []
        for i in range(n):
            a, b = rng.randrange(10), rng.randrange(10)
            out.append(
                {"id": start + i, "a": a, "b": b, "noise": round(rng.random(), 4), "target": (a + b) % 2}
            )
        return out

    train, test = rows(300, 0), rows(120, 1000)
    with (folder / "train.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "a", "b", "noise", "target"])
        writer.writeheader()
        writer.writerows(train)
    with (folder / "test.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "a", "b", "noise"])
        writer.writeheader()
        writer.writerows({k: r[k] for k in ("id", "a", "b", "noise")} for r in test)
    with (folder / "sample_submission.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, ["id", "target"])
        writer.writeheader()
        writer.writerows({"id": r["id"], "target": 0.5} for r in test)
    (folder / "description.md").write_text(
        "# Parity\n\nSubmissions are evaluated on area under the ROC curve between the predicted "
        "probability and the observed target.\n"
    )
    return folder


class FirstTemplateOnly:
    """The template author with one draft, so each test runs a few programs and takes seconds."""

    name = "templates"

    def __init__(self) -> None:
        self.templates = TemplateAuthor()

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        return self.templates.plan(profile, time_limit)

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        return self.templates.draft(profile, plan)[:1]

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        return self.templates.repair(profile, program, failure)

    def improve(
        self, profile: CompetitionProfile, plan: Plan, best: Program, history: list[AttemptResult]
    ) -> Program | None:
        return None


def by_tool(replies: dict[str, list[Reply]]) -> Callable[[Recorded], Reply]:
    """Answer each tool from its own queue; an unscripted call gets a 500."""
    queues = {name: deque(items) for name, items in replies.items()}

    def respond(request: Recorded) -> Reply:
        queue = queues.get(request.tool_name or "")
        return queue.popleft() if queue else error_reply(500, f"nothing scripted for {request.tool_name}")

    return respond


def claude(server: FakeAnthropic, fallback: ProgramAuthor) -> ClaudeAuthor:
    settings = LLMSettings(
        api_key=SecretStr("sk-test"),
        base_url=server.url,
        sdk_max_retries=0,
        backoff_attempts=0,
        max_cost_usd=None,
    )
    return ClaudeAuthor(settings, fallback=fallback)


def options(tmp_path: Path, max_attempts: int, *, slots: int = 1, model_drafts: int = 1) -> SolveOptions:
    # One slot and one model draft keep the order of attempts fixed; the scheduler's tests use more.
    return SolveOptions(
        time_limit=120, workdir=tmp_path / "work", max_attempts=max_attempts, memory_limit_mb=4096,
        slots=slots, model_drafts=model_drafts,
    )


def test_crashing_program_is_repaired_from_its_log(
    fake_anthropic: FakeAnthropic, competition: Path, tmp_path: Path
) -> None:
    fake_anthropic.responder = by_tool(
        {
            PLAN_TOOL: [tool_reply(PLAN_TOOL, PLAN_INPUT)],
            PROGRAM_TOOL: [tool_reply(PROGRAM_TOOL, {"summary": "raw columns", "code": CRASHING})],
            REPAIR_TOOL: [tool_reply(REPAIR_TOOL, {"diagnosis": "no column fare; use a and b", "code": RAW})],
        }
    )
    author = claude(fake_anthropic, FirstTemplateOnly())
    output = tmp_path / "submission.csv"
    result = solve(str(competition), output, options(tmp_path, max_attempts=3), author,
                   templates=FirstTemplateOnly())

    origins = [(h.origin, h.ok) for h in result.history]
    assert origins == [("template", True), ("llm-draft", False), ("llm-repair", True)]
    assert "fare" in result.history[1].log_tail
    repair_prompt = fake_anthropic.calls(REPAIR_TOOL)[0].body["messages"][0]["content"]
    assert 'frame[["fare"]]' in repair_prompt and "KeyError" in repair_prompt
    assert validate_submission(output, profile_competition(competition)) == []
    assert author.fallback_reason is None and author.tally.calls == 3


def test_improvements_come_from_the_best_few_and_the_best_by_cv_wins(
    fake_anthropic: FakeAnthropic, competition: Path, tmp_path: Path
) -> None:
    fake_anthropic.responder = by_tool(
        {
            PLAN_TOOL: [tool_reply(PLAN_TOOL, PLAN_INPUT)],
            PROGRAM_TOOL: [tool_reply(PROGRAM_TOOL, {"summary": "raw columns", "code": RAW})],
            IMPROVE_TOOL: [
                tool_reply(IMPROVE_TOOL, {"change": "drop every feature", "code": CONSTANT}),
                tool_reply(IMPROVE_TOOL, {"change": "parity feature", "code": PARITY}),
            ],
        }
    )
    author = claude(fake_anthropic, FirstTemplateOnly())
    output = tmp_path / "submission.csv"
    result = solve(str(competition), output, options(tmp_path, max_attempts=4), author,
                   templates=FirstTemplateOnly())

    worse, better = result.history[2], result.history[3]
    assert (worse.origin, better.origin) == ("llm-improve", "llm-improve")
    best_before = max((h for h in result.history[:2] if h.ok), key=lambda h: h.cv_score or 0.0)
    assert worse.cv_score is not None and best_before.cv_score is not None
    assert worse.cv_score <= best_before.cv_score
    # Improvements are asked of the best few in turn, not of the single best each time.
    parents = [call.body["messages"][0]["content"].split("'")[1] for call in fake_anthropic.calls(IMPROVE_TOOL)]
    assert parents[0] == "lgbm-fast" and len(set(parents)) == 2
    assert better.cv_score == pytest.approx(1.0)
    assert better.cv_score is not None and better.cv_score > best_before.cv_score
    assert result.best == better.program and result.cv_score == pytest.approx(1.0)
    assert validate_submission(output, profile_competition(competition)) == []


def test_server_that_always_errors_still_yields_a_template_submission(
    fake_anthropic: FakeAnthropic, competition: Path, tmp_path: Path
) -> None:
    fake_anthropic.responder = lambda _r: error_reply(529, "Overloaded")
    author = claude(fake_anthropic, FirstTemplateOnly())
    output = tmp_path / "submission.csv"
    result = solve(str(competition), output, options(tmp_path, max_attempts=2), author,
                   templates=FirstTemplateOnly())

    assert [h.origin for h in result.history] == ["template"]
    assert author.fallback_reason is not None and "LLMUnavailableError" in author.fallback_reason
    # Three failed calls in a row (plan, draft, then the first improvement) switch the run to the templates.
    assert len(fake_anthropic.requests) == 3
    assert author.fallback_reason.startswith("3 model calls failed in a row")
    assert validate_submission(output, profile_competition(competition)) == []
    assert "fell back from Claude" in author.summary()


def test_cli_run_reports_claude_cost_and_the_fallback_from_max_cost(
    fake_anthropic: FakeAnthropic,
    competition: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_anthropic.responder = lambda _r: tool_reply(
        PLAN_TOOL, PLAN_INPUT, usage_fields={"input_tokens": 10_000, "output_tokens": 2_000}
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.url)
    monkeypatch.setenv("KAGGLE_SOLVER_LLM_SDK_MAX_RETRIES", "0")
    monkeypatch.setenv("KAGGLE_SOLVER_LLM_MAX_TOKENS", "2000")
    # A 15 s run leaves less than the default 15 s minimum for a model call.
    monkeypatch.setenv("KAGGLE_SOLVER_LLM_MIN_CALL_SECONDS", "1")
    output = tmp_path / "submission.csv"
    # The plan call fits under $0.10 and spends $0.06; a draft could then cost $0.03 + its prompt.
    code = main(
        [
            "run",
            str(competition),
            "--output",
            str(output),
            "--time-limit",
            "15",
            "--max-cost",
            "0.08",
            "--workdir",
            str(tmp_path / "work"),
            "--json",
            "--quiet",
        ]
    )

    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["llm"]["calls"] == 1 and summary["llm"]["cost_usd"] == pytest.approx(0.06)
    assert (summary["tokens"], summary["cost_usd"]) == (12_000, summary["llm"]["cost_usd"])
    assert summary["llm"]["fallback_reason"].startswith("LLMBudgetError")
    assert "fell back from Claude to the templates" in summary["llm"]["summary"]
    assert len(fake_anthropic.requests) == 1
    assert validate_submission(output, profile_competition(competition)) == []


SNOOPING = RAW.replace(
    'print("cv", roc_auc_score(y, oof))',
    """import os
found = {k: v for k, v in os.environ.items() if any(w in k for w in ("KEY", "SECRET", "TOKEN", "ANTHROPIC", "AWS"))}
home_files = sorted(p.name for p in Path.home().iterdir()) if Path.home().is_dir() else []
Path("found.json").write_text(json.dumps({"env": found, "home": home_files}))
print("found", found)""",
)


def test_claudes_program_finds_no_credentials_in_the_sandbox(
    fake_anthropic: FakeAnthropic, competition: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-parent-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-parent-secret")
    monkeypatch.setenv("KAGGLE_KEY", "kaggle-parent-secret")
    fake_anthropic.responder = by_tool(
        {
            PLAN_TOOL: [tool_reply(PLAN_TOOL, PLAN_INPUT)],
            PROGRAM_TOOL: [tool_reply(PROGRAM_TOOL, {"summary": "looks around", "code": SNOOPING})],
        }
    )
    author = claude(fake_anthropic, FirstTemplateOnly())
    result = solve(str(competition), tmp_path / "submission.csv", options(tmp_path, max_attempts=2), author,
                   templates=FirstTemplateOnly())

    snooper = result.history[1]
    assert snooper.origin == "llm-draft" and snooper.ok
    found = json.loads((Path(snooper.workdir) / "found.json").read_text())
    assert found["env"] == {}
    assert not {".aws", ".kaggle", "kaggle.json", ".anthropic"} & set(found["home"])
    assert "parent-secret" not in snooper.log_tail


def test_fastest_template_trains_while_claude_plans_and_drafts(
    fake_anthropic: FakeAnthropic, competition: Path, tmp_path: Path
) -> None:
    scripted = by_tool(
        {
            PLAN_TOOL: [tool_reply(PLAN_TOOL, PLAN_INPUT)],
            PROGRAM_TOOL: [tool_reply(PROGRAM_TOOL, {"summary": "parity feature", "code": PARITY})],
        }
    )

    def slow_model(request: Recorded) -> Reply:
        time.sleep(6.0)  # a model that takes its time over each answer
        return scripted(request)

    fake_anthropic.responder = slow_model
    author = claude(fake_anthropic, FirstTemplateOnly())
    result = solve(str(competition), tmp_path / "submission.csv", options(tmp_path, max_attempts=2), author,
                   templates=FirstTemplateOnly())

    assert [(h.program, h.origin) for h in result.history] == [("lgbm-fast", "template"), (result.history[1].program,
                                                                                            "llm-draft")]
    assert result.first_valid_seconds is not None and result.first_valid_seconds < 6.0
    assert author.tally.calls == 2


# Claude's program with raw features, whose metrics.json claims a perfect score.
OVERCLAIMING = RAW.replace('json.dumps({"cv_score": float(roc_auc_score(y, oof))})', 'json.dumps({"cv_score": 1.0})')


def test_cli_json_shows_the_products_score_beside_a_claude_programs_false_claim(
    fake_anthropic: FakeAnthropic,
    competition: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert OVERCLAIMING != RAW
    fake_anthropic.responder = by_tool(
        {
            PLAN_TOOL: [tool_reply(PLAN_TOOL, PLAN_INPUT)],
            PROGRAM_TOOL: [tool_reply(PROGRAM_TOOL, {"summary": "raw columns", "code": OVERCLAIMING})],
        }
    )
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_anthropic.url)
    monkeypatch.setenv("KAGGLE_SOLVER_LLM_SDK_MAX_RETRIES", "0")
    monkeypatch.setenv("KAGGLE_SOLVER_LLM_MIN_CALL_SECONDS", "1")
    code = main(["run", str(competition), "--output", str(tmp_path / "submission.csv"), "--time-limit", "30",
                 "--workdir", str(tmp_path / "work"), "--json", "--quiet"])

    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    (drafted,) = [a for a in summary["history"] if a["origin"] == "llm-draft"]
    assert drafted["ok"] and drafted["claimed_cv_score"] == 1.0 and drafted["claim_disagrees"] is True
    assert drafted["cv_score"] < 0.9  # raw digits barely predict their parity
    assert drafted["holdout"].startswith("none")  # 300 train rows: too few to hide any
    templates = [a for a in summary["history"] if a["origin"] == "template" and a["ok"]]
    assert templates and all(a["claim_disagrees"] is False for a in templates)
