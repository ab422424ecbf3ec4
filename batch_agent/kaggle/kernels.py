"""Kaggle kernels as compute: push a program as a private script kernel, poll it, fetch its outputs."""

from __future__ import annotations

import base64
import json
import logging
import os
import time
import zlib
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, Field

from batch_agent.kaggle.client import QUOTA_WORDS, Connection, KaggleOptions, call, connection
from batch_agent.kaggle.download import stream_to
from batch_agent.kaggle.errors import KaggleError, KaggleQuotaError, KaggleRulesNotAcceptedError
from batch_agent.solver.errors import InputError
from batch_agent.solver.templates import PROFILE_FILE

logger = logging.getLogger(__name__)

class KernelResult(BaseModel):
    ref: str
    url: str
    status: Literal["complete", "error", "cancelled", "timeout"]
    failure_message: str | None = None
    submission: Path | None = None
    log: Path | None = None
    files: list[Path] = Field(default_factory=list)
    seconds: float = 0.0

# The package folder, bundled into each kernel: template programs import it.
_PACKAGE_DIR = Path(__file__).resolve().parents[1]




# --------------------------------------------------------------------------- kernels

# The script Kaggle runs: it writes the bundled program (and the batch_agent
# package the template programs import) to a scratch folder, finds the
# competition's files under /kaggle/input, and runs the program with
# /kaggle/working as its working directory, so submission.csv, oof.csv and metrics.json
# become the kernel's output. --input/--working let the same script run locally.
_KERNEL_SCRIPT = '''\
"""kaggle-solver training run for {slug} (generated)."""
import argparse, base64, json, os, subprocess, sys, zlib
from pathlib import Path

SLUG = {slug!r}
TIME_BUDGET = {time_budget!r}
FILES = json.loads(zlib.decompress(base64.b64decode({payload!r})).decode("utf-8"))

parser = argparse.ArgumentParser()
parser.add_argument("--input", default="/kaggle/input")
parser.add_argument("--working", default="/kaggle/working")
parser.add_argument("--scratch", default="/tmp/kaggle-solver")
args, _ = parser.parse_known_args()
inputs, working, scratch = Path(args.input), Path(args.working), Path(args.scratch)

for name, text in FILES.items():
    target = scratch / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")


def find_data():
    for folder in (inputs / SLUG, inputs / "competitions" / SLUG):
        if (folder / "train.csv").exists() or (folder / "sample_submission.csv").exists():
            return folder
    for name in ("sample_submission.csv", "train.csv"):
        hits = sorted(inputs.rglob(name))
        if hits:
            return hits[0].parent
    return inputs / SLUG


data = find_data()
print("kaggle-solver: data in", data, flush=True)
working.mkdir(parents=True, exist_ok=True)
env = dict(os.environ, PYTHONPATH=str(scratch) + os.pathsep + os.environ.get("PYTHONPATH", ""))
command = [sys.executable, str(scratch / "program.py"), "--data", str(data)]
command += ["--time-budget", str(TIME_BUDGET)]
code = subprocess.call(command, cwd=str(working), env=env)
print("kaggle-solver: program exited with", code, flush=True)
sys.exit(code)
'''


def _bundle_files(program: Path, package_dir: Path | None) -> dict[str, str]:
    files = {"program.py": program.read_text(encoding="utf-8")}
    beside = program.with_name(PROFILE_FILE)  # the profile toolkit programs read, next to the program
    if beside.is_file():
        files[PROFILE_FILE] = beside.read_text(encoding="utf-8")
    if package_dir is not None:
        for path in sorted(package_dir.rglob("*.py")):
            if "__pycache__" not in path.parts:
                rel = path.relative_to(package_dir.parent).as_posix()
                files[rel] = path.read_text(encoding="utf-8")
    return files


def kernel_script(slug: str, program: Path, *, time_budget: float, package_dir: Path | None) -> str:
    """The self-contained Python script pushed as the kernel's code."""
    blob = zlib.compress(json.dumps(_bundle_files(program, package_dir)).encode("utf-8"), 9)
    return _KERNEL_SCRIPT.format(slug=slug, time_budget=float(time_budget), payload=base64.b64encode(blob).decode())


def _kernel_log_text(raw: str) -> str:
    """Kaggle serves the log as a JSON list of {stream_name, time, data}; fall back to the raw text."""
    try:
        records = json.loads(raw)
    except ValueError:
        return raw
    if isinstance(records, list) and all(isinstance(r, dict) for r in records):
        return "".join(str(r.get("data", "")) for r in records)
    return raw


def _owner_and_slug(ref: str) -> tuple[str, str]:
    segments = [s for s in urlsplit(ref).path.split("/") if s and s != "code"]
    if len(segments) < 2:
        raise KaggleError(f"Kaggle returned an unexpected kernel reference: {ref!r}")
    return segments[-2], segments[-1]


_ACCELERATORS = {"gpu": "NvidiaTeslaT4", "t4": "NvidiaTeslaT4", "p100": "NvidiaTeslaP100"}


def _account_name(conn: Connection) -> str | None:
    if conn.username:
        return conn.username
    from kagglesdk.security.types.oauth_service import IntrospectTokenRequest

    token = conn.client.http_client()._api_token
    if not token:
        return None
    request = IntrospectTokenRequest()
    request.token = token
    try:
        response = call(
            conn.options,
            lambda: conn.client.security.oauth_client.introspect_token(request),
            slug="",
            what="look up the account name",
            kind="account",
        )
    except KaggleError as error:
        logger.info("Kaggle: could not look up the account name: %s", error)
        return None
    return response.username or None


def _download_outputs(conn: Connection, owner: str, kslug: str, workdir: Path) -> tuple[list[Path], Path | None]:
    from kagglesdk.kernels.types.kernels_api_service import ApiListKernelSessionOutputRequest

    files: list[Path] = []
    log_path: Path | None = None
    token = ""
    root = workdir.resolve()
    for _page in range(1000):
        request = ApiListKernelSessionOutputRequest()
        request.user_name = owner
        request.kernel_slug = kslug
        request.page_size = 100
        request.page_token = token
        response = call(
            conn.options,
            partial(conn.kernels.list_kernel_session_output, request),
            slug=f"{owner}/{kslug}",
            what="list the kernel output",
            kind="kernel",
        )
        if response.log and log_path is None:
            log_path = workdir / "kernel.log"
            log_path.write_text(_kernel_log_text(response.log), encoding="utf-8")
        for item in response.files or []:
            if not item.url or not item.file_name:
                continue
            target = (workdir / item.file_name).resolve()
            if not target.is_relative_to(root):
                logger.warning("Kaggle: skipping kernel output with an unsafe name: %s", item.file_name)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            url = item.url
            stream_to(
                partial(_get_file, url, conn.options),
                part,
                conn.options,
                what=f"download kernel output {item.file_name}",
                slug=f"{owner}/{kslug}",
                progress=None,
                kind="kernel",
            )
            os.replace(part, target)
            files.append(target)
        token = response.next_page_token or ""
        if not token:
            break
    return files, log_path


def _get_file(url: str, options: KaggleOptions) -> requests.Response:
    response = requests.get(url, stream=True, timeout=options.request_timeout_s)
    response.raise_for_status()
    return response


def run_kernel(
    slug: str,
    program: Path,
    workdir: Path,
    *,
    timeout: float,
    accelerator: str = "gpu",
    time_budget: float | None = None,
    poll_interval: float = 10.0,
    max_poll_interval: float = 60.0,
    package_dir: Path | None = _PACKAGE_DIR,
    options: KaggleOptions | None = None,
) -> KernelResult:
    """Run a training program as a private Kaggle kernel with the competition attached.

    Pushes the program (with the batch_agent package, which template programs
    import) as a script kernel on ``accelerator`` ("gpu"/"t4", "p100" or "none"),
    polls its session with growing intervals until it ends or ``timeout`` seconds
    pass, then downloads its output files (submission.csv, oof.csv, metrics.json, ...) and
    its log into ``workdir``.
    """
    from kagglesdk.kernels.types.kernels_api_service import (
        ApiGetKernelSessionStatusRequest,
        ApiSaveKernelRequest,
    )

    options = options or KaggleOptions()
    workdir.mkdir(parents=True, exist_ok=True)
    machine = _ACCELERATORS.get(accelerator.lower())
    if machine is None and accelerator.lower() not in ("none", "cpu"):
        raise InputError(f"unknown Kaggle accelerator {accelerator!r}; use gpu, t4, p100 or none")
    started = time.monotonic()
    budget = time_budget if time_budget is not None else max(60.0, timeout * 0.8)
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    kslug = f"kaggle-solver-{slug}"[:35].rstrip("-") + f"-{stamp}"
    with connection(options) as conn:
        owner = _account_name(conn)
        save = ApiSaveKernelRequest()
        save.slug = f"{owner}/{kslug}" if owner else None
        save.new_title = kslug
        save.text = kernel_script(slug, program, time_budget=budget, package_dir=package_dir)
        save.language = "python"
        save.kernel_type = "script"
        save.is_private = True
        save.enable_gpu = machine is not None
        save.enable_internet = False
        save.competition_data_sources = [slug]
        save.session_timeout_seconds = int(timeout)
        save.machine_shape = machine
        pushed = call(options, lambda: conn.kernels.save_kernel(save), slug=slug, what="push the kernel")
        if pushed.error:
            if any(word in pushed.error.lower() for word in QUOTA_WORDS):
                raise KaggleQuotaError(f"Kaggle would not start the kernel: {pushed.error}")
            raise KaggleError(f"Kaggle would not start the kernel: {pushed.error}")
        if pushed.invalid_competition_sources:
            raise KaggleRulesNotAcceptedError(slug, "the kernel could not attach the competition's data")
        ref = pushed.ref or pushed.url
        owner, kslug = _owner_and_slug(ref)
        url = pushed.url or f"https://www.kaggle.com/code/{owner}/{kslug}"
        logger.info("Kaggle: kernel %s/%s pushed (%s)", owner, kslug, url)

        interval = poll_interval
        status: Literal["complete", "error", "cancelled", "timeout"] = "timeout"
        failure: str | None = None
        while True:
            request = ApiGetKernelSessionStatusRequest()
            request.user_name = owner
            request.kernel_slug = kslug
            state = call(
                options,
                partial(conn.kernels.get_kernel_session_status, request),
                slug=f"{owner}/{kslug}",
                what="poll the kernel status",
                kind="kernel",
            )
            name = getattr(state.status, "name", str(state.status)).upper()
            if name == "COMPLETE":
                status = "complete"
            elif name == "ERROR":
                status, failure = "error", state.failure_message or "the kernel failed"
            elif name.startswith("CANCEL"):
                status, failure = "cancelled", state.failure_message or "the kernel was cancelled"
            if status != "timeout":
                break
            if time.monotonic() - started + interval > timeout:
                failure = f"the kernel did not finish within {timeout:.0f}s (last status {name.lower()})"
                break
            time.sleep(interval)
            interval = min(interval * 1.5, max_poll_interval)
        files: list[Path] = []
        log_path: Path | None = None
        if status != "timeout":
            files, log_path = _download_outputs(conn, owner, kslug, workdir)
    submission = workdir / "submission.csv"
    return KernelResult(
        ref=f"{owner}/{kslug}",
        url=url,
        status=status,
        failure_message=failure,
        submission=submission if submission.exists() else None,
        log=log_path,
        files=files,
        seconds=round(time.monotonic() - started, 2),
    )
