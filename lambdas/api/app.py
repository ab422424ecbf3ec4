"""The HTTP API: FastAPI routes that parse a request and call one function of batch_agent.service.job_requests.

Served by the API Gateway Lambda through Mangum (``handler.py``) and locally by
uvicorn (``kaggle-solver serve``): ``uvicorn --factory lambdas.api.app:create_app``.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from functools import cache
from html import escape
from pathlib import Path
from typing import Annotated, Literal

from fastapi import Body, Depends, FastAPI, Header, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from batch_agent.service import job_requests, leaderboard_requests
from batch_agent.service.job_requests import (
    ApiClients,
    AttemptDetail,
    IdempotencyConflictError,
    JobFinishedError,
    JobLogs,
    JobNotReadyError,
    JobPage,
    JobPurged,
    JobStarted,
    JobStatusView,
    JobStillRunningError,
    RunRequest,
)
from batch_agent.service.jobs import JobNotFoundError
from batch_agent.service.leaderboard_requests import LeaderboardNotFoundError, LeaderboardView
from batch_agent.service.settings import ApiSettings
from batch_agent.solver.errors import InputError
from batch_agent.solver.report import SCORE_CHART_JS

_STATIC = Path(__file__).resolve().parent / "static"
# The dashboard's files, by the name the page asks for; the chart is the one report.html inlines.
_ASSETS: dict[str, tuple[Path, str]] = {
    "dashboard.js": (_STATIC / "dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": (_STATIC / "dashboard.css", "text/css; charset=utf-8"),
    "score_chart.js": (SCORE_CHART_JS, "text/javascript; charset=utf-8"),
}

_ERROR_STATUS: dict[type[Exception], int] = {
    InputError: 422,
    JobNotFoundError: 404,
    JobNotReadyError: 409,
    LeaderboardNotFoundError: 404,
    IdempotencyConflictError: 409,
    JobFinishedError: 409,
    JobStillRunningError: 409,
}


def create_app(
    settings: ApiSettings | None = None, clients: ApiClients | None = None, *, warm: bool | None = None
) -> FastAPI:
    """The app; clients built here (the Lambda handler, uvicorn's factory) are warmed with one read (``warm``)."""
    settings = settings or ApiSettings()  # type: ignore[call-arg]  # fields come from the environment
    if warm is None:
        warm = clients is None and settings.warm_clients
    clients = clients or job_requests.api_clients()
    if warm:
        job_requests.warm_up(clients, settings)
    snapshots = leaderboard_requests.SnapshotCache(settings.leaderboard_cache_s)
    finished = job_requests.FinishedJobCache(settings.finished_job_cache_s)
    app = FastAPI(
        title="kaggle-solver",
        version="0.1.0",
        description="Start a job on a Kaggle competition, follow it, download its submission.csv.",
    )

    async def require_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
        # In AWS, API Gateway checks usage-plan keys before the Lambda runs; this guards local serving.
        # A coroutine although it awaits nothing: FastAPI hands a plain function to its thread pool, a
        # second thread hop per request (the endpoint's is the first) for a string comparison.
        if settings.api_key and not (x_api_key and hmac.compare_digest(x_api_key, settings.api_key)):
            raise _Unauthorised()

    Keyed = Depends(require_key)

    app.add_middleware(_StagePrefix)
    for error, status in _ERROR_STATUS.items():
        app.add_exception_handler(error, _error_handler(status))
    app.add_exception_handler(_Unauthorised, _unauthorised)

    # The dashboard: static files with no secret in them, so no key; the page sends the key the
    # user gives it (kept in the browser's storage) with each API call.
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard(request: Request) -> HTMLResponse:
        base = str(request.scope.get("root_path") or "").rstrip("/") + "/"
        return HTMLResponse(_asset_text("index.html").replace("__BASE__", escape(base)), headers=_NO_CACHE)

    @app.get("/static/{name}", include_in_schema=False)
    def static_asset(name: str) -> Response:
        if name not in _ASSETS:
            return JSONResponse({"detail": f"no file {name}"}, status_code=404)
        return Response(_asset_text(name), media_type=_ASSETS[name][1], headers=_NO_CACHE)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/run", status_code=202, response_model=JobStarted, dependencies=[Keyed])
    def run(
        request: Request,
        body: Annotated[RunRequest | None, Body()] = None,
        url: Annotated[str | None, Query(description="competition URL, when no JSON body is sent")] = None,
    ) -> JobStarted:
        if body is None:
            if not url:
                raise InputError('give the competition URL: a JSON body {"url": ...} or ?url=')
            body = RunRequest(url=url)
        record = job_requests.submit_job(clients, settings, body)
        return JobStarted(
            job_id=record.job_id,
            status=record.status,
            status_url=str(request.url_for("get_status", job_id=record.job_id)),
        )

    @app.get("/status/{job_id}", response_model=JobStatusView, dependencies=[Keyed])
    def get_status(job_id: str) -> JobStatusView:
        view = job_requests.job_status(clients, settings, job_id, finished)
        if view.cv_score is None:
            return view
        # The score ranked on the latest synced leaderboard, not the one of when the job finished.
        snapshot = snapshots.get(clients.s3, settings.artifacts_bucket, view.competition)
        return leaderboard_requests.with_live_rank(view, snapshot)

    @app.get("/result/{job_id}/submission.csv", status_code=307, dependencies=[Keyed])
    def result(job_id: str) -> RedirectResponse:
        return RedirectResponse(job_requests.submission_url(clients, settings, job_id), status_code=307)

    @app.get("/logs/{job_id}", response_model=JobLogs, dependencies=[Keyed])
    def logs(job_id: str) -> JobLogs:
        return job_requests.job_logs(clients, settings, job_id)

    @app.delete("/jobs/{job_id}", response_model=JobStatusView | JobPurged, dependencies=[Keyed])
    def delete_job(
        request: Request,
        job_id: str,
        purge: Annotated[bool, Query(description="delete a finished job's files and record")] = False,
    ) -> JobStatusView | JobPurged:
        if purge:
            return job_requests.purge_job(clients, settings, job_id, finished)
        return job_requests.cancel_job(clients, settings, job_id, _requester(request), finished)

    @app.get("/jobs/{job_id}/attempts/{number}", response_model=AttemptDetail, dependencies=[Keyed])
    def attempt(job_id: str, number: Annotated[int, PathParam(ge=1)]) -> AttemptDetail:
        return job_requests.attempt_detail(clients, settings, job_id, number)

    @app.get("/jobs", response_model=JobPage, dependencies=[Keyed])
    def list_jobs(
        status: Literal["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"] | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        cursor: str | None = None,
    ) -> JobPage:
        return job_requests.list_job_page(clients, settings, status=status, limit=limit, cursor=cursor)

    @app.get("/leaderboards/{slug}", response_model=LeaderboardView, dependencies=[Keyed])
    def get_leaderboard(slug: str) -> LeaderboardView:
        return leaderboard_requests.leaderboard_view(clients.s3, settings.artifacts_bucket, slug)

    @app.post("/leaderboards/{slug}", status_code=202, response_model=LeaderboardView, dependencies=[Keyed])
    def track_leaderboard(slug: str) -> LeaderboardView:
        return leaderboard_requests.track_leaderboard(clients.s3, settings.artifacts_bucket, slug)

    return app


# Revalidate on each load, so a deployment's new page is never mixed with an old script.
_NO_CACHE = {"cache-control": "no-cache"}


@cache
def _asset_text(name: str) -> str:
    path = _ASSETS[name][0] if name in _ASSETS else _STATIC / name
    return path.read_text(encoding="utf-8")


class _StagePrefix:
    """Behind API Gateway's default domain every URL carries the stage: make it the ASGI root_path.

    Then links the app builds (status_url, the OpenAPI URL the /docs page loads)
    point where a client can reach them.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        event = scope.get("aws.event") or {}
        context = event.get("requestContext") or {}
        stage, domain = context.get("stage"), str(context.get("domainName") or "")
        if scope["type"] == "http" and stage and domain.endswith(".amazonaws.com"):
            scope = {**scope, "root_path": f"/{stage}"}
        await self.app(scope, receive, send)


def _requester(request: Request) -> str:
    """Who asked: the API key's id behind API Gateway, else the client's address."""
    event = request.scope.get("aws.event") or {}
    identity = (event.get("requestContext") or {}).get("identity") or {}
    if identity.get("apiKeyId"):
        return f"api key {identity['apiKeyId']}"
    if identity.get("sourceIp"):
        return f"client {identity['sourceIp']}"
    return f"client {request.client.host}" if request.client else "an unknown client"


class _Unauthorised(Exception):
    pass


def _error_handler(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handle


async def _unauthorised(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": "missing or wrong x-api-key header"}, status_code=401)
