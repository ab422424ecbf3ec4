"""Run a training program as an isolated child process with wall-clock and memory limits.

Every program, template or LLM-written, runs through ``run_sandboxed``. Whatever it
does (hang, exhaust memory, crash, fork workers that outlive it, print nothing) the
caller gets a ``SandboxResult`` back and the whole process tree is gone.

How the limits are enforced (stdlib only, Linux):

* the child starts in its own session and process group; on a limit the group and
  every descendant found in /proc get SIGTERM, then SIGKILL after a short grace
  (memory: SIGKILL at once, since memory is still growing);
* memory is the resident set (RSS) of the whole tree, polled from /proc every
  ~100 ms. Shared pages of forked workers are counted in each worker, so the sum
  errs on the high side. A program that allocates faster than the poll can
  overshoot by what it allocates in one interval. No RLIMIT_AS backstop: CUDA and
  some BLAS/LightGBM builds reserve far more address space than they touch, so an
  address-space limit fails healthy GPU programs;
* the environment is an allow-list (``safe_environment``), never a copy of the
  parent's;
* given ``cpus`` (a training slot's cores), the program starts on those cores only and is told
  as many threads, so a library that takes every core by default cannot slow the program in
  the other slot. A program may widen its own mask again: this divides the cores between
  cooperating programs, it is no hard share (a cgroup's ``cpu.max`` would be);
* the program runs under the strongest isolation the machine allows (``isolation.py``): its own
  uid, PID, network and mount namespaces, so it cannot read another process's environment or a
  credential file, reach the network, write outside its folder, or leave a process behind. The
  process-tree walk here stays as the fallback where no PID namespace is available.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from batch_agent.solver.isolation import Isolation, code_root, kill_leftovers, owned_by_sandbox, probe_isolation, wrap

logger = logging.getLogger(__name__)

LOG_TAIL_CHARS = 4000
POLL_SECONDS = 0.1
TERM_GRACE_SECONDS = 2.0

# Variables a program may inherit from the parent: locale, time zone, hashing,
# thread counts and the GPU selection. Nothing else crosses.
_INHERITED = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "PYTHONHASHSEED",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "CUDA_VISIBLE_DEVICES",
)
_INHERITED_PREFIXES = ("NVIDIA_",)
_SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "CREDENTIAL")
_SECRET_PREFIXES = ("AWS_", "ANTHROPIC_", "KAGGLE_")

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class SandboxResult:
    returncode: int | None
    seconds: float
    timed_out: bool
    memory_exceeded: bool
    peak_rss_mb: float
    log_path: Path
    log_tail: str
    time_limit: float = 0.0
    memory_limit_mb: int = 0
    # Set when the program could not be started at all (returncode is then None).
    start_error: str | None = None
    # The program was stopped for writing more log than allowed (a print loop fills disks).
    log_exceeded: bool = False
    max_log_mb: int = 0
    # What kept the program in (``Isolation.label``), e.g. "isolated: own uid, no network, private filesystem".
    isolation: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.memory_exceeded and not self.log_exceeded

    @property
    def reason(self) -> str | None:
        """Why the run failed, in one line for a person or a repair prompt; None when it succeeded."""
        if self.ok:
            return None
        if self.start_error is not None:
            return f"could not start the program: {self.start_error}"
        if self.timed_out:
            return f"timed out after {self.time_limit:g} s"
        if self.log_exceeded:
            return f"wrote more than {self.max_log_mb} MB of log output"
        if self.memory_exceeded:
            return f"exceeded the memory limit of {self.memory_limit_mb} MB (peak {self.peak_rss_mb:.0f} MB)"
        if self.returncode is None:
            return "the program's exit status is unknown"
        if self.returncode < 0:
            number = -self.returncode
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = "unknown signal"
            hint = " (possibly out of memory)" if number == signal.SIGKILL else ""
            return f"killed by signal {number} ({name}){hint}"
        last_line = _last_line(self.log_tail)
        return f"exited with code {self.returncode}" + (f": {last_line}" if last_line else "")


def _is_secret(name: str) -> bool:
    upper = name.upper()
    return any(word in upper for word in _SECRET_WORDS) or upper.startswith(_SECRET_PREFIXES)


def safe_environment(extra: Mapping[str, str] | None = None, *, home: Path) -> dict[str, str]:
    """The whole environment of a sandboxed program: an allow-list, plus ``extra`` without secrets.

    This is the one place that reads ``os.environ``: PATH, locale, thread counts and
    the GPU selection describe the machine the program runs on, not settings of
    the product, and the child needs them to behave like the parent's interpreter.
    """
    env: dict[str, str] = {}
    for name, value in os.environ.items():
        if name in _INHERITED or name.startswith(_INHERITED_PREFIXES):
            env[name] = value
    env.setdefault("PATH", os.defpath)
    # OpenMP threads that spin while they wait (LightGBM, BLAS) slow a program several-fold as soon as
    # the cores are shared with anything else (measured: 22 s instead of 4 s); sleeping costs little.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env.update(
        {
            "HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    for name, value in (extra or {}).items():
        if _is_secret(name):
            logger.warning("not passing %s to the sandboxed program: it looks like a secret", name)
            continue
        env[name] = value
    return {name: value for name, value in env.items() if not _is_secret(name)}


# Thread-count variables a slot's program is told; each library reads its own.
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def slot_threads(env: Mapping[str, str], n_cpus: int) -> dict[str, str]:
    """Thread counts for a program on ``n_cpus`` cores: that many, or fewer where the machine says fewer."""
    counts = {}
    for name in _THREAD_VARIABLES:
        inherited = env.get(name, "")
        counts[name] = str(min(int(inherited), n_cpus)) if inherited.isdigit() and int(inherited) > 0 else str(n_cpus)
    return counts


@contextlib.contextmanager
def _started_on(cpus: frozenset[int] | None) -> Iterator[None]:
    """The calling thread on ``cpus`` while it starts a child, which inherits the thread's mask at fork.

    Setting the child's mask after it started would race with the threads its libraries start at import.
    """
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def _last_line(text: str) -> str:
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()[:300]
    return ""


def _read_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of the program's log, never through a link the program may have put in its place."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return ""
        # UTF-8 needs at most 4 bytes a character.
        os.lseek(fd, max(0, info.st_size - 4 * chars), os.SEEK_SET)
        data = os.read(fd, 4 * chars)
    except OSError:
        return ""
    finally:
        os.close(fd)
    return data.decode("utf-8", errors="replace")[-chars:]


def _stat_fields(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, session, ...)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read().decode("ascii", errors="replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields if len(fields) > 19 else None


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None


def _scan_tree(root: int) -> dict[int, str]:
    """Every process in the root's session or descended from it, with its start time (from /proc).

    The root itself is included only while /proc shows it as its own session's
    leader, so a pid reused after the root was reaped is never mistaken for it.
    """
    parents: dict[int, int] = {}
    starts: dict[int, str] = {}
    members: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return {}
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None:
            continue
        pid = int(entry)
        parents[pid] = int(fields[1])
        starts[pid] = fields[19]
        if int(fields[3]) == root:
            members.add(pid)
    ancestors = members | {root}
    changed = True
    while changed:
        changed = False
        for pid, ppid in parents.items():
            if ppid in ancestors and pid not in ancestors:
                ancestors.add(pid)
                members.add(pid)
                changed = True
    return {pid: starts[pid] for pid in members}


class _ProcessTree:
    """The processes one program started, remembered across polls.

    A worker that left the session (setsid) and outlived its parent has no link
    to the program left in /proc; having seen it once is how it is still found.
    The start time guards against signalling a stranger that reused its pid.
    """

    def __init__(self, root: int, *, wrapped: bool = False) -> None:
        self.root = root
        # The root is bubblewrap: a SIGTERM to it (or to its init inside the PID namespace) would kill the
        # program at once. SIGTERM goes to the program's own processes only, so it gets its grace to finish.
        self.wrapped = wrapped
        self.known: dict[int, str] = {}

    def scan(self) -> list[int]:
        current = _scan_tree(self.root)
        self.known.update(current)
        return list(current)

    def signal(self, sig: signal.Signals) -> None:
        gentle = self.wrapped and sig != signal.SIGKILL
        if not gentle:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.root, sig)
        self.scan()
        for pid, started in self.known.items():
            if gentle and (pid == self.root or _command_name(pid) == "bwrap"):
                continue
            if _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)


def _command_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm", "rb") as handle:
            return handle.read().decode("ascii", errors="replace").strip()
    except OSError:
        return ""


def _tree_rss_mb(pids: Iterable[int]) -> float:
    total_pages = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total_pages += int(handle.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total_pages * _PAGE_BYTES / 2**20


def _file_mb(path: Path) -> float:
    try:
        return path.lstat().st_size / 2**20
    except OSError:
        return 0.0


def _reap(pid: int, block: bool) -> int | None:
    """The exit code as Popen reports it once the child has exited, else None.

    Its rusage is not used: ru_maxrss counts the pages the child shared with this (possibly
    large) process between fork and exec, so it would blame a small program for its parent's memory.
    """
    try:
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        return -signal.SIGKILL
    if got == 0:
        return None
    return os.waitstatus_to_exitcode(status)


def _terminate(tree: _ProcessTree, *, grace: float) -> int:
    """Stops the whole tree (SIGTERM, then SIGKILL after ``grace`` seconds) and reaps the child."""
    if grace > 0:
        tree.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            reaped = _reap(tree.root, block=False)
            if reaped is not None:
                tree.signal(signal.SIGKILL)
                return reaped
            time.sleep(0.05)
    tree.signal(signal.SIGKILL)
    reaped = _reap(tree.root, block=True)
    assert reaped is not None
    return reaped


def run_sandboxed(
    argv: Sequence[str],
    *,
    workdir: Path,
    time_limit: float,
    memory_limit_mb: int,
    env: Mapping[str, str] | None = None,
    log_name: str = "program.log",
    max_log_mb: int = 1024,
    read_only: Sequence[Path] = (),
    isolation: Isolation | None = None,
    cpus: frozenset[int] | None = None,
) -> SandboxResult:
    """Runs ``argv`` in ``workdir`` under the limits; never raises for anything the program does.

    ``env`` holds extra variables for the program; they pass through
    ``safe_environment``, so secrets are dropped even if a caller hands them over.
    stdout and stderr go, interleaved, to ``workdir/log_name``. On KeyboardInterrupt
    (or any other exception in the parent) the program's tree is killed first.
    ``read_only`` folders (the competition's data) are visible to the program, read-only; the
    isolation is ``probe_isolation()``'s unless a caller chooses a weaker one. ``cpus``: the cores the
    program starts on (None: the parent's).
    """
    workdir = Path(workdir).resolve()
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    isolation = isolation or probe_isolation()
    log_path = workdir / log_name
    child_env = safe_environment(env, home=workdir)
    # The program imports the same training toolkit as the solver that runs it.
    child_env["PYTHONPATH"] = str(code_root())
    if cpus:
        child_env.update(slot_threads(child_env, len(cpus)))
    command = wrap(isolation, argv, workdir=workdir, read_only=read_only)
    started = time.monotonic()
    with owned_by_sandbox(isolation, workdir):
        try:
            result = _run(command, argv, wrapped=isolation.private_filesystem, workdir=workdir, env=child_env,
                          log_path=log_path, started=started, time_limit=time_limit,
                          memory_limit_mb=memory_limit_mb, max_log_mb=max_log_mb, cpus=cpus)
        finally:
            kill_leftovers(isolation)
    result = replace(result, isolation=isolation.label)
    logger.info(
        "sandboxed %s: rc=%s %.1fs peak %.0f MB, %s%s",
        Path(argv[0]).name if argv else "?",
        result.returncode,
        result.seconds,
        result.peak_rss_mb,
        result.isolation,
        f" ({result.reason})" if result.reason else "",
    )
    return result


def _run(
    command: Sequence[str],
    argv: Sequence[str],
    *,
    wrapped: bool,
    workdir: Path,
    env: Mapping[str, str],
    log_path: Path,
    started: float,
    time_limit: float,
    memory_limit_mb: int,
    max_log_mb: int,
    cpus: frozenset[int] | None = None,
) -> SandboxResult:
    try:
        if not argv or shutil.which(argv[0], path=env.get("PATH")) is None:
            raise FileNotFoundError(f"no such program: {argv[0] if argv else '(empty command)'}")
        with log_path.open("wb") as log, _started_on(cpus):
            process = subprocess.Popen(
                list(command),
                cwd=workdir,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        return SandboxResult(
            returncode=None,
            seconds=time.monotonic() - started,
            timed_out=False,
            memory_exceeded=False,
            peak_rss_mb=0.0,
            log_path=log_path,
            log_tail=_read_tail(log_path),
            time_limit=time_limit,
            memory_limit_mb=memory_limit_mb,
            start_error=f"{type(exc).__name__}: {exc}",
        )

    tree = _ProcessTree(process.pid, wrapped=wrapped)
    timed_out = False
    killed_for_memory = False
    log_exceeded = False
    polled_peak = 0.0
    sleep = 0.005
    try:
        while True:
            reaped = _reap(process.pid, block=False)
            if reaped is not None:
                break
            rss = _tree_rss_mb(tree.scan())
            polled_peak = max(polled_peak, rss)
            if rss > memory_limit_mb:
                killed_for_memory = True
                reaped = _terminate(tree, grace=0)
                break
            if _file_mb(log_path) > max_log_mb:
                log_exceeded = True
                reaped = _terminate(tree, grace=0)
                break
            if time.monotonic() - started > time_limit:
                timed_out = True
                reaped = _terminate(tree, grace=TERM_GRACE_SECONDS)
                break
            time.sleep(sleep)
            # Start fast so short programs return quickly, then settle at the poll interval.
            sleep = min(POLL_SECONDS, sleep * 2)
    except BaseException:
        _terminate(tree, grace=0)
        process.returncode = -signal.SIGKILL
        raise
    # Workers the program left behind (daemons, forked pools) must not outlive it.
    tree.signal(signal.SIGKILL)
    returncode = reaped
    if wrapped and returncode is not None and 128 < returncode <= 128 + 64:
        # bubblewrap reports a program killed by signal N as exit status 128 + N.
        returncode = 128 - returncode
    process.returncode = returncode
    seconds = time.monotonic() - started
    peak = polled_peak
    memory_exceeded = killed_for_memory
    return SandboxResult(
        returncode=returncode,
        seconds=seconds,
        timed_out=timed_out,
        memory_exceeded=memory_exceeded,
        peak_rss_mb=peak,
        log_path=log_path,
        log_tail=_read_tail(log_path),
        time_limit=time_limit,
        memory_limit_mb=memory_limit_mb,
        log_exceeded=log_exceeded,
        max_log_mb=max_log_mb,
    )
