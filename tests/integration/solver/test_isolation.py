"""Attacks a hostile training program would try, one per escape route; each must fail.

Every attack runs the way the product runs a model-written program: a solver process that holds
secrets (in its environment and its home directory) calls ``run_attempt``, and the program writes
what it observed into its own folder, so each test checks that the attack was really tried.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from batch_agent.service.artifacts import upload_attempt_folder
from batch_agent.solver.isolation import code_root, probe_isolation
from batch_agent.solver.outputs import OutputError, read_output

ISOLATION = probe_isolation()
pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="isolation is built from Linux namespaces"),
    pytest.mark.skipif(os.geteuid() != 0 and not ISOLATION.separated,
                       reason=f"this user gets no user namespace here ({ISOLATION.why_not_stronger})"),
]

ENV_SECRETS = {"KAGGLE_KEY": "kaggle-env-secret-7f3a", "ANTHROPIC_API_KEY": "anthropic-env-secret-91bc",
               "AWS_SECRET_ACCESS_KEY": "aws-env-secret-d04e"}
FILE_SECRET = "file-secret-5e21"

# The solver process: holds the secrets and runs one model-written program exactly as the product does.
SOLVER = """
import json, sys
from pathlib import Path
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.plan import Program
from batch_agent.solver.solve import run_attempt

data, attempt, code = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]).read_text()
profile = CompetitionProfile(data_dir=str(data), id_column="id", target_columns=["target"],
                             submission_columns=["id", "target"], task="binary", prediction_format="probability",
                             metric="roc_auc", n_train=3, n_test=3)
result = run_attempt(profile, Program(name="attack", code=code, origin="llm-draft"), attempt,
                     time_budget=60, memory_limit_mb=2000)
print(json.dumps(result.model_dump()))
"""


@dataclass
class World:
    """What the solver can reach and a program must not: secrets, other folders, the cache."""

    root: Path
    home: Path
    secret_file: Path
    cache: Path
    data: Path
    other_attempt: Path
    output: Path
    attempt: Path

    def solve(self, attack: str, *, as_pid_1: bool = False, **values: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Runs ``attack`` (formatted with ``values``) as attempt 1; returns the result and what it observed.

        ``as_pid_1``: the solver is pid 1 of its own PID namespace, as in a container.
        """
        code = self.root / "attack.py"
        code.write_text(textwrap.dedent(attack).format(**values))
        env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": str(self.home),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(code_root()), os.environ.get("PYTHONPATH")])),
               **ENV_SECRETS}
        container: list[str] = []
        if as_pid_1:
            container = ["unshare", "--pid", "--fork", "--mount-proc"]
            if os.geteuid() != 0:
                container[1:1] = ["--user", "--map-root-user"]
        done = subprocess.run([*container, sys.executable, "-c", SOLVER, str(self.data), str(self.attempt), str(code)],
                              env=env, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout.strip().splitlines()[-1])
        try:
            observed = json.loads(read_output(self.attempt, "observed.json"))
        except OutputError as exc:
            raise AssertionError(f"the attack recorded nothing ({exc}); log: {result['log_tail']}") from None
        return result, observed


@pytest.fixture
def world(tmp_path: Path) -> World:
    home = tmp_path / "home"
    (home / ".kaggle").mkdir(parents=True)
    (home / ".kaggle" / "kaggle.json").write_text(json.dumps({"username": "me", "key": FILE_SECRET}))
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key = {FILE_SECRET}\n")
    secret_file = tmp_path / "parent-only.txt"
    secret_file.write_text(FILE_SECRET)
    secret_file.chmod(0o600)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "train.csv").write_text("id,x,target\n1,0.1,0\n2,0.2,1\n3,0.3,0\n")
    data = tmp_path / "run" / "data"
    data.mkdir(parents=True)
    # As the download cache does: the competition's files are hard links to the cached ones.
    os.link(cache / "train.csv", data / "train.csv")
    (data / "test.csv").write_text("id,x\n4,0.1\n5,0.2\n6,0.3\n")
    (data / "sample_submission.csv").write_text("id,target\n4,0.5\n5,0.5\n6,0.5\n")
    other = tmp_path / "run" / "attempt-00"
    other.mkdir()
    (other / "submission.csv").write_text("id,target\n4,0.1\n5,0.1\n6,0.1\n")
    output = tmp_path / "submission.csv"
    output.write_text("id,target\n4,0.2\n5,0.2\n6,0.2\n")
    for folder in (tmp_path, tmp_path / "run"):
        folder.chmod(0o755)  # the solver's own folders, readable as a default umask leaves them
    return World(tmp_path, home, secret_file, cache, data, other, output, tmp_path / "run" / "attempt-01")


def test_program_cannot_read_the_solvers_environment_through_proc(world: World) -> None:
    result, observed = world.solve("""
        import json, os
        seen = {{}}
        for pid in [os.getppid(), *(p for p in os.listdir("/proc") if p.isdigit())]:
            try:
                seen[str(pid)] = open(f"/proc/{{pid}}/environ", "rb").read().decode(errors="replace")
            except OSError as exc:
                seen[str(pid)] = f"error: {{exc}}"
        json.dump({{"parent": os.getppid(), "environ": seen}}, open("observed.json", "w"))
    """)
    assert observed["environ"], "the program read no process at all"
    everything = json.dumps(observed)
    for secret in ENV_SECRETS.values():
        assert secret not in everything
    assert result["isolation"] == ISOLATION.label


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare to play a container")
def test_program_cannot_read_the_environment_of_pid_1_when_the_solver_is_pid_1(world: World) -> None:
    # In a container, pid 1 is the solver itself, holding the Kaggle secret and the task's credentials path.
    _, observed = world.solve("""
        import json
        try:
            seen = open("/proc/1/environ", "rb").read().decode(errors="replace")
        except OSError as exc:
            seen = f"error: {{exc}}"
        json.dump({{"environ": seen}}, open("observed.json", "w"))
    """, as_pid_1=True)
    assert observed["environ"], "the attack read nothing"
    for secret in ENV_SECRETS.values():
        assert secret not in observed["environ"]


def test_program_cannot_read_credential_files_by_absolute_path(world: World) -> None:
    targets = [world.home / ".kaggle" / "kaggle.json", world.home / ".aws" / "credentials", world.secret_file,
               Path("/root/.kaggle/kaggle.json"), Path("/root/.aws/credentials")]
    _, observed = world.solve("""
        import json
        seen = {{}}
        for path in {targets!r}:
            try:
                seen[path] = open(path).read()
            except OSError as exc:
                seen[path] = f"error: {{type(exc).__name__}}"
        json.dump(seen, open("observed.json", "w"))
    """, targets=[str(t) for t in targets])
    assert set(observed) == {str(t) for t in targets}
    for path, seen in observed.items():
        assert seen.startswith("error: "), f"{path} was readable"


def test_program_cannot_open_a_tcp_connection_to_a_server_on_loopback(world: World) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[bytes] = []

    def serve() -> None:
        server.settimeout(20)
        try:
            connection, _ = server.accept()
        except OSError:
            return
        with connection:
            accepted.append(connection.recv(100))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    try:
        _, observed = world.solve("""
            import json, socket
            try:
                with socket.create_connection(("127.0.0.1", {port}), timeout=5) as s:
                    s.sendall(b"exfiltrated")
                outcome = "connected"
            except OSError as exc:
                outcome = f"error: {{exc}}"
            json.dump({{"connect": outcome}}, open("observed.json", "w"))
        """, port=port)
    finally:
        server.close()
        thread.join(timeout=25)
    assert observed["connect"].startswith("error: ")
    assert accepted == []


def test_program_cannot_write_outside_its_folder(world: World) -> None:
    planted = code_root() / "batch_agent" / "solver" / "_planted_by_program.py"
    targets = {
        "product code": str(planted),
        "another attempt": str(world.other_attempt / "submission.csv"),
        "output": str(world.output),
        "data file (a link into the cache)": str(world.data / "train.csv"),
        "data folder": str(world.data / "extra.csv"),
        "cache": str(world.cache / "train.csv"),
    }
    before = {name: Path(p).read_bytes() if Path(p).exists() else None for name, p in targets.items()}
    try:
        _, observed = world.solve("""
            import json
            seen = {{}}
            for name, path in {targets!r}.items():
                try:
                    with open(path, "a") as handle:
                        handle.write("0,poisoned\\n")
                    seen[name] = "written"
                except OSError as exc:
                    seen[name] = f"error: {{type(exc).__name__}}"
            open("mine.txt", "w").write("my own folder is writable")
            json.dump(seen, open("observed.json", "w"))
        """, targets=targets)
        after = {name: Path(p).read_bytes() if Path(p).exists() else None for name, p in targets.items()}
    finally:
        planted.unlink(missing_ok=True)
    assert set(observed) == set(targets)
    for name in targets:
        # A write may succeed inside the sandbox's private view of the path (a user namespace owns its own
        # empty folders there); what counts is that the real file is untouched.
        assert after[name] == before[name], f"the {name} changed"
    # Read-only mounts refuse outright: the product's code and the competition's data.
    assert observed["product code"].startswith("error: ")
    assert observed["data file (a link into the cache)"].startswith("error: ")
    assert read_output(world.attempt, "mine.txt") == b"my own folder is writable"


def test_links_a_program_plants_are_never_followed_by_the_solver(world: World) -> None:
    result, observed = world.solve("""
        import json, os
        os.symlink({secret!r}, "notes.txt")
        os.symlink({kaggle!r}, "submission.csv")
        os.mkfifo("metrics.json")
        # Its own log, replaced by a link: the solver reads the log's tail for the repair prompt.
        os.unlink("program.log")
        os.symlink({secret!r}, "program.log")
        json.dump({{"planted": sorted(os.listdir("."))}}, open("observed.json", "w"))
    """, secret=str(world.secret_file), kaggle=str(world.home / ".kaggle" / "kaggle.json"))
    assert "notes.txt" in observed["planted"] and "program.log" in observed["planted"]
    assert FILE_SECRET not in json.dumps(result)
    with pytest.raises(OutputError, match="links are never followed"):
        read_output(world.attempt, "submission.csv")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="artifacts")
        keys = upload_attempt_folder(s3, "artifacts", "jobs/j/attempts/1/", world.attempt)
        bodies = b"".join(s3.get_object(Bucket="artifacts", Key=k)["Body"].read() for k in keys)
    assert "jobs/j/attempts/1/observed.json" in keys
    assert not any(k.endswith(("notes.txt", "submission.csv", "metrics.json", "program.log")) for k in keys)
    assert FILE_SECRET.encode() not in bodies


def _processes_with_cwd(folder: Path) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if Path(os.readlink(f"/proc/{entry}/cwd")) == folder.resolve():
                    found.append(int(entry))
            except OSError:
                continue
    return found


@pytest.fixture
def beats(world: World) -> Iterator[Path]:
    yield world.attempt / "beat"


def test_daemon_started_with_fork_setsid_fork_is_dead_when_the_run_returns(world: World, beats: Path) -> None:
    result, observed = world.solve("""
        import json, os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                while True:  # the daemon: keeps writing as long as it lives
                    with open("beat", "a") as handle:
                        handle.write(".")
                    time.sleep(0.02)
            os._exit(0)
        time.sleep(0.3)
        json.dump({{"beats_before_exit": os.path.getsize("beat")}}, open("observed.json", "w"))
    """)
    assert result["reason"] is not None  # it wrote no submission; the run itself finished
    assert observed["beats_before_exit"] > 0, "the daemon never ran"
    size = beats.stat().st_size
    time.sleep(1.0)
    assert beats.stat().st_size == size, "a process the program started still writes after the run"
    assert _processes_with_cwd(world.attempt) == []


def test_program_runs_with_no_new_privileges_and_not_as_the_solver(world: World) -> None:
    _, observed = world.solve("""
        import json, os
        status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
        json.dump({{"no_new_privs": status["NoNewPrivs"].strip(), "uid": os.getuid(),
                    "cap_eff": status["CapEff"].strip(), "homes": sorted(os.listdir("/home"))
                    if os.path.isdir("/home") else []}}, open("observed.json", "w"))
    """)
    assert observed["no_new_privs"] == "1"
    assert int(observed["cap_eff"], 16) == 0
    if os.geteuid() == 0:
        assert observed["uid"] != 0
    assert observed["homes"] == []


def test_the_solver_gets_its_files_back_after_the_run(world: World) -> None:
    _, observed = world.solve("""
        import json
        open("submission.csv", "w").write("id,target\\n4,0.5\\n5,0.5\\n6,0.5\\n")
        json.dump({{"wrote": True}}, open("observed.json", "w"))
    """)
    assert observed["wrote"]
    owners = {path.name: path.lstat().st_uid for path in world.attempt.iterdir()}
    assert set(owners.values()) == {os.geteuid()}, owners
    assert stat.S_ISDIR(world.attempt.lstat().st_mode) and world.attempt.lstat().st_uid == os.geteuid()
