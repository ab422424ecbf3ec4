"""A fake Kaggle API on 127.0.0.1 speaking the RPC protocol the official client uses.

The real ``kaggle``/``kagglesdk`` client is pointed at it with
``KAGGLE_API_ENVIRONMENT=LOCALHOST`` and
``kagglesdk.kaggle_env._env_to_endpoint[KaggleEnv.LOCAL]`` set to this server
(see DESIGN.md §4). It serves ``POST /api/v1/<Service>/<Method>`` with JSON
bodies in the client's camelCase field names, answers errors as
``{"code": N, "message": ...}`` like Kaggle, redirects data downloads to a
storage URL that honours ``Range``/``If-Range`` (the client follows the 302 as
it does to Kaggle's signed URLs), accepts submission uploads by ``PUT`` and
runs pushed kernels locally with the pushed script itself.

Tests script it per case: rules not accepted, unknown competitions, failures
queued per RPC method (e.g. two 429s then success), a connection dropped in the
middle of a download, a kernel quota error. Every request is recorded.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."


@dataclass
class FakeCompetition:
    slug: str
    files: dict[str, bytes]
    title: str = ""
    evaluation_metric: str | None = "Root Mean Squared Error"
    description: str = "Predict the target from the features."
    evaluation_page: str = ""
    deadline: str = "2030-01-01T00:00:00Z"
    # (team name, score) in Kaggle's order, best first.
    leaderboard: list[tuple[str, float]] = field(default_factory=list)
    rules_accepted: bool = True
    # Score a submission's bytes; None leaves the submission in error.
    scorer: Callable[[bytes], float | None] = lambda _body: 0.5
    polls_before_scored: int = 1

    def archive(self) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, content in self.files.items():
                zf.writestr(name, content)
        return buffer.getvalue()


@dataclass
class Failure:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Recorded:
    method: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # when the request arrived

    @property
    def rpc(self) -> str:
        return self.path.rsplit("/", 1)[-1]


@dataclass
class FakeKernel:
    owner: str
    slug: str
    request: dict[str, Any]
    statuses: deque[str]
    outputs: dict[str, bytes] = field(default_factory=dict)
    log: str = ""
    failure_message: str | None = None


class FakeKaggle:
    """Scriptable fake Kaggle; ``url`` is set once started."""

    def __init__(self) -> None:
        self.competitions: dict[str, FakeCompetition] = {}
        self.users: dict[str, str] = {"solver-user": "solver-key"}  # username -> key
        self.tokens: dict[str, str] = {"solver-token": "solver-user"}  # api token -> username
        self.requests: list[Recorded] = []
        self.failures: dict[str, deque[Failure]] = {}
        # RPC names whose next call is carried out and then answered by a dropped connection
        # (Kaggle did the work; the client never hears so).
        self.drop_after_handling: deque[str] = deque()
        # Cut the connection after this many body bytes on the next storage download(s).
        self.drop_downloads_after: deque[int] = deque()
        self.leaderboard_download_enabled = True
        self.kernel_error: str | None = None  # SaveKernel answers with this error when set
        self.kernel_statuses: list[str] = ["QUEUED", "RUNNING"]
        self.run_kernels = True
        self.kernels: dict[tuple[str, str], FakeKernel] = {}
        self.uploads: dict[str, bytes] = {}
        self.submissions: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- scripting
    def add(self, competition: FakeCompetition) -> FakeCompetition:
        self.competitions[competition.slug] = competition
        return competition

    def fail_next(self, rpc: str, status: int, message: str = "", times: int = 1, **headers: str) -> None:
        queue = self.failures.setdefault(rpc, deque())
        for _ in range(times):
            queue.append(Failure(status, message or f"scripted {status}", dict(headers)))

    def calls(self, rpc: str) -> list[Recorded]:
        return [r for r in self.requests if r.rpc == rpc]

    # -- lifecycle
    def start(self) -> None:
        fake = self

        class Handler(_Handler):
            server_state = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- kernels
    def _run_kernel(self, kernel: FakeKernel, competition: FakeCompetition | None) -> None:
        """Run the pushed script the way Kaggle would: competition files under input/<slug>."""
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            data = root / "input" / kernel.request.get("competitionDataSources", ["?"])[0]
            data.mkdir(parents=True)
            for name, content in (competition.files if competition else {}).items():
                (data / name).write_bytes(content)
            script = root / "script.py"
            script.write_text(kernel.request.get("text", ""), encoding="utf-8")
            working = root / "working"
            proc = subprocess.run(
                [
                    sys.executable,
                    str(script),
                    "--input",
                    str(root / "input"),
                    "--working",
                    str(working),
                    "--scratch",
                    str(root / "scratch"),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            records = [{"stream_name": "stdout", "time": 0.1, "data": proc.stdout}]
            if proc.stderr:
                records.append({"stream_name": "stderr", "time": 0.2, "data": proc.stderr})
            kernel.log = json.dumps(records)
            if working.exists():
                kernel.outputs = {p.name: p.read_bytes() for p in working.iterdir() if p.is_file()}
            final = "COMPLETE" if proc.returncode == 0 else "ERROR"
            if proc.returncode != 0:
                kernel.failure_message = f"script exited with {proc.returncode}"
            kernel.statuses.append(final)


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeKaggle
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet test output
        return

    # -- plumbing
    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json", headers)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._json(status, {"code": status, "message": message}, headers)

    def _user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        state = self.server_state
        if header.startswith("Bearer "):
            return state.tokens.get(header[7:])
        if header.startswith("Basic "):
            user, _, key = base64.b64decode(header[6:]).decode().partition(":")
            return user if state.users.get(user) == key else None
        return None

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- HTTP verbs
    def do_POST(self) -> None:
        raw = self._read_body()
        body = json.loads(raw) if raw else {}
        state = self.server_state
        with state._lock:
            state.requests.append(Recorded("POST", self.path, body, dict(self.headers)))
        if not self.path.startswith("/api/v1/"):
            self._error(404, "no such route")
            return
        rpc = self.path.rsplit("/", 1)[-1]
        queue = state.failures.get(rpc)
        if queue:
            failure = queue.popleft()
            self._error(failure.status, failure.message, failure.headers)
            return
        user = self._user()
        if user is None and rpc != "IntrospectToken":
            self._error(401, "Unauthenticated: missing or invalid credentials")
            return
        handler = getattr(self, f"rpc_{rpc}", None)
        if handler is None:
            self._error(404, f"unknown method {rpc}")
            return
        if rpc in state.drop_after_handling:
            state.drop_after_handling.remove(rpc)
            real, self.wfile = self.wfile, io.BytesIO()  # type: ignore[assignment]
            handler(body, user)
            self.wfile = real
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        handler(body, user)

    def do_GET(self) -> None:
        state = self.server_state
        with state._lock:
            state.requests.append(Recorded("GET", self.path, {}, dict(self.headers)))
        parts = [p for p in self.path.split("?")[0].split("/") if p]
        if len(parts) == 2 and parts[0] == "storage":
            self._storage(parts[1].removesuffix(".zip"))
        elif len(parts) == 4 and parts[0] == "kernel-output":
            kernel = state.kernels.get((parts[1], parts[2]))
            if kernel is None or parts[3] not in kernel.outputs:
                self._error(404, "no such output")
                return
            self._send(200, kernel.outputs[parts[3]], "application/octet-stream")
        else:
            self._error(404, "no such route")

    def do_PUT(self) -> None:
        state = self.server_state
        body = self._read_body()
        with state._lock:
            state.requests.append(Recorded("PUT", self.path, {}, dict(self.headers)))
        token = self.path.rsplit("/", 1)[-1]
        if token not in state.uploads:
            self._error(404, "unknown upload")
            return
        state.uploads[token] = body
        self._send(200, b"", "text/plain")

    # -- storage (where DownloadDataFiles redirects)
    def _storage(self, slug: str) -> None:
        state = self.server_state
        competition = state.competitions.get(slug)
        if competition is None:
            self._error(404, "no such object")
            return
        data = competition.archive()
        etag = f'"{slug}-{len(data)}"'
        start = 0
        status = 200
        range_header = self.headers.get("Range")
        if range_header and self.headers.get("If-Range", etag) == etag:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            status = 206
        payload = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        cut = state.drop_downloads_after.popleft() if state.drop_downloads_after else None
        if cut is not None and cut < len(payload):
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(2)
            return
        self.wfile.write(payload)

    # -- competitions.CompetitionApiService
    def _competition(self, body: dict[str, Any], *, data_access: bool = False) -> FakeCompetition | None:
        competition = self.server_state.competitions.get(body.get("competitionName", ""))
        if competition is None:
            self._error(404, "Competition not found")
            return None
        if data_access and not competition.rules_accepted:
            self._error(403, RULES_MESSAGE)
            return None
        return competition

    def rpc_GetCompetition(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body)
        if c is None:
            return
        payload: dict[str, Any] = {
            "id": 1,
            "ref": f"https://www.kaggle.com/competitions/{c.slug}",
            "title": c.title or c.slug,
            "description": c.description,
            "category": "Playground",
            "deadline": c.deadline,
            "teamCount": len(c.leaderboard),
            "userHasEntered": c.rules_accepted,
        }
        if c.evaluation_metric:
            payload["evaluationMetric"] = c.evaluation_metric
        self._json(200, payload)

    def rpc_ListCompetitions(self, body: dict[str, Any], user: str) -> None:
        search = (body.get("search") or "").lower()
        found = [
            {
                "ref": f"https://www.kaggle.com/competitions/{c.slug}",
                "title": c.title or c.slug,
                "deadline": c.deadline,
                "teamCount": len(c.leaderboard),
                **({"evaluationMetric": c.evaluation_metric} if c.evaluation_metric else {}),
            }
            for c in self.server_state.competitions.values()
            if search in c.slug or search in c.title.lower()
        ]
        self._json(200, {"competitions": found})

    def rpc_ListCompetitionPages(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body)
        if c is None:
            return
        pages = [{"name": "description", "content": c.description}]
        if c.evaluation_page:
            pages.append({"name": "evaluation", "content": c.evaluation_page})
        self._json(200, {"pages": pages})

    def rpc_ListDataFiles(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body)
        if c is None:
            return
        files = [{"ref": n, "name": n, "totalBytes": len(b)} for n, b in c.files.items()]
        self._json(200, {"files": files})

    def rpc_DownloadDataFiles(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body, data_access=True)
        if c is None:
            return
        self.send_response(302)
        self.send_header("Location", f"{self.server_state.url}/storage/{c.slug}.zip")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _board(self, c: FakeCompetition) -> list[dict[str, Any]]:
        return [
            {
                "teamId": i + 1,
                "teamName": name,
                "submissionDate": "2025-01-02T03:04:05.000Z",
                "score": f"{score:.5f}",
            }
            for i, (name, score) in enumerate(c.leaderboard)
        ]

    def rpc_GetLeaderboard(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body)
        if c is None:
            return
        size = min(int(body.get("pageSize") or 20), 50)  # Kaggle caps pages; so does the fake
        start = int(body.get("pageToken") or 0)
        rows = self._board(c)
        page = rows[start : start + size]
        next_token = str(start + size) if start + size < len(rows) else ""
        self._json(200, {"submissions": page, "nextPageToken": next_token})

    def rpc_DownloadLeaderboard(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body)
        if c is None:
            return
        if not self.server_state.leaderboard_download_enabled:
            self._error(404, "Leaderboard download is not available")
            return
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["TeamId", "TeamName", "SubmissionDate", "Score", "TeamMemberUserNames"])
        for row in self._board(c):
            writer.writerow([row["teamId"], row["teamName"], "2025-01-02 03:04:05", row["score"], "someone"])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            zf.writestr(f"{c.slug}-publicleaderboard.csv", text.getvalue())
        self._send(200, buffer.getvalue(), "application/zip")

    def rpc_StartSubmissionUpload(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body, data_access=True)
        if c is None:
            return
        state = self.server_state
        token = f"blob-{len(state.uploads) + 1}"
        state.uploads[token] = b""
        self._json(200, {"token": token, "createUrl": f"{state.url}/upload/{token}"})

    def rpc_CreateSubmission(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body, data_access=True)
        if c is None:
            return
        state = self.server_state
        token = body.get("blobFileTokens", "")
        if token not in state.uploads or not state.uploads[token]:
            self._error(400, "Submission file was not uploaded")
            return
        ref = 1000 + len(state.submissions)
        score = c.scorer(state.uploads[token])
        state.submissions[ref] = {
            "competition": c,
            "score": score,
            "polls_left": c.polls_before_scored,
            "description": body.get("submissionDescription"),
        }
        self._json(200, {"message": "Successfully submitted to " + c.slug, "ref": ref})

    def rpc_ListSubmissions(self, body: dict[str, Any], user: str) -> None:
        c = self._competition(body)
        if c is None:
            return
        mine = [
            {"ref": ref, "description": sub["description"], "date": "2025-01-02T03:04:05.000Z", "status": "PENDING"}
            for ref, sub in sorted(self.server_state.submissions.items(), reverse=True)
            if sub["competition"] is c
        ]
        self._json(200, {"submissions": mine})

    def rpc_GetSubmission(self, body: dict[str, Any], user: str) -> None:
        sub = self.server_state.submissions.get(int(body.get("ref") or 0))
        if sub is None:
            self._error(404, "Submission not found")
            return
        payload: dict[str, Any] = {"ref": int(body["ref"]), "description": sub["description"]}
        if sub["polls_left"] > 0:
            sub["polls_left"] -= 1
            payload["status"] = "PENDING"
        elif sub["score"] is None:
            payload["status"] = "ERROR"
            payload["errorDescription"] = "Submission could not be scored"
        else:
            payload["status"] = "COMPLETE"
            payload["publicScore"] = f"{sub['score']:.5f}"
        self._json(200, payload)

    # -- kernels.KernelsApiService
    def rpc_SaveKernel(self, body: dict[str, Any], user: str) -> None:
        state = self.server_state
        if state.kernel_error:
            self._json(200, {"error": state.kernel_error})
            return
        sources = body.get("competitionDataSources") or []
        bad = [s for s in sources if s not in state.competitions or not state.competitions[s].rules_accepted]
        slug = (body.get("slug") or "").split("/")[-1] or body.get("newTitle", "kernel")
        if bad:
            self._json(200, {"ref": f"/code/{user}/{slug}", "invalidCompetitionSources": bad})
            return
        kernel = FakeKernel(user, slug, body, deque(state.kernel_statuses))
        state.kernels[(user, slug)] = kernel
        if state.run_kernels:
            state._run_kernel(kernel, state.competitions.get(sources[0]) if sources else None)
        self._json(
            200,
            {
                "ref": f"/code/{user}/{slug}",
                "url": f"https://www.kaggle.com/code/{user}/{slug}",
                "versionNumber": 1,
                "kernelId": 77,
            },
        )

    def _kernel(self, body: dict[str, Any]) -> FakeKernel | None:
        kernel = self.server_state.kernels.get((body.get("userName", ""), body.get("kernelSlug", "")))
        if kernel is None:
            self._error(404, "Kernel not found")
        return kernel

    def rpc_GetKernelSessionStatus(self, body: dict[str, Any], user: str) -> None:
        kernel = self._kernel(body)
        if kernel is None:
            return
        status = kernel.statuses.popleft() if len(kernel.statuses) > 1 else kernel.statuses[0]
        payload: dict[str, Any] = {"status": status}
        if status == "ERROR" and kernel.failure_message:
            payload["failureMessage"] = kernel.failure_message
        self._json(200, payload)

    def rpc_ListKernelSessionOutput(self, body: dict[str, Any], user: str) -> None:
        kernel = self._kernel(body)
        if kernel is None:
            return
        base = f"{self.server_state.url}/kernel-output/{kernel.owner}/{kernel.slug}"
        files = [{"fileName": name, "url": f"{base}/{name}"} for name in sorted(kernel.outputs)]
        self._json(200, {"files": files, "log": kernel.log})

    # -- security.OAuthService
    def rpc_IntrospectToken(self, body: dict[str, Any], user: str | None) -> None:
        username = self.server_state.tokens.get(body.get("token", ""))
        self._json(200, {"active": username is not None, "username": username or ""})


@pytest.fixture
def fake_kaggle(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeKaggle]:
    """A started fake Kaggle with the official client pointed at it and legacy API-key credentials set."""
    from kagglesdk import kaggle_env

    server = FakeKaggle()
    server.start()
    monkeypatch.setitem(kaggle_env._env_to_endpoint, kaggle_env.KaggleEnv.LOCAL, server.url)
    monkeypatch.setenv("KAGGLE_API_ENVIRONMENT", "LOCALHOST")
    config_dir = tmp_path / "kaggle-config"
    config_dir.mkdir()
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config_dir))
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "solver-user")
    monkeypatch.setenv("KAGGLE_KEY", "solver-key")
    # The client also looks for a token file in the home folder; keep the real one out.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    # Importing the kaggle package authenticates once (an IntrospectToken call when a
    # token is set); import it now, with API-key credentials, so no test counts that call.
    with contextlib.redirect_stdout(io.StringIO()):
        import kaggle  # noqa: F401
    try:
        yield server
    finally:
        server.stop()
