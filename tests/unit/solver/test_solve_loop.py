"""The solver's scheduler (``solve._Loop``) with a scripted author and tiny stdlib programs.

Each program records when it started and ended, so what ran at once is read from the programs
themselves, not from timing margins.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from batch_agent.solver.competition import ColumnInfo, CompetitionProfile
from batch_agent.solver.errors import AttemptsExhaustedError
from batch_agent.solver.isolation import Isolation
from batch_agent.solver.plan import PARALLEL_MIN_ROWS, AttemptResult, Plan, Program
from batch_agent.solver.solve import SolveOptions, solve, training_slots

N_TRAIN, N_TEST = 40, 10

VALID = """\
import argparse, csv, json, os, time
parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--time-budget", type=float)
args = parser.parse_args()
start = time.time()
time.sleep({sleep})
train = list(csv.DictReader(open(args.data + "/train.csv")))
test = list(csv.DictReader(open(args.data + "/test.csv")))
with open("oof.csv", "w") as f:
    f.write("id,target\\n" + "".join(f"{{r['id']}},{{abs({flip} - float(r['x']))}}\\n" for r in train))
with open("submission.csv", "w") as f:
    f.write("id,target\\n" + "".join(f"{{r['id']}},{{float(r['x'])}}\\n" for r in test))
json.dump({{"start": start, "end": time.time(), "cores": sorted(os.sched_getaffinity(0))}}, open("times.json", "w"))
"""
BROKEN = "raise SystemExit('broken on purpose')\n"


def valid(sleep: float = 0.0, flip: bool = False) -> str:
    """A program that writes x (or 1 - x, another program's predictions) after ``sleep`` seconds."""
    return VALID.format(sleep=sleep, flip=int(flip))


def make_competition(folder: Path) -> Path:
    folder.mkdir()
    rows = [(i, (i * 37) % 100 / 100) for i in range(N_TRAIN + N_TEST)]
    train = "".join(f"{i},{x},{int(x > 0.5)}\n" for i, x in rows[:N_TRAIN])
    (folder / "train.csv").write_text("id,x,target\n" + train)
    (folder / "test.csv").write_text("id,x\n" + "".join(f"{i},{x}\n" for i, x in rows[N_TRAIN:]))
    (folder / "sample_submission.csv").write_text("id,target\n" + "".join(f"{i},0.5\n" for i, _ in rows[N_TRAIN:]))
    (folder / "description.md").write_text("Submissions are evaluated on area under the ROC curve.\n")
    return folder


class ScriptedAuthor:
    """Drafts the given programs; repairs with ``repairs[name]``; no improvements. Records each repair asked."""

    name = "templates"  # the loop treats it as the template author: no model plan or drafts

    def __init__(self, drafts: list[Program], repairs: dict[str, Program] | None = None) -> None:
        self.drafts, self.repairs = drafts, repairs or {}
        self.repaired: list[str] = []
        self._lock = threading.Lock()

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        return Plan(approach="scripted programs", candidates=[])

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        return list(self.drafts)

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        with self._lock:
            self.repaired.append(program.name)
        return self.repairs.get(program.name)

    def improve(self, profile: CompetitionProfile, plan: Plan, best: Program,
                history: list[AttemptResult]) -> Program | None:
        return None


def program(name: str, code: str) -> Program:
    return Program(name=name, code=code, origin="template")


def times(result_workdir: str) -> tuple[float, float]:
    recorded = json.loads((Path(result_workdir) / "times.json").read_text())
    return recorded["start"], recorded["end"]


@pytest.fixture
def competition(tmp_path: Path) -> Path:
    return make_competition(tmp_path / "comp")


def options(tmp_path: Path, **changes: object) -> SolveOptions:
    return SolveOptions.model_validate({"time_limit": 120, "workdir": tmp_path / "work", "memory_limit_mb": 1024,
                                        **changes})


def test_two_slots_train_two_programs_at_once_after_the_first_success(competition: Path, tmp_path: Path) -> None:
    author = ScriptedAuthor([program("quick", valid()), program("slow-a", valid(sleep=2.0, flip=True)),
                             program("slow-b", valid(sleep=2.0))])
    result = solve(str(competition), tmp_path / "submission.csv", options(tmp_path, slots=2), author)

    assert result.slots == 2 and [h.ok for h in result.history] == [True, True, True]
    (_, end_quick), (start_a, end_a), (start_b, end_b) = (times(h.workdir) for h in result.history)
    # The first valid submission does not share the machine; after it, two programs train at once.
    assert end_quick <= min(start_a, start_b)
    assert max(start_a, start_b) < min(end_a, end_b)


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs a core for each slot")
def test_two_programs_training_at_once_run_on_cores_of_their_own(competition: Path, tmp_path: Path) -> None:
    author = ScriptedAuthor([program("quick", valid()), program("slow-a", valid(sleep=2.0, flip=True)),
                             program("slow-b", valid(sleep=2.0))])
    result = solve(str(competition), tmp_path / "submission.csv", options(tmp_path, slots=2), author)

    cores = [set(json.loads((Path(h.workdir) / "times.json").read_text())["cores"]) for h in result.history]
    assert cores[1] and cores[2] and not cores[1] & cores[2]
    assert cores[1] | cores[2] <= os.sched_getaffinity(0)


def test_one_slot_trains_one_program_at_a_time(competition: Path, tmp_path: Path) -> None:
    author = ScriptedAuthor([program("first", valid(sleep=1.0)), program("second", valid(sleep=1.0, flip=True))])
    result = solve(str(competition), tmp_path / "submission.csv", options(tmp_path, slots=1), author)

    assert result.slots == 1
    (_, end_a), (start_b, _) = (times(h.workdir) for h in result.history)
    assert end_a <= start_b


def test_each_failed_lineage_gets_its_own_repair_budget(competition: Path, tmp_path: Path) -> None:
    # Both repairs fail again: with one repair per lineage, neither repair is repaired in turn.
    author = ScriptedAuthor(
        [program("good", valid()), program("bad-a", BROKEN), program("bad-b", BROKEN)],
        repairs={"bad-a": program("bad-a-fixed", BROKEN), "bad-b": program("bad-b-fixed", BROKEN),
                 "bad-a-fixed": program("never", valid())},
    )
    result = solve(str(competition), tmp_path / "submission.csv", options(tmp_path, max_repairs=1, slots=2), author)

    assert sorted(author.repaired) == ["bad-a", "bad-b"]
    assert sorted(h.program for h in result.history) == ["bad-a", "bad-a-fixed", "bad-b", "bad-b-fixed", "good"]
    # The history is in attempt order whichever slot finished first.
    assert [h.number for h in result.history] == [1, 2, 3, 4, 5]


def test_max_attempts_bounds_the_programs_started(competition: Path, tmp_path: Path) -> None:
    author = ScriptedAuthor([program(f"p{i}", valid(flip=i % 2 == 1)) for i in range(5)])
    result = solve(str(competition), tmp_path / "submission.csv", options(tmp_path, max_attempts=3, slots=2),
                   author)

    assert [h.program for h in result.history] == ["p0", "p1", "p2"]


class _EndlessModel:
    """A model that drafts one program and answers every improvement with a new one, all quick and valid."""

    name = "scripted-model"

    def __init__(self) -> None:
        self.written = 0
        self._lock = threading.Lock()

    def _program(self, kind: str) -> Program:
        with self._lock:
            self.written += 1
            return Program(name=f"model-{self.written}", code=valid(flip=self.written % 2 == 0), origin=f"llm-{kind}")

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        return Plan(approach="scripted model", candidates=[])

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        return [self._program("draft")]

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        return None

    def improve(self, profile: CompetitionProfile, plan: Plan, best: Program,
                history: list[AttemptResult]) -> Program | None:
        return self._program("improve")


@pytest.mark.parametrize(("caps", "templates", "models"), [
    # The model's programs are counted apart: they add to the templates' attempts instead of taking theirs.
    ({"max_template_attempts": 2, "max_model_attempts": 3}, 2, 3),
    # A run's own cap bounds every program, the model's included.
    ({"max_template_attempts": 2, "max_model_attempts": 3, "max_attempts": 3}, 2, 1),
])
def test_the_model_s_programs_have_a_cap_of_their_own(competition: Path, tmp_path: Path, caps: dict[str, int],
                                                      templates: int, models: int) -> None:
    template_author = ScriptedAuthor([program(f"t{i}", valid(flip=i % 2 == 1)) for i in range(4)])
    result = solve(str(competition), tmp_path / "submission.csv",
                   options(tmp_path, slots=1, model_drafts=1, time_limit=60, **caps), _EndlessModel(),
                   templates=template_author)

    origins = [h.origin == "template" for h in result.history]
    assert (origins.count(True), origins.count(False)) == (templates, models)
    assert result.seconds < 50  # the caps ended the run, not its time


class _FallenBackModel(_EndlessModel):
    """A model that has fallen back to the templates: each improvement it answers is a template program."""

    def _program(self, kind: str) -> Program:
        return super()._program(kind).model_copy(update={"origin": "template"})


def test_a_model_fallen_back_to_the_templates_ends_the_run_at_the_template_cap(competition: Path,
                                                                               tmp_path: Path) -> None:
    template_author = ScriptedAuthor([program("t0", valid())])
    result = solve(str(competition), tmp_path / "submission.csv",
                   options(tmp_path, slots=1, model_drafts=1, time_limit=60, max_template_attempts=3),
                   _FallenBackModel(), templates=template_author)

    assert len(result.history) == 3 and all(h.origin == "template" for h in result.history)
    assert result.seconds < 30  # not asking on for programs that could never train until the limit


def _profile(n_train: int) -> CompetitionProfile:
    return CompetitionProfile(
        title="t", data_dir="/nowhere", id_column="id", target_columns=["target"], submission_columns=["target"],
        task="binary", prediction_format="probability", classes=["0", "1"], metric="roc_auc",
        n_train=n_train, n_test=10,
        features=[ColumnInfo(name="x", kind="numeric", dtype="float64", n_unique=10, missing_fraction=0.0)],
    )


ISOLATED = Isolation(mechanism="bwrap-root", uid=61000)


@pytest.mark.parametrize(
    ("n_train", "cores", "compute", "isolation", "slots"),
    [
        (PARALLEL_MIN_ROWS - 1, 2, "auto", ISOLATED, 2),  # single-threaded programs: one per core
        (PARALLEL_MIN_ROWS, 2, "auto", ISOLATED, 1),  # every core for one program
        (PARALLEL_MIN_ROWS - 1, 1, "auto", ISOLATED, 1),
        (PARALLEL_MIN_ROWS - 1, 2, "gpu", ISOLATED, 1),
        (PARALLEL_MIN_ROWS - 1, 2, "kaggle-gpu", ISOLATED, 1),
        # One uid and no PID namespace: a program's cleanup would kill the other's processes.
        (PARALLEL_MIN_ROWS - 1, 2, "auto", Isolation(mechanism="uid", uid=61000), 1),
    ],
)
def test_training_slots_follow_the_data_the_cores_and_the_sandbox(
    monkeypatch: pytest.MonkeyPatch, n_train: int, cores: int, compute: str, isolation: Isolation, slots: int
) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: set(range(cores)))
    chosen = training_slots(_profile(n_train), SolveOptions(compute=compute), isolation)  # type: ignore[arg-type]
    assert chosen == slots


def test_slots_given_in_the_options_win() -> None:
    assert training_slots(_profile(10), SolveOptions(slots=3), ISOLATED) == 3


def test_a_template_s_time_share_does_not_shrink_while_the_model_writes(competition: Path, tmp_path: Path) -> None:
    from batch_agent.solver.profiling import profile_competition
    from batch_agent.solver.solve import _Call, _Loop, _Ready

    profile = profile_competition(competition)
    loop = _Loop(profile, options(tmp_path), ScriptedAuthor([]), tmp_path, deadline=time.monotonic() + 100,
                 progress=lambda *_: None, higher_is_better=True, slots=2)
    sound = program("first", valid())
    loop.best = (sound, AttemptResult(number=1, program="first", origin="template", workdir=str(tmp_path),
                                             ok=True, cv_score=0.9, seconds=1.0))
    loop._ready = [_Ready(2, i, program(f"waiting-{i}", valid()), "draft") for i in range(6)]

    quiet_template, quiet_model = loop._budget("draft"), loop._budget("draft", model=True)
    loop._calls = [_Call("draft"), _Call("draft")]  # two programs being written by the model
    assert loop._budget("draft") == pytest.approx(quiet_template, abs=0.5)
    # the model's own programs share with the ones it is still writing
    assert loop._budget("draft", model=True) < quiet_model - 5


def _loop_after_lgbm(tmp_path: Path, author: object, *, model: bool) -> Any:
    """A two-slot loop whose one attempt so far, the templates' lgbm, scored."""
    from batch_agent.solver.solve import _Loop
    from batch_agent.solver.templates import TemplateAuthor
    from tests.unit.solver.test_portfolio import profile as table_profile

    profile = table_profile()
    templates = TemplateAuthor()
    plan = templates.plan(profile, 300)
    lgbm = next(p for p in templates.draft(profile, plan) if p.name == "lgbm")
    loop = _Loop(profile, options(tmp_path), author, tmp_path, deadline=time.monotonic() + 300,  # type: ignore[arg-type]
                 progress=lambda *_: None, higher_is_better=True, slots=2)
    loop.plan, loop._model, loop._template_plan = plan, model, plan
    loop._programs["lgbm"] = lgbm
    scored = AttemptResult(number=1, program="lgbm", origin="template", workdir=str(tmp_path), ok=True,
                           cv_score=0.9, seconds=1.0)
    loop.history.append(scored)
    loop.best = (lgbm, scored)
    return loop


class _SlowModel(ScriptedAuthor):
    name = "scripted-model"  # not the templates: the loop treats it as a model


def test_beside_a_model_the_templates_keep_tuning_their_best_lineage_in_turn_with_the_model(tmp_path: Path) -> None:
    from batch_agent.solver.solve import _Ready

    loop = _loop_after_lgbm(tmp_path, _SlowModel([]), model=True)

    loop._add_template_improvement()
    loop._add_template_improvement()  # one tuning step waits at a time
    tuned = [w.program for w in loop._ready]
    assert [p.name for p in tuned] == ["lgbm+p1"] and tuned[0].origin == "template"

    # A model's program and the tuning step take turns, whichever arrived first.
    loop._ready.append(_Ready(1, 99, Program(name="model-draft", code="pass", origin="llm-draft"), "draft"))
    loop._ready.sort(key=lambda w: (w.rank, w.order))
    loop._template_turns = 0  # a model's program started last
    assert loop._ready[loop._next_ready()].program.name == "lgbm+p1"
    loop._template_turns = 1  # a tuning step started last
    assert loop._ready[loop._next_ready()].program.name == "model-draft"


def _model_program_scored(loop: Any, name: str, cv_score: float | None) -> None:
    """Record one trained program of the model: valid with ``cv_score``, or failed when None."""
    loop._programs[name] = Program(name=name, code="pass", origin="llm-draft")
    loop.history.append(AttemptResult(number=len(loop.history) + 1, program=name, origin="llm-draft",
                                      workdir="w", ok=cv_score is not None, cv_score=cv_score, seconds=1.0))


def _templates_scored(loop: Any, scores: dict[str, float]) -> None:
    """Record the templates' drafts named in ``scores`` as trained, with those CV scores."""
    from batch_agent.solver.templates import TemplateAuthor

    templates = TemplateAuthor()
    for drafted in templates.draft(loop.profile, loop._template_plan):
        if drafted.name in scores:
            loop._programs[drafted.name] = drafted
            loop.history.append(AttemptResult(number=len(loop.history) + 1, program=drafted.name,
                                              origin="template", workdir="w", ok=True,
                                              cv_score=scores[drafted.name], seconds=1.0))


def _next_is_the_model_s(loop: Any) -> bool:
    return bool(loop._ready[loop._next_ready()].program.origin != "template")


def test_a_model_whose_programs_lose_waits_longer_for_each_turn(tmp_path: Path) -> None:
    from batch_agent.solver.solve import MAX_MODEL_TURN_GAP, _Ready

    loop = _loop_after_lgbm(tmp_path, _SlowModel([]), model=True)
    _templates_scored(loop, {"catboost": 0.88, "xgboost": 0.87})
    loop._ready = [_Ready(1, 1, Program(name="model-next", code="pass", origin="llm-draft"), "draft"),
                   _Ready(2, 2, program("template-next", valid()), "draft")]
    loop._template_turns = 1
    assert _next_is_the_model_s(loop)  # nothing of the model's trained yet: one turn in two

    _model_program_scored(loop, "weak", 0.5)  # far below the templates' 0.9
    assert not _next_is_the_model_s(loop)  # one loss: two template programs per model program
    loop._template_turns = 2
    assert _next_is_the_model_s(loop)

    _model_program_scored(loop, "leak", None)
    _model_program_scored(loop, "crash", None)
    _model_program_scored(loop, "weaker", 0.4)
    loop._template_turns = MAX_MODEL_TURN_GAP - 1
    assert not _next_is_the_model_s(loop)  # the gap stops growing at MAX_MODEL_TURN_GAP
    loop._template_turns = MAX_MODEL_TURN_GAP
    assert _next_is_the_model_s(loop)


def test_a_model_program_among_the_best_few_brings_back_one_turn_in_two(tmp_path: Path) -> None:
    from batch_agent.solver.solve import _Ready

    loop = _loop_after_lgbm(tmp_path, _SlowModel([]), model=True)
    _templates_scored(loop, {"lgbm-shallow": 0.89, "catboost": 0.88, "xgboost": 0.87})
    loop._ready = [_Ready(1, 1, Program(name="model-next", code="pass", origin="llm-draft"), "draft"),
                   _Ready(2, 2, program("template-next", valid()), "draft")]
    for index in range(3):
        _model_program_scored(loop, f"weak-{index}", 0.5)
    loop._template_turns = 1
    assert not _next_is_the_model_s(loop)

    # Third of the best: lgbm's two variants (0.9 and 0.89) count once, as their lineage.
    _model_program_scored(loop, "good", 0.875)
    assert _next_is_the_model_s(loop)


def test_a_slot_never_idles_for_a_turn(tmp_path: Path) -> None:
    from batch_agent.solver.solve import _Ready

    loop = _loop_after_lgbm(tmp_path, _SlowModel([]), model=True)
    _model_program_scored(loop, "weak", 0.5)
    loop._template_turns = 0  # the model's turn is far off...
    loop._ready = [_Ready(0, 1, Program(name="model-repair", code="pass", origin="llm-repair"), "repair")]
    assert loop._next_ready() == 0  # ...but its program is all there is to train


def test_without_a_model_the_loop_adds_no_tuning_steps_of_its_own(tmp_path: Path) -> None:
    from batch_agent.solver.templates import TemplateAuthor

    loop = _loop_after_lgbm(tmp_path, TemplateAuthor(), model=False)
    loop._add_template_improvement()
    assert loop._ready == []  # the template author's own improvement calls do the tuning


SILENT = "print('exits cleanly and writes nothing')\n"


def test_a_run_in_a_used_workdir_starts_each_attempt_from_an_empty_folder(competition: Path, tmp_path: Path) -> None:
    solve(str(competition), tmp_path / "first.csv", options(tmp_path, slots=1),
          ScriptedAuthor([program("same-name", valid())]))

    # The earlier run's outputs are in attempt-01-same-name: a program that writes nothing must not be
    # scored on them, and a program that writes them again must be able to.
    with pytest.raises(AttemptsExhaustedError):
        solve(str(competition), tmp_path / "second.csv", options(tmp_path, slots=1),
              ScriptedAuthor([program("same-name", SILENT)]))
    third = solve(str(competition), tmp_path / "third.csv", options(tmp_path, slots=1),
                  ScriptedAuthor([program("same-name", valid(flip=True))]))

    assert [h.ok for h in third.history] == [True], third.history[0].reason
    assert third.cv_score is not None and third.cv_score < 0.5  # the flipped program's own score, not the first's
