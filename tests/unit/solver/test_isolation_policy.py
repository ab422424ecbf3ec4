"""Which isolation a run says it got, and that model-written programs never run without uid separation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from batch_agent.solver import solve as solve_module
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.isolation import Isolation, probe_isolation
from batch_agent.solver.plan import Plan, Program
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.solve import SolveOptions, run_attempt, solve
from batch_agent.solver.templates import TemplateAuthor

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "breast-cancer-diagnosis"
WRITES_MARKER = "open('ran.txt', 'w').write('ran')\n"


def test_labels_say_plainly_what_holds() -> None:
    assert Isolation("bwrap-root", uid=61000).label == "isolated: own uid, no network, private filesystem"
    assert Isolation("bwrap-userns").label == "isolated: user namespace, no network, private filesystem"
    assert Isolation("bwrap-root-net", uid=61000).label == "partial: own uid, network open, private filesystem"
    assert Isolation("uid", uid=61000).label == "partial: own uid, network open, shared filesystem"
    assert Isolation("none").label == "none: same uid as the solver, network open, shared filesystem"
    assert not Isolation("none").separated and Isolation("uid", uid=61000).separated


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="namespaces are Linux's")
def test_probe_finds_full_isolation_as_root_on_a_machine_with_namespaces() -> None:
    found = probe_isolation()
    if os.geteuid() != 0:
        pytest.skip("the dedicated uid needs root")
    # This kind of machine (developers', CI) allows every namespace: anything weaker is a regression.
    assert found.mechanism == "bwrap-root", found.why_not_stronger
    assert found.uid is not None and found.uid != 0


def _profile(tmp_path: Path) -> CompetitionProfile:
    return CompetitionProfile(data_dir=str(tmp_path), id_column="id", target_columns=["target"],
                              submission_columns=["id", "target"], task="binary", prediction_format="probability",
                              metric="roc_auc", n_train=3, n_test=3)


@pytest.fixture
def unisolated(monkeypatch: pytest.MonkeyPatch) -> Isolation:
    weakest = Isolation("none", why_not_stronger="no namespaces, not root")
    monkeypatch.setattr(solve_module, "probe_isolation", lambda: weakest)
    return weakest


def test_model_written_program_is_refused_without_uid_separation(tmp_path: Path, unisolated: Isolation) -> None:
    program = Program(name="drafted", code=WRITES_MARKER, origin="llm-draft")
    result = run_attempt(_profile(tmp_path), program, tmp_path / "attempt", time_budget=20, memory_limit_mb=500)
    assert not result.ok
    assert result.reason is not None and "needs at least its own uid" in result.reason
    assert result.isolation == unisolated.label
    assert not (tmp_path / "attempt" / "ran.txt").exists()


def test_model_written_program_runs_unisolated_only_when_the_user_accepts_the_risk(
    tmp_path: Path, unisolated: Isolation
) -> None:
    program = Program(name="drafted", code=WRITES_MARKER, origin="llm-repair")
    # A real competition: a model-written program gets its own copy of the data (too small for a holdout).
    result = run_attempt(profile_competition(EXAMPLE), program, tmp_path / "attempt", time_budget=20,
                         memory_limit_mb=500, allow_unisolated=True)
    assert (tmp_path / "attempt" / "ran.txt").read_text() == "ran"
    assert result.isolation == unisolated.label


def test_template_runs_even_without_isolation(tmp_path: Path, unisolated: Isolation) -> None:
    program = Program(name="template", code=WRITES_MARKER, origin="template")
    result = run_attempt(_profile(tmp_path), program, tmp_path / "attempt", time_budget=20, memory_limit_mb=500)
    assert (tmp_path / "attempt" / "ran.txt").read_text() == "ran"
    assert result.isolation == unisolated.label


class _ModelAuthor(TemplateAuthor):
    """Stands in for a model: its drafts are marked model-written."""

    name = "model"

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        return [p.model_copy(update={"origin": "llm-draft"}) for p in super().draft(profile, plan)]


def test_run_without_uid_separation_uses_templates_only_and_says_why(tmp_path: Path, unisolated: Isolation) -> None:
    lines: list[tuple[str, str]] = []
    result = solve(str(EXAMPLE), tmp_path / "submission.csv",
                   SolveOptions(time_limit=30, workdir=tmp_path / "work", max_attempts=1), _ModelAuthor(),
                   progress=lambda stage, message: lines.append((stage, message)))
    assert ("isolation", unisolated.label + " (no namespaces, not root)") in lines
    assert any(stage == "isolation" and "using the templates only" in message for stage, message in lines)
    assert result.author == TemplateAuthor.name
    assert result.isolation == unisolated.label
    assert all(h.origin == "template" for h in result.history)
