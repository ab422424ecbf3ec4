"""Scores the product computes itself: oof.csv, the advisory metrics.json claim, the hidden holdout, the blend.

The programs here stand in for model-written ones (origin "llm-draft"): they run in the
sandbox like any attempt, on a made-up binary task of 1,500 train rows, enough for a holdout.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.holdout import holdout_size, prepare_holdout, remove_prepared
from batch_agent.solver.plan import AttemptResult, Plan, Program
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.solve import SolveOptions, run_attempt, solve
from batch_agent.solver.submission import validate_submission

N_TRAIN, N_TEST = 1500, 300

PROGRAM = """\
import argparse, json
from pathlib import Path
import numpy as np, pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--time-budget", type=float)
args = parser.parse_args()
train = pd.read_csv(Path(args.data) / "train.csv")
test = pd.read_csv(Path(args.data) / "test.csv")
COLUMNS = {columns}
X, X_test, y = train[COLUMNS].to_numpy(), test[COLUMNS].to_numpy(), train["target"].to_numpy()
oof = np.zeros(len(train))
for fit, val in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
    oof[val] = LogisticRegression().fit(X[fit], y[fit]).predict_proba(X[val])[:, 1]
pred = LogisticRegression().fit(X, y).predict_proba(X_test)[:, 1]
{tail}
"""
HONEST_TAIL = """\
pd.DataFrame({"id": train["id"], "target": oof}).to_csv("oof.csv", index=False)
pd.DataFrame({"id": test["id"], "target": pred}).to_csv("submission.csv", index=False)
Path("metrics.json").write_text(json.dumps({"cv_score": roc_auc_score(y, oof)}))
"""
HONEST = PROGRAM.format(columns='["a", "b"]', tail=HONEST_TAIL)
ONLY_A = PROGRAM.format(columns='["a"]', tail=HONEST_TAIL)
ONLY_B = PROGRAM.format(columns='["b"]', tail=HONEST_TAIL)
# A constant everywhere, and a claim of a perfect score.
LIAR = PROGRAM.format(columns='["a"]', tail="""\
pd.DataFrame({"id": train["id"], "target": 0.5}).to_csv("oof.csv", index=False)
pd.DataFrame({"id": test["id"], "target": 0.5}).to_csv("submission.csv", index=False)
Path("metrics.json").write_text(json.dumps({"cv_score": 1.0}))
""")
# The true labels as out-of-fold predictions, with an honest model's test predictions.
LABELS_AS_OOF = PROGRAM.format(columns='["a", "b"]', tail="""\
pd.DataFrame({"id": train["id"], "target": y.astype(float)}).to_csv("oof.csv", index=False)
pd.DataFrame({"id": test["id"], "target": pred}).to_csv("submission.csv", index=False)
Path("metrics.json").write_text(json.dumps({"cv_score": roc_auc_score(y, y)}))
""")
NO_OOF = PROGRAM.format(columns='["a", "b"]', tail="""\
pd.DataFrame({"id": test["id"], "target": pred}).to_csv("submission.csv", index=False)
Path("metrics.json").write_text(json.dumps({"cv_score": roc_auc_score(y, oof)}))
""")
# oof.csv for half of the train rows, one of them NaN.
PARTIAL_OOF = PROGRAM.format(columns='["a", "b"]', tail="""\
half = pd.DataFrame({"id": train["id"], "target": oof}).iloc[: len(train) // 2]
half.loc[0, "target"] = float("nan")
half.to_csv("oof.csv", index=False)
pd.DataFrame({"id": test["id"], "target": pred}).to_csv("submission.csv", index=False)
""")


def make_competition(folder: Path, n_train: int = N_TRAIN) -> Path:
    rng = np.random.default_rng(11)
    n = n_train + N_TEST
    a, b = rng.normal(size=n), rng.normal(size=n)
    target = (a + b + rng.normal(0, 1.0, n) > 0).astype(int)
    frame = pd.DataFrame({"id": np.arange(5000, 5000 + n), "a": a.round(4), "b": b.round(4), "target": target})
    folder.mkdir()
    frame.iloc[:n_train].to_csv(folder / "train.csv", index=False)
    frame.iloc[n_train:][["id", "a", "b"]].to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": frame.iloc[n_train:]["id"], "target": 0.5}).to_csv(folder / "sample_submission.csv",
                                                                          index=False)
    (folder / "description.md").write_text("# Made-up\n\nSubmissions are evaluated on area under the ROC curve.\n")
    return folder


@pytest.fixture
def profile(tmp_path: Path) -> CompetitionProfile:
    return profile_competition(make_competition(tmp_path / "comp"))


def attempt(profile: CompetitionProfile, code: str, folder: Path, origin: str = "llm-draft") -> AttemptResult:
    program = Program(name=folder.name, code=code, origin=origin)  # type: ignore[arg-type]
    return run_attempt(profile, program, folder, time_budget=60, memory_limit_mb=2048, holdout_seed=1)


def test_the_score_is_computed_from_oof_csv_and_a_false_claim_is_flagged(
    profile: CompetitionProfile, tmp_path: Path
) -> None:
    honest = attempt(profile, HONEST, tmp_path / "honest")
    liar = attempt(profile, LIAR, tmp_path / "liar")

    assert honest.ok and liar.ok, (honest.reason, liar.reason)
    assert liar.claimed_cv_score == 1.0 and liar.cv_score == pytest.approx(0.5)
    assert liar.claim_disagrees
    assert honest.cv_score is not None and 0.7 < honest.cv_score < 0.95
    assert honest.claimed_cv_score == pytest.approx(honest.cv_score) and not honest.claim_disagrees


def test_a_constant_program_claiming_a_perfect_score_loses_to_an_honest_one(tmp_path: Path) -> None:
    folder = make_competition(tmp_path / "comp")
    author = ScriptedAuthor([Program(name="liar", code=LIAR, origin="llm-draft"),
                             Program(name="honest", code=HONEST, origin="llm-draft")])
    options = SolveOptions(time_limit=120, workdir=tmp_path / "work", max_attempts=2, max_repairs=0,
                           memory_limit_mb=2048)
    result = solve(str(folder), tmp_path / "submission.csv", options, author)

    liar, honest = result.history
    assert liar.program == "liar" and liar.claim_disagrees
    # The constant carries no information: it earns no real weight in a blend or a stack.
    assert result.best in ("honest", "blend", "stack") and result.blend.get("liar", 0.0) < 0.05, result.blend
    assert result.cv_score >= (honest.cv_score or 1.0) - 1e-9


def test_true_labels_written_as_oof_are_rejected_as_a_leak_with_both_scores(
    profile: CompetitionProfile, tmp_path: Path
) -> None:
    result = attempt(profile, LABELS_AS_OOF, tmp_path / "leaky")

    assert not result.ok
    assert result.cv_score == pytest.approx(1.0)
    assert result.holdout_score is not None and result.holdout_score < 0.95
    assert result.holdout_rows == holdout_size(N_TRAIN)
    assert result.reason is not None and result.reason.startswith("leak:")
    assert "1.00000" in result.reason and f"{result.holdout_score:.5f}" in result.reason


def test_an_honest_model_written_program_passes_the_holdout_within_its_noise(
    profile: CompetitionProfile, tmp_path: Path
) -> None:
    result = attempt(profile, HONEST, tmp_path / "honest")

    assert result.ok, result.reason
    assert result.holdout_rows == holdout_size(N_TRAIN) and result.holdout_noise is not None
    assert result.holdout_score is not None and result.cv_score is not None
    assert abs(result.holdout_score - result.cv_score) < 3 * result.holdout_noise
    # The held rows never reach the submission the product keeps; their predictions are under real train ids.
    assert validate_submission(Path(result.workdir) / "submission.csv", profile) == []
    held = pd.read_csv(Path(result.workdir) / "holdout.csv")
    train_ids = set(pd.read_csv(Path(profile.data_dir) / "train.csv")["id"])
    assert len(held) == result.holdout_rows and set(held["id"]) <= train_ids
    # The program's own data folder is gone once the attempt is scored.
    assert not (tmp_path / "honest-data").exists()


def test_templates_run_without_a_holdout(profile: CompetitionProfile, tmp_path: Path) -> None:
    result = attempt(profile, HONEST, tmp_path / "template", origin="template")

    assert result.ok and result.holdout_rows == 0 and result.holdout_score is None
    assert result.holdout.startswith("none")


def test_a_missing_oof_csv_fails_the_attempt_with_a_clear_reason(
    profile: CompetitionProfile, tmp_path: Path
) -> None:
    result = attempt(profile, NO_OOF, tmp_path / "no-oof")

    assert not result.ok and result.cv_score is None
    assert result.reason == "the program finished without writing oof.csv (out-of-fold predictions for every " \
                            "train.csv row)"


def test_an_incomplete_oof_csv_fails_the_attempt_naming_the_problems(
    profile: CompetitionProfile, tmp_path: Path
) -> None:
    result = attempt(profile, PARTIAL_OOF, tmp_path / "partial")

    assert not result.ok and result.reason is not None
    assert result.reason.startswith("invalid oof.csv: ")
    assert "train ids missing" in result.reason and "NaN" in result.reason


def test_an_oof_csv_planted_as_a_link_is_not_followed(profile: CompetitionProfile, tmp_path: Path) -> None:
    secret = tmp_path / "elsewhere.csv"
    secret.write_text("id,target\n")
    code = HONEST.replace('to_csv("oof.csv", index=False)', 'to_csv("real.csv", index=False)') + (
        f"import os\nos.symlink({str(secret)!r}, 'oof.csv')\n")
    result = attempt(profile, code, tmp_path / "linked")

    assert not result.ok and result.reason is not None and "links are never followed" in result.reason


def test_sound_model_written_programs_join_the_blend(tmp_path: Path) -> None:
    folder = make_competition(tmp_path / "comp")
    author = ScriptedAuthor([Program(name="only-a", code=ONLY_A, origin="llm-draft"),
                             Program(name="only-b", code=ONLY_B, origin="llm-draft")])
    options = SolveOptions(time_limit=120, workdir=tmp_path / "work", max_attempts=2, max_repairs=0,
                           memory_limit_mb=2048)
    result = solve(str(folder), tmp_path / "submission.csv", options, author)

    assert all(h.ok for h in result.history), [h.reason for h in result.history]
    # The greedy blend or the stacker, whichever scores better on this run's holdout draw: both combine them.
    assert result.best in ("blend", "stack") and set(result.blend) == {"only-a", "only-b"}
    assert result.cv_score > max(h.cv_score or 0.0 for h in result.history)
    assert validate_submission(tmp_path / "submission.csv", profile_competition(folder)) == []


def test_the_holdout_moves_labelled_rows_to_test_under_fresh_ids_in_a_read_only_folder(
    profile: CompetitionProfile, tmp_path: Path
) -> None:
    prepared = tmp_path / "prepared"
    holdout = prepare_holdout(profile, prepared, seed=3)
    assert holdout is not None
    n_held = holdout_size(N_TRAIN)
    train = pd.read_csv(prepared / "train.csv")
    test = pd.read_csv(prepared / "test.csv")
    sample = pd.read_csv(prepared / "sample_submission.csv")
    real_train = pd.read_csv(Path(profile.data_dir) / "train.csv")
    real_test = pd.read_csv(Path(profile.data_dir) / "test.csv")

    assert len(train) == N_TRAIN - n_held and len(test) == N_TEST + n_held
    assert list(test.columns) == list(real_test.columns) and "target" not in test.columns
    assert list(sample["id"]) == list(test["id"]) and test["id"].is_unique
    fresh = set(test["id"]) - set(real_test["id"])
    assert len(fresh) == n_held and not fresh & set(real_train["id"])
    assert {str(v) for v in fresh} == set(holdout.fresh_ids)
    # The held rows carry the real rows' features, in order of fresh_ids.
    by_id = test.set_index(test["id"].astype(str))
    held_features = by_id.loc[holdout.fresh_ids, ["a", "b"]].to_numpy()
    assert np.array_equal(held_features, real_train.iloc[holdout.train_rows][["a", "b"]].to_numpy())
    # Real test rows keep their order; held rows are spread among them, not appended.
    assert list(test[test["id"].isin(real_test["id"])]["id"]) == list(real_test["id"])
    assert test["id"].isin(list(fresh)).to_numpy()[: N_TEST // 2].any()
    assert prepared.stat().st_mode & stat.S_IWUSR == 0
    assert all(p.stat().st_mode & stat.S_IWUSR == 0 for p in prepared.iterdir())
    remove_prepared(prepared)
    assert not prepared.exists()


def test_a_tiny_train_gets_no_holdout_and_the_attempt_says_so(tmp_path: Path) -> None:
    profile = profile_competition(make_competition(tmp_path / "small", n_train=400))
    assert holdout_size(400) == 0 and prepare_holdout(profile, tmp_path / "prepared") is None
    result = attempt(profile, HONEST, tmp_path / "honest")
    assert result.ok and result.holdout_rows == 0 and "too small" in result.holdout


def test_holdout_sizes_are_a_tenth_and_at_least_a_few_hundred_where_the_data_allows() -> None:
    assert [holdout_size(n) for n in (999, 1000, 1500, 3000, 10_000)] == [0, 200, 300, 300, 1000]


def test_the_cli_json_shows_each_attempts_product_score_and_claim(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from batch_agent.cli import main

    folder = make_competition(tmp_path / "comp", n_train=400)
    code = main(["run", str(folder), "--output", str(tmp_path / "submission.csv"), "--time-limit", "20",
                 "--workdir", str(tmp_path / "work"), "--json", "--quiet", "--no-llm"])

    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    ok = [a for a in summary["history"] if a["ok"]]
    assert ok, summary["history"]
    for entry in ok:
        # Templates claim in metrics.json what the product measures from their oof.csv.
        assert entry["claimed_cv_score"] == pytest.approx(entry["cv_score"], abs=1e-9)
        assert entry["claim_disagrees"] is False and entry["holdout"].startswith("none")


class ScriptedAuthor:
    """Drafts the given programs and nothing else: no repairs, no improvements."""

    # Named like the template author, so that solve() trains no starter template beside these programs.
    name = "templates"

    def __init__(self, programs: list[Program]) -> None:
        self.programs = programs

    def plan(self, profile: CompetitionProfile, time_limit: float) -> Plan:
        return Plan(approach="scripted programs", candidates=[])

    def draft(self, profile: CompetitionProfile, plan: Plan) -> list[Program]:
        return list(self.programs)

    def repair(self, profile: CompetitionProfile, program: Program, failure: AttemptResult) -> Program | None:
        return None

    def improve(self, profile: CompetitionProfile, plan: Plan, best: Program,
                history: list[AttemptResult]) -> Program | None:
        return None


@pytest.mark.parametrize("style", ["sparse-large-integers", "strings"])
def test_fresh_holdout_ids_are_unused_and_unique_whatever_the_id_style(tmp_path: Path, style: str) -> None:
    folder = make_competition(tmp_path / "comp")
    for name in ("train.csv", "test.csv", "sample_submission.csv"):
        frame = pd.read_csv(folder / name)
        frame["id"] = (frame["id"] * 7_919_000_003 if style == "sparse-large-integers"
                       else "cust-" + frame["id"].astype(str))
        frame.to_csv(folder / name, index=False)
    profile = profile_competition(folder)
    holdout = prepare_holdout(profile, tmp_path / "prepared", seed=5)

    assert holdout is not None
    real = {str(v) for name in ("train.csv", "test.csv") for v in pd.read_csv(folder / name)["id"]}
    assert len(set(holdout.fresh_ids)) == holdout_size(N_TRAIN) and not set(holdout.fresh_ids) & real
    test_ids = pd.read_csv(tmp_path / "prepared" / "test.csv", dtype=str)["id"]
    assert set(holdout.fresh_ids) <= set(test_ids) and test_ids.is_unique
    remove_prepared(tmp_path / "prepared")


# Makes its read-only copy of the data writable again, and relabels train.csv to agree with a constant guess.
RELABELS_ITS_DATA = PROGRAM.format(columns='["a", "b"]', tail="""\
import os
data = Path(args.data)
os.chmod(data, 0o755)
os.chmod(data / "train.csv", 0o644)
train.assign(target=1).to_csv(data / "train.csv", index=False)
pd.DataFrame({"id": train["id"], "target": 1.0}).to_csv("oof.csv", index=False)
pd.DataFrame({"id": test["id"], "target": pred}).to_csv("submission.csv", index=False)
""")


def test_labels_rewritten_in_the_programs_copy_of_the_data_do_not_change_its_score(
    profile: CompetitionProfile, tmp_path: Path
) -> None:
    result = attempt(profile, RELABELS_ITS_DATA, tmp_path / "relabels")

    if result.ok:
        # Where the sandbox lets it rewrite its copy, a constant out-of-fold prediction still scores a
        # constant's AUC against the labels the product holds.
        assert result.cv_score == pytest.approx(0.5)
    else:
        # Isolated, its copy of the data is mounted read-only: the rewrite itself fails.
        assert result.cv_score is None
        assert any(word in result.log_tail for word in ("Read-only file system", "Permission denied",
                                                         "Operation not permitted")), result.log_tail


def test_a_holdout_without_both_classes_gives_no_verdict_but_the_attempt_still_counts(tmp_path: Path) -> None:
    folder = make_competition(tmp_path / "comp")
    profile = profile_competition(folder)
    # The held rows depend on the seed and the labelled rows only: make positives only outside them.
    held = prepare_holdout(profile, tmp_path / "probe", seed=1)
    assert held is not None
    remove_prepared(tmp_path / "probe")
    train = pd.read_csv(folder / "train.csv")
    outside = np.setdiff1d(np.arange(N_TRAIN), held.train_rows)
    train["target"] = 0
    train.loc[outside[:40], "target"] = 1
    train.to_csv(folder / "train.csv", index=False)

    result = attempt(profile_competition(folder), HONEST, tmp_path / "rare")

    assert result.ok, result.reason
    assert result.holdout_score is None and result.holdout_rows == holdout_size(N_TRAIN)
    assert "not scorable" in result.holdout
