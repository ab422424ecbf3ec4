"""The Claude loop against a scripted model at a realistic speed, beside the same run with --no-llm.

    python benchmarks/llm_replay.py ../shared/competitions --time-limit 120
    python benchmarks/llm_replay.py ../shared/competitions --speed 0.1 --only titanic-survival
    python benchmarks/llm_replay.py ../shared/competitions --modes no-llm --slots 1   # one program at a time
    python benchmarks/llm_replay.py ../shared/competitions --repeat 3   # the run-to-run noise of each row

Each run is a real `kaggle-solver run` process. For the model's runs, a fake
Messages API (``tests/fakes/anthropic_server.py``: the wire protocol, streamed
answers included) listens on 127.0.0.1 and the run's ``ANTHROPIC_BASE_URL``
points at it. It answers like a model that writes a program in 20-60 s (the
plan in 10 s; ``--speed`` multiplies every delay) with scripted programs that
follow the program contract on any table competition:

* draft 1: sound (scikit-learn's histogram gradient boosting, fitted per fold);
* draft 2: leaky (a target encoding of the id column fitted outside the folds,
  i.e. each row's own label as a feature): the product's hidden holdout must
  reject it, and its repair is sound;
* draft 3: buggy (reads a column that does not exist): it crashes, and its
  repair is sound;
* every improvement: the sound program with another setting.

With ``ANTHROPIC_API_KEY`` set (and no ``--replay``) no server starts: the runs
call the real API, and the table adds tokens, cost and the gain over --no-llm.

Printed per competition and mode: the graded score (``grade.py``), CV, attempts,
the share of the cores' time the run kept busy (CPU seconds of the run and its
programs over cores × wall seconds; the machine's load beside it), when the
first valid submission was written, model calls, model programs that ran
(valid / rejected as leaks / failed), and whether any entered the final blend.
With ``--repeat N`` every run is made N times and a second table gives, per
competition and mode, the mean and range of the graded score and of the first
valid submission, and the model's mean against --no-llm's and its spread; a third gives, per
repeat, the model against --no-llm's run of the same repeat.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from batch_agent.llm.prompts import IMPROVE_TOOL, PLAN_TOOL, PROGRAM_TOOL, REPAIR_TOOL  # noqa: E402
from batch_agent.solver.profiling import profile_competition  # noqa: E402
from benchmarks.quality import competition_folders  # noqa: E402
from tests.fakes.anthropic_server import FakeAnthropic, Recorded, Reply, tool_reply, usage  # noqa: E402

PROGRAM = '''\
"""{note}"""
import argparse
import json
import os

os.environ["OMP_NUM_THREADS"] = "1"
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import KFold, StratifiedKFold

SPEC = json.loads(r"""{spec}""")
PARAMS = json.loads(r"""{params}""")
parser = argparse.ArgumentParser()
parser.add_argument("--data", required=True)
parser.add_argument("--time-budget", type=float, default=60.0)
args = parser.parse_args()
data = Path(args.data)
train = pd.read_csv(data / "train.csv")
test = pd.read_csv(data / "test.csv")
sample = pd.read_csv(data / "sample_submission.csv")
id_col, target = SPEC["id"], SPEC["target"]
{bug}features = [c for c in train.columns if c not in (id_col, target) and c in test.columns]
both = pd.concat([train[features], test[features]], ignore_index=True)
for column in features:
    if not pd.api.types.is_numeric_dtype(both[column]):
        if both[column].nunique() > 0.5 * len(both):
            both = both.drop(columns=column)  # names, free text: one value per row
        else:
            both[column] = both[column].astype("category").cat.codes  # no labels involved
x_train, x_test = both.iloc[: len(train)], both.iloc[len(train):]
regression = SPEC["task"] == "regression"
if regression:
    y = train[target].astype(float).to_numpy()
    if SPEC["metric"] == "rmsle":
        y = np.log1p(y)
    folds = KFold(5, shuffle=True, random_state=42).split(x_train)
else:
    classes = SPEC["classes"]
    y = train[target].astype(str).map({{c: i for i, c in enumerate(classes)}}).to_numpy()
    folds = StratifiedKFold(5, shuffle=True, random_state=42).split(x_train, y)
if SPEC["leak"]:
    # The classic slip: a target encoding of a high-cardinality key fitted on every train row, outside
    # the folds. For a key unique to each row it is the row's own label.
    key = train[id_col].astype(str)
    means = pd.Series(y, index=key.to_numpy()).groupby(level=0).mean()
    x_train = x_train.assign(key_mean=key.map(means).to_numpy())
    x_test = x_test.assign(key_mean=float(np.mean(y)))


def model():
    if regression:
        return HistGradientBoostingRegressor(**PARAMS)
    return HistGradientBoostingClassifier(**PARAMS)


def predict(fitted, x):
    return fitted.predict(x) if regression else fitted.predict_proba(x)


width = 1 if regression else len(SPEC["classes"])
oof = np.zeros((len(train), width))
test_pred = np.zeros((len(test), width))
for number, (fit_rows, held_rows) in enumerate(folds):
    fitted = model().fit(x_train.iloc[fit_rows], y[fit_rows])
    oof[held_rows] = predict(fitted, x_train.iloc[held_rows]).reshape(len(held_rows), -1)
    test_pred += predict(fitted, x_test).reshape(len(test), -1) / 5
    print("fold", number, "done", flush=True)


def frame(ids, pred):
    out = pd.DataFrame({{id_col: ids}})
    fmt = SPEC["format"]
    if fmt == "value":
        out[target] = np.expm1(pred[:, 0]) if SPEC["metric"] == "rmsle" else pred[:, 0]
    elif fmt == "probability":
        out[target] = pred[:, 1]
    elif fmt == "class_probabilities":
        for i, name in enumerate(SPEC["classes"]):
            out[name] = pred[:, i]
    else:
        labels = np.asarray(SPEC["classes"], dtype=object)[pred.argmax(axis=1)]
        out[target] = pd.Series(labels).astype(train[target].dtype).to_numpy()
    return out[list(sample.columns)]


frame(train[id_col], oof).to_csv("oof.csv", index=False)
frame(test[id_col], test_pred).to_csv("submission.csv", index=False)
print("wrote submission.csv and oof.csv")
'''

SOUND_PARAMS: list[dict[str, Any]] = [
    {"learning_rate": 0.06, "max_iter": 250, "max_leaf_nodes": 15, "l2_regularization": 1.0, "random_state": 0},
    {"learning_rate": 0.04, "max_iter": 400, "max_leaf_nodes": 31, "min_samples_leaf": 30, "random_state": 1},
    {"learning_rate": 0.08, "max_iter": 200, "max_depth": 4, "l2_regularization": 3.0, "random_state": 2},
    {"learning_rate": 0.05, "max_iter": 300, "max_leaf_nodes": 8, "min_samples_leaf": 10, "random_state": 3},
]
PLAN_INPUT: dict[str, Any] = {
    "approach": "Gradient-boosted trees on the raw columns, categories as codes; then tune and blend.",
    "features": ["categories as integer codes", "drop free-text columns"],
    "validation": "5-fold (stratified for classification)",
    "n_folds": 5,
    "models": [{"family": "histogram gradient boosting", "reason": "robust on mixed tables"}],
    "compute": "cpu",
    "draft_time_fraction": 0.5,
}


def scripted_program(spec: dict[str, Any], *, params: dict[str, Any], note: str, leak: bool = False,
                     bug: bool = False) -> str:
    bug_line = 'train["fare_per_person"] = train["fare"] / train["family_size"]\n' if bug else ""
    return PROGRAM.format(note=note, spec=json.dumps({**spec, "leak": leak}), params=json.dumps(params),
                          bug=bug_line)


class ScriptedModel:
    """Answers each call of one run like a model that takes its time; programs as described above."""

    def __init__(self, spec: dict[str, Any], speed: float, seed: int = 0) -> None:
        self.spec, self.speed = spec, speed
        self.random = random.Random(seed)
        self.drafts = 0
        self.changes = 0

    def __call__(self, request: Recorded) -> Reply:
        tool = request.tool_name
        if tool == PLAN_TOOL:
            delay, name, answer = 10.0, PLAN_TOOL, PLAN_INPUT
        elif tool == PROGRAM_TOOL:
            self.drafts += 1
            kind = ("sound", "leaky", "buggy")[(self.drafts - 1) % 3]
            code = scripted_program(self.spec, params=SOUND_PARAMS[0], note=f"scripted {kind} draft",
                                    leak=kind == "leaky", bug=kind == "buggy")
            delay, name, answer = self._writing(), PROGRAM_TOOL, {"summary": f"a {kind} program", "code": code}
        elif tool == REPAIR_TOOL:
            code = self._sound("repair")
            delay, name, answer = self._writing(), REPAIR_TOOL, {"diagnosis": "fixed", "code": code}
        elif tool == IMPROVE_TOOL:
            code = self._sound("improvement")
            delay, name, answer = self._writing(), IMPROVE_TOOL, {"change": "other tree settings", "code": code}
        else:
            raise ValueError(f"unscripted request for {tool}")
        time.sleep(delay * self.speed)
        prompt_tokens = len(request.prompt_text) // 4
        return tool_reply(name, answer, usage_fields=usage(prompt_tokens, len(json.dumps(answer)) // 4))

    def _writing(self) -> float:
        return self.random.uniform(20.0, 60.0)

    def _sound(self, what: str) -> str:
        self.changes += 1
        params = SOUND_PARAMS[self.changes % len(SOUND_PARAMS)]
        return scripted_program(self.spec, params={**params, "random_state": self.changes},
                                note=f"scripted {what} {self.changes}")


class TreeCpu:
    """CPU seconds of a process and all its descendants, polled from /proc while it runs.

    rusage cannot give them: the sandbox's bubblewrap does not hand its program's times on. Each process
    counts with its last polled user + system time, so a process's last poll interval (0.2 s) is missed.
    """

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root, self.interval = root, interval
        self.seen: dict[tuple[int, int], float] = {}
        self._tick = os.sysconf("SC_CLK_TCK")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return sum(self.seen.values())

    def _poll(self) -> None:
        while not self._stop.is_set():
            stats: dict[int, list[str]] = {}
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry.name}/stat", "rb") as handle:
                        stats[int(entry.name)] = handle.read().decode(errors="replace").rsplit(")", 1)[1].split()
                except (OSError, IndexError):
                    continue
            children: dict[int, list[int]] = {}
            for pid, fields in stats.items():
                children.setdefault(int(fields[1]), []).append(pid)
            stack = [self.root]
            while stack:
                pid = stack.pop()
                fields = stats.get(pid)
                if fields is not None:
                    self.seen[(pid, int(fields[19]))] = (int(fields[11]) + int(fields[12])) / self._tick
                stack.extend(children.get(pid, []))
            self._stop.wait(self.interval)


class ProgressClock:
    """When, from the command's start, its progress on stderr reported the first valid attempt.

    The summary's ``first_valid_seconds`` counts from the solver's own clock, which starts after the
    interpreter and the imports; subtracting the summary's ``seconds`` from the process's wall time to
    find that start also counted the process's exit, which is slower with a model (about 0.6 s), and
    made the model's first valid submission look later than it was.
    """

    SUCCESS = re.compile(r"\]\s+train\s+attempt \d+: \S+ CV ")

    def __init__(self, proc: subprocess.Popen[str], started: float) -> None:
        self.first_valid: float | None = None
        self.tail = ""
        self._proc, self._started = proc, started
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._thread.join()

    def _read(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            if self.first_valid is None and self.SUCCESS.search(line):
                self.first_valid = time.monotonic() - self._started
            self.tail = (self.tail + line)[-2000:]


def spec_of(folder: Path) -> dict[str, Any]:
    profile = profile_competition(folder)
    return {"id": profile.id_column, "target": profile.target_columns[0], "task": profile.task,
            "metric": profile.metric, "format": profile.prediction_format, "classes": profile.classes}


def scripted_model_env(server: FakeAnthropic, folder: Path, speed: float) -> dict[str, str]:
    """Point ``server`` at ``folder``'s scripted model; the environment that sends a run's calls to it."""
    server.responder = ScriptedModel(spec_of(folder), speed)
    return {"ANTHROPIC_API_KEY": "sk-replay", "ANTHROPIC_BASE_URL": server.url}


def run_one(slug: str, folder: Path, base: Path, mode: str, args: argparse.Namespace, workroot: Path,
            server: FakeAnthropic | None) -> dict[str, Any]:
    workroot.mkdir(parents=True, exist_ok=True)
    output = workroot / f"{slug}-{mode}.csv"
    command = [sys.executable, "-m", "batch_agent.cli", "run", str(folder), "--output", str(output),
               "--time-limit", str(args.time_limit), "--workdir", str(workroot / f"{slug}-{mode}"),
               "--json"]  # progress on stderr: ProgressClock times the first valid attempt
    if args.slots:
        command += ["--slots", str(args.slots)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if mode == "no-llm":
        command.append("--no-llm")
    elif server is not None:
        env.update(scripted_model_env(server, folder, args.speed))
    load = os.getloadavg()[0]
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
        cpu = TreeCpu(proc.pid)
        progress = ProgressClock(proc, started)
        status = proc.wait()
        wall = time.monotonic() - started
        cpu_seconds = cpu.stop()
        progress.join()
        out.seek(0)
        lines = out.read().decode().strip().splitlines()
        error = progress.tail[-300:]
    cores = len(os.sched_getaffinity(0))
    busy = cpu_seconds / (cores * wall)
    summary: dict[str, Any] = json.loads(lines[-1]) if lines else {"status": "failed", "error": error}
    history = summary.get("history", [])
    origins = {a["program"]: a["origin"] for a in history}
    model_runs = [a for a in history if a["origin"] != "template"]
    llm = summary.get("llm") or {}
    row: dict[str, Any] = {
        "slug": slug, "mode": mode, "cv": summary.get("cv_score"), "score": None,
        "attempts": summary.get("attempts"), "slots": summary.get("slots"), "busy": busy, "load": load,
        "first_valid": None, "calls": llm.get("calls"), "tokens": summary.get("tokens"),
        "cost": summary.get("cost_usd"),
        "model_ok": sum(1 for a in model_runs if a["ok"]),
        "model_leaks": sum(1 for a in model_runs if (a.get("reason") or "").startswith("leak")),
        "model_failed": sum(1 for a in model_runs if not a["ok"] and not (a.get("reason") or "").startswith("leak")),
        "in_blend": any(origins.get(name, "template") != "template" for name in summary.get("blend") or {}),
        "status": summary.get("status", f"exit {status}"), "error": summary.get("error", ""),
    }
    if summary.get("first_valid_seconds") is not None:
        row["first_valid"] = progress.first_valid
    grader = base / "grade.py"
    if summary.get("status") == "succeeded" and grader.is_file():
        graded = subprocess.run([sys.executable, str(grader), slug, str(output)], capture_output=True, text=True,
                                cwd=base)
        if graded.returncode == 0:
            verdict = json.loads(graded.stdout)
            row["score"], row["higher_is_better"] = verdict.get("score"), verdict.get("higher_is_better")
    return row


def _number(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(rows: list[dict[str, Any]], real: bool) -> None:
    header = ["run", "competition", "mode", "graded score", "CV", "attempts", "slots", "cores busy", "load",
              "first valid (s)", "model calls", "model programs ok/leak/failed", "model in blend"]
    if real:
        header += ["tokens", "cost ($)", "gain vs no-llm"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    baseline = {(r["slug"], r.get("repeat", 1)): r["score"] for r in rows if r["mode"] == "no-llm"}
    for r in rows:
        model = r["mode"] != "no-llm"
        cells = [str(r.get("repeat", 1)), r["slug"], r["mode"], _number(r["score"]), _number(r["cv"]),
                 str(r["attempts"] or "-"),
                 str(r["slots"] or "-"), f"{r['busy']:.0%}", f"{r['load']:.1f}", _number(r["first_valid"], 1),
                 str(r["calls"] or 0) if model else "-",
                 f"{r['model_ok']}/{r['model_leaks']}/{r['model_failed']}" if model else "-",
                 ("yes" if r["in_blend"] else "no") if model else "-"]
        if real:
            before = baseline.get((r["slug"], r.get("repeat", 1)))
            gain = r["score"] - before if model and r["score"] is not None and before is not None else None
            cells += [str(r["tokens"] or "-"), _number(r["cost"]), _number(gain)]
        if r["status"] != "succeeded":
            cells[3] = f"failed: {r['error'][:80]}"
        print("| " + " | ".join(cells) + " |")


def spread(rows: list[dict[str, Any]], key: str) -> tuple[float, float, float] | None:
    """Mean, lowest and highest of ``key`` over the rows that have it."""
    values = [float(r[key]) for r in rows if r.get(key) is not None]
    if not values:
        return None
    return statistics.fmean(values), min(values), max(values)


def gain(score: float, baseline: float, *, higher: bool) -> float:
    """``score`` against ``baseline``, signed so that + is better, to the 4 digits the tables print.

    Rounded before formatting, so that equal scores print as +0.0000 rather than -0.0000.
    """
    return round((score - baseline) * (1 if higher else -1), 4) + 0.0


def print_spread(rows: list[dict[str, Any]]) -> None:
    """Per competition and mode over the repeats: graded score and first valid submission, mean (lowest–highest).

    The last column is the model's mean minus --no-llm's, signed so that + is better (the grader says which
    way a score is better), beside --no-llm's own spread (highest minus lowest) over the same repeats: a
    difference smaller than the spread is noise.
    """
    header = ["competition", "mode", "runs", "graded score: mean (low–high)", "first valid (s): mean (low–high)",
              "model vs no-llm (+ better)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    slugs = list(dict.fromkeys(r["slug"] for r in rows))
    for slug in slugs:
        baseline = spread([r for r in rows if r["slug"] == slug and r["mode"] == "no-llm"], "score")
        for mode in dict.fromkeys(r["mode"] for r in rows if r["slug"] == slug):
            mine = [r for r in rows if r["slug"] == slug and r["mode"] == mode]
            score, first = spread(mine, "score"), spread(mine, "first_valid")
            verdict = "-"
            if mode != "no-llm" and score is not None and baseline is not None:
                higher = next(r["higher_is_better"] for r in mine if r["score"] is not None)
                better = gain(score[0], baseline[0], higher=higher)
                verdict = f"{better:+.4f} (no-llm spread {baseline[2] - baseline[1]:.4f})"
            cells = [slug, mode, str(sum(1 for r in mine if r["score"] is not None)),
                     "-" if score is None else f"{score[0]:.4f} ({score[1]:.4f}–{score[2]:.4f})",
                     "-" if first is None else f"{first[0]:.1f} ({first[1]:.1f}–{first[2]:.1f})", verdict]
            print("| " + " | ".join(cells) + " |")


def print_pairs(rows: list[dict[str, Any]]) -> None:
    """Per competition and repeat: the model's graded score against --no-llm's of the same repeat (+ better),
    and how much earlier or later its first valid submission came.

    A repeat runs each competition's modes back to back, so a pair shares the machine's state: a
    difference that keeps its sign over the repeats is the loop's, not a slow spell's.
    """
    repeats = sorted({r.get("repeat", 1) for r in rows})
    print("| competition | " + " | ".join(f"repeat {n}" for n in repeats) + " |")
    print("|" + "---|" * (len(repeats) + 1))
    for slug in dict.fromkeys(r["slug"] for r in rows):
        cells = [slug]
        for n in repeats:
            pair = {r["mode"]: r for r in rows if r["slug"] == slug and r.get("repeat", 1) == n}
            base, model = pair.get("no-llm"), next((r for m, r in pair.items() if m != "no-llm"), None)
            if base is None or model is None or base["score"] is None or model["score"] is None:
                cells.append("-")
                continue
            better = gain(model["score"], base["score"], higher=model["higher_is_better"])
            cell = "equal" if better == 0 else f"{better:+.4f}"
            if base["first_valid"] is not None and model["first_valid"] is not None:
                later = round(model["first_valid"] - base["first_valid"], 1) + 0.0
                cell += ", first valid " + ("as early" if later == 0 else
                                           f"{abs(later):.1f} s {'later' if later > 0 else 'earlier'}")
            cells.append(cell)
        print("| " + " | ".join(cells) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("competitions", type=Path, help="folder of competition folders (with grade.py)")
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--speed", type=float, default=1.0,
                        help="multiplies the scripted model's delays (0.1: ten times faster)")
    parser.add_argument("--only", action="append", help="run only this competition (repeatable)")
    parser.add_argument("--modes", default="no-llm,model", help="comma-separated: no-llm, model")
    parser.add_argument("--slots", type=int, help="programs trained at once (default: the solver's choice)")
    parser.add_argument("--replay", action="store_true",
                        help="use the scripted model even when ANTHROPIC_API_KEY is set")
    parser.add_argument("--workdir", type=Path, help="keep the runs' folders here (default: a temporary one)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run every competition and mode this many times and add a table of the spread")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    real = bool(os.environ.get("ANTHROPIC_API_KEY")) and not args.replay
    base = args.competitions.resolve()
    folders = [(s, f) for s, f in competition_folders(base) if not args.only or s in args.only]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    server = None if real else FakeAnthropic()
    if server is not None:
        server.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="llm-replay-") as tmp:
            workroot = (args.workdir or Path(tmp)).resolve()
            workroot.mkdir(parents=True, exist_ok=True)
            # Repeats go round every competition and mode before the next: a slow spell of the machine then
            # falls on both modes rather than on all repeats of one.
            for repeat in range(1, args.repeat + 1):
                for slug, folder in folders:
                    for mode in modes:
                        row = run_one(slug, folder, base, mode, args, workroot / f"run-{repeat}", server)
                        row["repeat"] = repeat
                        rows.append(row)
                        print(f"run {repeat} {slug} {mode}: score {row['score']} attempts {row['attempts']} "
                              f"first valid {_number(row['first_valid'], 1)} s", file=sys.stderr, flush=True)
    finally:
        if server is not None:
            server.stop()
    print(f"\ntime limit {args.time_limit:.0f} s, model speed ×{args.speed:g}, "
          f"{'real API' if real else 'scripted model on loopback'}, {len(os.sched_getaffinity(0))} cores\n")
    print_table(rows, real)
    if args.repeat > 1:
        print()
        print_spread(rows)
        print()
        print_pairs(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
