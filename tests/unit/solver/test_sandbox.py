from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.isolation import Isolation
from batch_agent.solver.sandbox import SandboxResult, run_sandboxed, safe_environment
from batch_agent.solver.submission import validate_submission

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the sandbox needs Linux /proc")


def _program(tmp_path: Path, code: str, name: str = "program.py") -> list[str]:
    # Inside the folder it runs in: under isolation, nothing else of tmp_path is visible to the program.
    path = tmp_path / "run" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return [sys.executable, str(path)]


def _run(tmp_path: Path, code: str, *, time_limit: float, memory_limit_mb: int) -> SandboxResult:
    return run_sandboxed(
        _program(tmp_path, code),
        workdir=tmp_path / "run",
        time_limit=time_limit,
        memory_limit_mb=memory_limit_mb,
    )


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _no_process_left_in(folder: Path, wait: float = 5.0) -> bool:
    """No live process has ``folder`` as its working directory (found from this side of any PID namespace)."""
    folder = folder.resolve()
    deadline = time.monotonic() + wait
    while True:
        left = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if Path(os.readlink(f"/proc/{entry}/cwd")) == folder and _alive(int(entry)):
                        left.append(int(entry))
                except OSError:
                    continue
        if not left:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


# Killing must hold with the probed isolation (a PID namespace here) and without any (the process-tree walk).
ISOLATIONS = [pytest.param(None, id="probed"), pytest.param(Isolation("none"), id="no-isolation")]


def test_program_that_succeeds_is_ok_and_its_output_is_logged(tmp_path: Path) -> None:
    argv = _program(tmp_path, "import sys\nprint('hello')\nprint('to stderr', file=sys.stderr)\n")
    result = run_sandboxed(argv, workdir=tmp_path / "run", time_limit=20, memory_limit_mb=500)
    assert result.ok and result.reason is None
    assert result.returncode == 0
    assert "hello" in result.log_tail and "to stderr" in result.log_tail
    assert result.log_path == (tmp_path / "run" / "program.log").resolve()
    assert result.peak_rss_mb > 1


def test_program_runs_in_its_workdir(tmp_path: Path) -> None:
    argv = _program(tmp_path, "open('submission.csv', 'w').write('id,y\\n')\n")
    result = run_sandboxed(argv, workdir=tmp_path / "run", time_limit=20, memory_limit_mb=500)
    assert result.ok
    assert (tmp_path / "run" / "submission.csv").read_text() == "id,y\n"


def test_program_sleeping_past_its_limit_is_timed_out(tmp_path: Path) -> None:
    argv = _program(tmp_path, "import time\nprint('starting', flush=True)\ntime.sleep(60)\n")
    result = run_sandboxed(argv, workdir=tmp_path / "run", time_limit=1, memory_limit_mb=500)
    assert result.timed_out and not result.ok
    assert result.reason == "timed out after 1 s"
    assert result.seconds < 10
    assert "starting" in result.log_tail


def test_program_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=0.5, memory_limit_mb=500)
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL
    assert result.seconds < 10


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_grandchild_sleeper_is_killed_on_timeout(tmp_path: Path, isolation: Isolation | None) -> None:
    code = """
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        open("grandchild.pid", "w").write(str(child.pid))
        time.sleep(60)
    """
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=1.5, memory_limit_mb=500,
                           isolation=isolation)
    assert result.timed_out
    assert (tmp_path / "run" / "grandchild.pid").exists()
    assert _no_process_left_in(tmp_path / "run")


@pytest.mark.parametrize("isolation", ISOLATIONS)
def test_worker_left_behind_by_a_finished_program_is_killed(tmp_path: Path, isolation: Isolation | None) -> None:
    code = """
        import os, subprocess, sys
        child = subprocess.Popen([sys.executable, "-c", "import os, time; os.setsid(); time.sleep(60)"])
        open("worker.pid", "w").write(str(child.pid))
        import time; time.sleep(0.5)
    """
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=20, memory_limit_mb=500,
                           isolation=isolation)
    assert result.ok
    assert (tmp_path / "run" / "worker.pid").exists()
    assert _no_process_left_in(tmp_path / "run")


def test_program_growing_past_the_memory_limit_is_stopped(tmp_path: Path) -> None:
    code = """
        import time
        chunks = []
        for _ in range(30):
            chunks.append(bytearray(10 * 2**20))
            time.sleep(0.02)
        time.sleep(20)
        print("survived")
    """
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=30, memory_limit_mb=150)
    assert result.memory_exceeded and not result.ok
    assert result.peak_rss_mb > 150
    assert result.reason is not None
    assert result.reason.startswith("exceeded the memory limit of 150 MB (peak ")
    assert "survived" not in result.log_tail


def test_memory_of_child_processes_counts_toward_the_limit(tmp_path: Path) -> None:
    code = """
        import subprocess, sys
        grow = "import time\\nb = bytearray(200 * 2**20)\\ntime.sleep(30)"
        subprocess.run([sys.executable, "-c", grow])
    """
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=20, memory_limit_mb=150)
    assert result.memory_exceeded
    assert result.seconds < 15


def test_small_program_of_a_large_parent_is_not_blamed_for_the_parents_memory(tmp_path: Path) -> None:
    ballast = b"\x01" * (400 * 2**20)  # the parent holds 400 MB of resident pages while it starts the child
    code = "raise SystemExit(3)\n"
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=20, memory_limit_mb=200)
    assert len(ballast) > 0
    assert result.returncode == 3
    assert not result.memory_exceeded
    assert result.reason is not None and result.reason.startswith("exited with code 3")


def test_program_exiting_non_zero_reports_the_last_log_line(tmp_path: Path) -> None:
    code = "print('loading data')\nraise ValueError('column Age not found')\n"
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=20, memory_limit_mb=500)
    assert result.returncode == 1 and not result.ok
    assert result.reason == "exited with code 1: ValueError: column Age not found"
    assert "Traceback" in result.log_tail


def test_program_killed_by_a_signal_is_reported(tmp_path: Path) -> None:
    code = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=20, memory_limit_mb=500)
    assert result.returncode == -signal.SIGSEGV
    assert result.reason == f"killed by signal {int(signal.SIGSEGV)} (SIGSEGV)"


def test_missing_executable_is_a_failed_result_not_an_exception(tmp_path: Path) -> None:
    result = run_sandboxed(
        [str(tmp_path / "no-such-interpreter")], workdir=tmp_path / "run", time_limit=5, memory_limit_mb=100
    )
    assert not result.ok and result.returncode is None
    assert result.reason is not None and result.reason.startswith("could not start the program: ")


def test_program_flooding_its_log_is_stopped(tmp_path: Path) -> None:
    code = "while True:\n    print('x' * 1000)\n"
    result = run_sandboxed(
        _program(tmp_path, code), workdir=tmp_path / "run", time_limit=30, memory_limit_mb=500, max_log_mb=2
    )
    assert result.log_exceeded and not result.ok
    assert result.reason == "wrote more than 2 MB of log output"
    assert result.seconds < 20


def test_long_log_is_cut_to_its_tail(tmp_path: Path) -> None:
    code = "for i in range(20000):\n    print(f'line {i}')\n"
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=20, memory_limit_mb=500)
    assert result.ok
    assert len(result.log_tail) <= 4000
    assert result.log_tail.rstrip().endswith("line 19999")


def test_malformed_submission_is_caught_by_validation(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "test.csv").write_text("id,x\n1,0.1\n2,0.2\n3,0.3\n")
    (data / "sample_submission.csv").write_text("id,target\n1,0.5\n2,0.5\n3,0.5\n")
    profile = CompetitionProfile(
        data_dir=str(data),
        id_column="id",
        target_columns=["target"],
        submission_columns=["id", "target"],
        task="binary",
        prediction_format="probability",
        metric="roc_auc",
        n_train=3,
        n_test=3,
    )
    code = "open('submission.csv', 'w').write('id,prediction\\n1,0.5\\n2,nan\\n')\n"
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=20, memory_limit_mb=500)
    assert result.ok
    problems = validate_submission(tmp_path / "run" / "submission.csv", profile)
    assert any("missing columns ['target']" in p for p in problems)
    assert any("unexpected columns ['prediction']" in p for p in problems)
    assert "1 test ids missing, e.g. 3" in problems


def test_parent_secrets_are_not_visible_to_the_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-value")
    monkeypatch.setenv("KAGGLE_KEY", "kaggle-value")
    monkeypatch.setenv("SOME_RANDOM_SETTING", "parent-only")
    code = "import json, os\nopen('env.json', 'w').write(json.dumps(dict(os.environ)))\n"
    result = run_sandboxed(
        _program(tmp_path, code),
        workdir=tmp_path / "run",
        time_limit=20,
        memory_limit_mb=500,
        env={"GITHUB_TOKEN": "ghp-value", "AWS_REGION": "us-east-1", "SOLVER_SEED": "7"},
    )
    assert result.ok
    seen = json.loads((tmp_path / "run" / "env.json").read_text())
    text = json.dumps(seen)
    for secret in ("aws-secret-value", "AKIAEXAMPLE", "sk-ant-value", "kaggle-value", "ghp-value"):
        assert secret not in text
    assert "SOME_RANDOM_SETTING" not in seen
    assert "AWS_REGION" not in seen
    assert seen["SOLVER_SEED"] == "7"
    assert seen["HOME"] == str((tmp_path / "run").resolve())
    assert seen["TMPDIR"] == str((tmp_path / "run" / "tmp").resolve())
    assert seen["PYTHONUNBUFFERED"] == "1"


def test_safe_environment_keeps_machine_settings_and_drops_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    monkeypatch.setenv("NVIDIA_VISIBLE_DEVICES", "all")
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    env = safe_environment(
        {"MY_CREDENTIALS_FILE": "/x", "api_key": "k", "KAGGLE_USERNAME": "me", "DATA_DIR": "/data"},
        home=Path("/work/run"),
    )
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["CUDA_VISIBLE_DEVICES"] == "0" and env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["DATA_DIR"] == "/data"
    assert env["HOME"] == "/work/run" and env["TMPDIR"] == "/work/run/tmp"
    for dropped in ("DB_PASSWORD", "MY_CREDENTIALS_FILE", "api_key", "KAGGLE_USERNAME"):
        assert dropped not in env
    assert env["PATH"] == os.environ["PATH"]


def test_interrupted_parent_kills_the_program_before_re_raising(tmp_path: Path) -> None:
    code = "import os, time\nopen('child.pid', 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    pid_file = tmp_path / "run" / "child.pid"

    sent: list[float] = []

    def interrupt_when_started() -> None:
        # Sandboxes start slowly on a loaded machine; an interrupt sent before the program runs, or after
        # the run ended, would test nothing (or hit another test), so it is only sent to a running program.
        deadline = time.monotonic() + 60
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        if pid_file.exists():
            time.sleep(0.1)
            sent.append(time.monotonic())
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    # Ctrl-C as the CLI gets it: Python's own handler. Native code that other tests of this worker ran
    # in-process may have left the process's SIGINT disposition elsewhere (the interrupt was once ignored
    # in a full parallel run: the program slept its 60 s out).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=interrupt_when_started, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            result = _run(tmp_path, code, time_limit=90, memory_limit_mb=500)
            pytest.fail(f"the run ended uninterrupted; interrupt sent after "
                        f"{[round(t - started, 1) for t in sent]} s; {result}")
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    assert pid_file.exists()
    assert _no_process_left_in(tmp_path / "run")


def test_openmp_threads_sleep_while_waiting_unless_the_machine_says_otherwise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert safe_environment(home=tmp_path)["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert safe_environment(home=tmp_path)["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to give the program one")
def test_program_given_a_slots_cores_runs_on_them_and_is_told_as_many_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    mine = os.sched_getaffinity(0)
    core = max(mine)
    code = """
        import json, os, subprocess, sys
        child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                               capture_output=True, text=True).stdout.strip()
        print(json.dumps({"cores": sorted(os.sched_getaffinity(0)), "child": child,
                          "omp": os.environ.get("OMP_NUM_THREADS"), "blas": os.environ.get("OPENBLAS_NUM_THREADS")}))
    """
    result = run_sandboxed(_program(tmp_path, code), workdir=tmp_path / "run", time_limit=30, memory_limit_mb=2048,
                           cpus=frozenset({core}))

    assert result.ok, result.log_tail
    seen = json.loads(result.log_tail.strip().splitlines()[-1])
    assert seen == {"cores": [core], "child": str([core]), "omp": "1", "blas": "1"}
    # The thread that started it is back on every core it had.
    assert os.sched_getaffinity(0) == mine


def test_program_without_a_slot_keeps_the_parents_cores(tmp_path: Path) -> None:
    result = _run(tmp_path, "import os; print(len(os.sched_getaffinity(0)))", time_limit=30, memory_limit_mb=2048)
    assert result.ok and result.log_tail.strip() == str(len(os.sched_getaffinity(0)))
