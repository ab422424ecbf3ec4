"""The whole service on the emulated stack: HTTP API → real ASL on moto → Lambda handlers → local Batch jobs."""

from __future__ import annotations

import csv
import io
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch_agent.llm.prompts import PLAN_TOOL, PROGRAM_TOOL
from batch_agent.local.stack import EmulatedStack, StackOptions
from batch_agent.service import jobs, names
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.isolation import probe_isolation
from batch_agent.solver.submission import validate_submission
from tests.fakes.anthropic_server import FakeAnthropic, fake_anthropic, tool_reply, usage

__all__ = ["fake_anthropic"]

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "breast-cancer-diagnosis"
SLUG = "breast-cancer-diagnosis"
URL = f"https://www.kaggle.com/competitions/{SLUG}"
AUTHORS = "tests.integration.service.service_authors"
AUTHOR_STEPS = (names.PLAN_FUNCTION, names.GENERATE_FUNCTION, names.REPAIR_FUNCTION)
USD_PER_HOUR = 0.36
CLAUDE_PROGRAM = """\
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--data")
parser.add_argument("--time-budget", type=float)
args = parser.parse_args()
# writes submission.csv and oof.csv
"""
CLAUDE_PLAN: dict[str, Any] = {
    "approach": "LightGBM on the raw measurements.",
    "features": [],
    "validation": "stratified 5-fold on the diagnosis",
    "n_folds": 5,
    "models": [{"family": "lightgbm", "reason": "tabular"}],
    "compute": "cpu",
    "draft_time_fraction": 0.5,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedStack]:
    options = StackOptions(
        work_dir=tmp_path_factory.mktemp("stack"),
        memory_limit_mb=2048,
        container_environment={names.ENV_USD_PER_HOUR: str(USD_PER_HOUR)},
    )
    with EmulatedStack(options) as emulated:
        emulated.seed_competition(SLUG, EXAMPLE)
        yield emulated


@pytest.fixture(scope="module")
def api(stack: EmulatedStack) -> Iterator[httpx.Client]:
    with stack.api_server(_free_port()) as base, httpx.Client(base_url=base, timeout=30) as client:
        yield client


def _start(api: httpx.Client, **body: Any) -> str:
    response = api.post("/run", json={"url": URL, "time_limit": 60, **body})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


def _wait(api: httpx.Client, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status: dict[str, Any] = api.get(f"/status/{job_id}").json()
        if status["status"] in ("SUCCEEDED", "FAILED"):
            return status
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {status}")


def _execution_name(stack: EmulatedStack, job_id: str) -> str:
    record = jobs.require_job(stack.client("dynamodb"), stack.table, job_id)
    assert record.execution_name and record.execution_name.startswith(job_id)
    return record.execution_name


def _execution_status(stack: EmulatedStack, job_id: str) -> str:
    arn = stack.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{_execution_name(stack, job_id)}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status: str = stack.client("stepfunctions").describe_execution(executionArn=arn)["status"]
        if status != "RUNNING":
            return status
        time.sleep(0.1)
    return "RUNNING"


def test_job_runs_end_to_end_and_its_presigned_submission_is_valid(
    stack: EmulatedStack, api: httpx.Client, tmp_path: Path
) -> None:
    job_id = _start(api, max_attempts=1)

    status = _wait(api, job_id)

    assert status["status"] == "SUCCEEDED", status["message"]
    assert status["competition"] == SLUG
    assert status["cv_score"] is not None and 0.5 < status["cv_score"] <= 1.0
    # /status shows the product's score of the attempt's oof.csv beside the program's own claim.
    (attempt,) = status["attempts"]
    assert attempt["cv_score"] == status["cv_score"]
    assert attempt["claimed_cv_score"] == pytest.approx(attempt["cv_score"]) and attempt["claim_disagrees"] is False
    assert status["submission_url"].startswith(stack.endpoint_for("s3"))
    download = api.get(f"/result/{job_id}/submission.csv")
    assert download.status_code == 307
    csv_response = httpx.get(download.headers["location"])  # the presigned S3 URL, as `curl -L` follows it
    assert csv_response.status_code == 200
    rows = list(csv.reader(io.StringIO(csv_response.text)))
    with open(EXAMPLE / "sample_submission.csv") as sample:
        expected = list(csv.reader(sample))
    assert rows[0] == expected[0] and len(rows) == len(expected)
    (tmp_path / "submission.csv").write_text(csv_response.text)
    profile = CompetitionProfile.model_validate_json(
        stack.client("s3").get_object(Bucket=stack.bucket, Key=f"jobs/{job_id}/profile.json")["Body"].read()
    ).model_copy(update={"data_dir": str(EXAMPLE)})
    assert validate_submission(tmp_path / "submission.csv", profile) == []
    assert _execution_status(stack, job_id) == "SUCCEEDED"
    logs = api.get(f"/logs/{job_id}").json()
    assert [a["number"] for a in logs["attempts"]] == [1] and logs["attempts"][0]["ok"] is True
    listed = api.get("/jobs", params={"status": "SUCCEEDED"}).json()["jobs"]
    assert job_id in [j["job_id"] for j in listed]
    # prepare + one train job ran, each priced at the container's hourly rate; no LLM in this job.
    assert status["compute_seconds"] > status["attempts"][0]["seconds"]
    assert status["compute_cost_usd"] == pytest.approx(status["compute_seconds"] * USD_PER_HOUR / 3600, rel=1e-3)
    assert status["cost_usd"] == pytest.approx(status["compute_cost_usd"], abs=1e-4)
    assert status["llm_usage"] is None


def test_steps_use_claude_when_an_anthropic_key_secret_is_configured(
    stack: EmulatedStack, api: httpx.Client, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.responder = lambda request: tool_reply(
        PLAN_TOOL if request.tool_name == PLAN_TOOL else PROGRAM_TOOL,
        CLAUDE_PLAN if request.tool_name == PLAN_TOOL else {"summary": "s", "code": CLAUDE_PROGRAM},
        usage_fields=usage(1000, 200),
    )
    secret_arn = stack.client("secretsmanager").create_secret(
        Name=f"anthropic-{time.time_ns()}", SecretString="sk-service-test"
    )["ARN"]
    llm_env = {
        names.ENV_ANTHROPIC_SECRET_ARN: secret_arn,
        "ANTHROPIC_BASE_URL": fake_anthropic.url,
        "KAGGLE_SOLVER_LLM_SDK_MAX_RETRIES": "0",
        "KAGGLE_SOLVER_LLM_BACKOFF_ATTEMPTS": "0",
    }
    lam = stack.client("lambda")
    saved = {
        step: lam.get_function_configuration(FunctionName=stack.name(step))["Environment"]["Variables"]
        for step in AUTHOR_STEPS
    }
    for step in AUTHOR_STEPS:
        stack.set_step_environment(step, llm_env)
    try:
        # A model call that would not end within the job's time is not made: with a 60 s job on a
        # loaded machine the program's call was sometimes skipped (templates wrote it instead).
        job_id = _start(api, max_attempts=1, time_limit=180)
        status = _wait(api, job_id, timeout_s=300)
    finally:
        for step, variables in saved.items():
            lam.update_function_configuration(FunctionName=stack.name(step), Environment={"Variables": variables})

    assert status["status"] == "SUCCEEDED", status["message"]
    calls = (len(fake_anthropic.calls(PLAN_TOOL)), len(fake_anthropic.calls(PROGRAM_TOOL)))
    assert calls == (1, 1), status["llm_usage"]
    assert any("sk-service-test" in value for value in fake_anthropic.calls(PLAN_TOOL)[0].headers.values())
    # The prepare job's data preview reaches the Lambda steps' prompts through the profile.
    stored_profile = json.loads(
        stack.client("s3").get_object(Bucket=stack.bucket, Key=f"jobs/{job_id}/profile.json")["Body"].read()
    )
    assert "usable CPU cores" in stored_profile["preview"]
    assert stored_profile["preview"].strip() in fake_anthropic.calls(PLAN_TOOL)[0].body["system"][1]["text"]
    llm = status["llm_usage"]
    assert (llm["calls"], llm["llm_used"], llm.get("fallback_reason")) == (2, True, None)
    assert llm["cost_usd"] > 0
    assert status["cost_usd"] == pytest.approx(llm["cost_usd"] + status["compute_cost_usd"], abs=1e-4)
    s3 = stack.client("s3")
    plan = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"jobs/{job_id}/plan.json")["Body"].read())
    queue = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"jobs/{job_id}/queue.json")["Body"].read())
    assert plan["source"] == "llm"
    assert "llm-draft" in [p["origin"] for p in queue]


def test_a_model_call_that_would_outlive_the_lambda_falls_back_to_templates_and_records_usage(
    stack: EmulatedStack, api: httpx.Client, fake_anthropic: FakeAnthropic
) -> None:
    release = threading.Event()

    def never_in_time(request: Any) -> Any:
        release.wait(100)  # longer than the Lambda may run
        return tool_reply(PLAN_TOOL, CLAUDE_PLAN, usage_fields=usage(1000, 200))

    fake_anthropic.responder = never_in_time
    secret_arn = stack.client("secretsmanager").create_secret(
        Name=f"anthropic-{time.time_ns()}", SecretString="sk-slow"
    )["ARN"]
    llm_env = {
        names.ENV_ANTHROPIC_SECRET_ARN: secret_arn,
        "ANTHROPIC_BASE_URL": fake_anthropic.url,
        "KAGGLE_SOLVER_LLM_SDK_MAX_RETRIES": "0",
        "KAGGLE_SOLVER_LLM_BACKOFF_ATTEMPTS": "0",
    }
    lam = stack.client("lambda")
    saved = {step: lam.get_function_configuration(FunctionName=stack.name(step)) for step in AUTHOR_STEPS}
    for step in AUTHOR_STEPS:
        stack.set_step_environment(step, llm_env)
        # 90 s: the margin leaves 60 s and a call may take half of what is left once the step has started.
        # At 70 s a start-up of 12 s on a loaded CI machine left 14 s, under the 15 s a call needs, so
        # nothing was sent. The fake answers after 100 s, so the call is still cut at its deadline.
        lam.update_function_configuration(FunctionName=stack.name(step), Timeout=90)
    try:
        status = _wait(api, _start(api, max_attempts=1, time_limit=900), timeout_s=240)
    finally:
        release.set()
        for step, config in saved.items():
            lam.update_function_configuration(
                FunctionName=stack.name(step), Timeout=config["Timeout"], Environment=config["Environment"]
            )

    assert status["status"] == "SUCCEEDED", status["message"]
    llm = status["llm_usage"]
    # The cut call costs that step only (it used the templates) and the usage records why. A call cut by
    # the Lambda's own time is not the model's fault: it counts toward no failure streak that drops Claude.
    assert llm["llm_used"] is False and "at the call's deadline" in llm["last_error"], llm
    assert llm["failed_calls"] == 0, llm
    assert len(fake_anthropic.calls(PLAN_TOOL)) == 1  # one call tried, cut at its deadline, then templates


def test_successful_attempts_are_blended_when_the_blend_scores_better(stack: EmulatedStack, api: httpx.Client) -> None:
    job_id = _start(api, max_attempts=3, time_limit=120)

    status = _wait(api, job_id)

    assert status["status"] == "SUCCEEDED", status["message"]
    singles = [a["cv_score"] for a in status["attempts"] if a["ok"]]
    assert len(singles) == 3
    # /status says, per attempt, what kept the program in (the training job probed it).
    assert {a["isolation"] for a in status["attempts"]} == {probe_isolation().label}
    assert status["cv_score"] >= max(singles)  # roc_auc: higher is better
    s3 = stack.client("s3")
    published = s3.get_object(Bucket=stack.bucket, Key=f"jobs/{job_id}/submission.csv")["Body"].read()
    if status["blend_weights"] is None:
        assert status["cv_score"] == max(singles)
    else:
        assert len(status["blend_weights"]) >= 2 and "blend of" in status["message"]
        blend = json.loads(s3.get_object(Bucket=stack.bucket, Key=f"jobs/{job_id}/blend.json")["Body"].read())
        assert blend["cv_score"] == status["cv_score"] > max(singles)
        assert published == s3.get_object(Bucket=stack.bucket, Key=blend["submission_key"])["Body"].read()


def test_program_that_fails_once_is_repaired_and_the_job_succeeds(stack: EmulatedStack, api: httpx.Client) -> None:
    for step in AUTHOR_STEPS:
        stack.set_step_environment(step, {names.ENV_AUTHOR: f"{AUTHORS}:FailOnceAuthor"})
    try:
        status = _wait(api, _start(api, max_attempts=3))
    finally:
        for step in AUTHOR_STEPS:
            stack.set_step_environment(step, {names.ENV_AUTHOR: "auto"})

    assert status["status"] == "SUCCEEDED", status["message"]
    first, second = status["attempts"]
    assert (first["program"], first["ok"]) == ("broken", False)
    assert "deliberate failure" in (first["reason"] or "")
    assert (second["program"], second["ok"]) == ("repaired", True)
    assert status["cv_score"] == second["cv_score"]


def test_program_that_always_fails_ends_failed_with_reason_and_attempts(
    stack: EmulatedStack, api: httpx.Client
) -> None:
    for step in AUTHOR_STEPS:
        stack.set_step_environment(step, {names.ENV_AUTHOR: f"{AUTHORS}:AlwaysFailAuthor"})
    try:
        job_id = _start(api, max_attempts=2)
        status = _wait(api, job_id)
    finally:
        for step in AUTHOR_STEPS:
            stack.set_step_environment(step, {names.ENV_AUTHOR: "auto"})

    assert status["status"] == "FAILED"
    assert status["message"].startswith("all 2 training attempts failed")
    assert "deliberate failure" in status["message"]
    assert [(a["program"], a["ok"]) for a in status["attempts"]] == [("broken", False), ("broken+fix", False)]
    assert status["submission_url"] is None
    assert api.get(f"/result/{job_id}/submission.csv").status_code == 409
    assert _execution_status(stack, job_id) == "FAILED"


@contextmanager
def _train_command(stack: EmulatedStack, kill_when: str) -> Iterator[None]:
    """A new CPU job definition revision whose train step is SIGKILLed (as the OOM killer would) when
    ``kill_when`` (a Python expression over ``attempt``, the attempt number as text) holds."""
    batch = stack.client("batch")
    definition = stack.name(names.CPU_JOB_DEFINITION)
    current = batch.describe_job_definitions(jobDefinitionName=definition, status="ACTIVE")["jobDefinitions"]
    original = max(current, key=lambda d: d["revision"])
    dying = [
        "python",
        "-c",
        "import os, signal, sys\n"
        f"attempt = sys.argv[-1]\nif sys.argv[1] == 'train' and ({kill_when}): os.kill(os.getpid(), signal.SIGKILL)\n"
        "os.execv(sys.executable, [sys.executable, '-m', 'batch_agent', *sys.argv[1:]])",
        *names.BATCH_COMMAND[3:],
    ]
    batch.register_job_definition(
        jobDefinitionName=definition,
        type="container",
        parameters=original["parameters"],
        containerProperties={**original["containerProperties"], "command": dying},
    )
    try:
        yield
    finally:
        batch.register_job_definition(
            jobDefinitionName=definition,
            type="container",
            parameters=original["parameters"],
            containerProperties=original["containerProperties"],
        )


def test_batch_job_whose_process_dies_every_time_ends_failed_never_running(
    stack: EmulatedStack, api: httpx.Client
) -> None:
    with _train_command(stack, "True"):
        job_id = _start(api, max_attempts=2)
        status = _wait(api, job_id)

    assert status["status"] == "FAILED"
    assert "train job failed" in status["message"] and "exit code 137" in status["message"]
    assert [a["ok"] for a in status["attempts"]] == [False, False]
    assert _execution_status(stack, job_id) == "FAILED"


def test_batch_job_killed_after_a_good_attempt_ends_succeeded_with_that_attempt(
    stack: EmulatedStack, api: httpx.Client
) -> None:
    with _train_command(stack, "attempt == '2'"):
        # Room for the second attempt even on a loaded machine: under 60 s the job may finish after the first.
        job_id = _start(api, max_attempts=2, time_limit=300)
        status = _wait(api, job_id, timeout_s=240)

    assert status["status"] == "SUCCEEDED", status["message"]
    first, second = status["attempts"]
    assert first["ok"] is True
    assert second["ok"] is False and "exit code 137" in (second["reason"] or "")
    assert status["cv_score"] == first["cv_score"]
    assert _execution_status(stack, job_id) == "SUCCEEDED"


def test_lambda_step_that_raises_ends_failed_with_its_cause(stack: EmulatedStack, api: httpx.Client) -> None:
    lam = stack.client("lambda")
    function = stack.name(names.PLAN_FUNCTION)
    lam.update_function_configuration(FunctionName=function, Handler=f"{AUTHORS}.raising_handler")
    try:
        job_id = _start(api)
        status = _wait(api, job_id)
    finally:
        lam.update_function_configuration(FunctionName=function, Handler=names.STEP_HANDLERS[names.PLAN_FUNCTION])

    assert status["status"] == "FAILED"
    assert status["message"] == f"ValueError: plan step exploded for job {job_id}"
    assert _execution_status(stack, job_id) == "FAILED"


def test_unknown_job_id_is_404_everywhere(api: httpx.Client) -> None:
    for path in ("/status/nope", "/result/nope/submission.csv", "/logs/nope"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert "nope" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"url": "https://example.com/competitions/titanic"}, "not a Kaggle URL"),
        ({"url": "https://www.kaggle.com/datasets/foo/bar"}, "not a Kaggle competition URL"),
        ({"url": "titanic"}, "not a URL"),
        ({"url": URL, "time_limit": 1}, "time_limit"),
        ({"url": URL, "compute": "tpu"}, "compute"),
        ({"time_limit": 60}, "url"),
    ],
)
def test_bad_urls_and_bodies_are_422_with_a_message(api: httpx.Client, body: dict[str, Any], fragment: str) -> None:
    response = api.post("/run", json=body)
    assert response.status_code == 422
    assert fragment in response.text


def test_malformed_json_is_422(api: httpx.Client) -> None:
    response = api.post("/run", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_the_harness_runs_on_the_pinned_moto() -> None:
    from importlib.metadata import version

    assert version("moto") == "5.2.5"
    assert sys.version_info >= (3, 11)
