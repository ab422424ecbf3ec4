"""Load on the service's API against the local emulated stack, and the pipeline's orchestration overhead.

    python benchmarks/api_load.py --clients 50
    python benchmarks/api_load.py --clients 200 --skip-overhead

Starts ``kaggle-solver serve`` in its own process (moto on loopback, real
Lambda handlers, local Batch jobs, the API under uvicorn) with the bundled
example competition as the local cache, then:

1. overhead: one job on the idle stack, POST → prepare process starts → training
   process starts → SUCCEEDED, against the seconds the training program itself ran;
2. load: N concurrent clients each POST /run, then poll GET /status/{id}
   ``--polls`` times; every request's latency and every error (non-2xx or
   exception) is recorded, and p50/p95/p99 are printed per endpoint;
3. outcome: the jobs table holds exactly one job per client (none lost, none
   duplicated), and the starter starts every one of them (seconds until the last).

The jobs the load starts really run (Batch capacity 2 at a time) while the
clients poll, so the API is measured with the pipeline busy behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx

from batch_agent.service import names

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "breast-cancer-diagnosis"
SLUG = EXAMPLE.name
URL = f"https://www.kaggle.com/competitions/{SLUG}"


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)

    def add(self, endpoint: str, seconds: float, error: str | None) -> None:
        self.latencies.setdefault(endpoint, []).append(seconds)
        self.errors.setdefault(endpoint, 0)
        if error:
            self.errors[endpoint] += 1
            if len(self.examples) < 5:
                self.examples.append(f"{endpoint}: {error}")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


class _Response:
    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code = status_code
        self.body = body

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    def json(self) -> Any:
        return json.loads(self.body)


class _Connection:
    """One client's keep-alive HTTP/1.1 connection, on asyncio streams.

    The clients run on the same cores as the stack: httpx spent about 8 ms of CPU per
    request here, a third of the burst's CPU, so this client does the least a client can
    (a request line, three headers, a Content-Length body) and the cores go to the server.
    """

    def __init__(self, host: str, port: int, timeout_s: float) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: Any = None) -> _Response:
        return await asyncio.wait_for(self._request(method, path, body), self.timeout_s)

    async def _request(self, method: str, path: str, body: Any) -> _Response:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        payload = json.dumps(body).encode() if body is not None else b""
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(payload)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        writer.write(head.encode() + b"\r\n" + payload)
        try:
            status_line = await reader.readuntil(b"\r\n")
            headers = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(headers.split("content-length:", 1)[1].split("\r\n", 1)[0])
            content = await reader.readexactly(length)
        except BaseException:
            await self.close()
            raise
        if "connection: close" in headers:
            await self.close()
        return _Response(int(status_line.split()[1]), content)

    async def close(self) -> None:
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _request(
    client: _Connection, samples: Samples, endpoint: str, method: str, path: str, body: Any = None
) -> _Response | None:
    start = time.perf_counter()
    try:
        response = await client.request(method, path, body)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError,
            IndexError) as exc:
        samples.add(endpoint, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
        return None
    error = None if response.is_success else f"HTTP {response.status_code}: {response.body[:200]!r}"
    samples.add(endpoint, time.perf_counter() - start, error)
    return response


async def _one_client(
    client: _Connection, samples: Samples, index: int, polls: int, interval: float, delay: float, run: str
) -> None:
    await asyncio.sleep(delay)
    body = {"url": URL, "time_limit": 30, "max_attempts": 1, "idempotency_key": f"{run}-{index}"}
    try:
        response = await _request(client, samples, "POST /run", "POST", "/run", body)
        if response is None or response.status_code != 202:
            return
        job_id = response.json()["job_id"]
        samples.job_ids.append(job_id)
        for _ in range(polls):
            await asyncio.sleep(interval)
            await _request(client, samples, "GET /status", "GET", f"/status/{job_id}")
    finally:
        await client.close()


async def run_load(
    base: str, clients: int, polls: int, interval: float, ramp_s: float = 0.0, run: str = "load"
) -> tuple[Samples, float]:
    samples = Samples()
    address = urlsplit(base)
    host, port = address.hostname or "127.0.0.1", address.port or 80
    # A connection per client, as that many separate clients would have.
    connections = [_Connection(host, port, timeout_s=60) for _ in range(clients)]
    start = time.perf_counter()
    await asyncio.gather(
        *(_one_client(c, samples, i, polls, interval, ramp_s * i / clients, run) for i, c in enumerate(connections))
    )
    return samples, time.perf_counter() - start


def _batch_started(batch: Any, job_name: str) -> float | None:
    for queue in (names.resource_name("local", names.CPU_QUEUE), names.resource_name("local", names.GPU_QUEUE)):
        for status in ("RUNNING", "SUCCEEDED", "FAILED"):
            for summary in batch.list_jobs(jobQueue=queue, jobStatus=status).get("jobSummaryList", []):
                if summary["jobName"] == job_name and summary.get("startedAt"):
                    return float(summary["startedAt"]) / 1000
    return None


def measure_overhead(batch: Any, base: str) -> dict[str, float]:
    """One job on an idle stack: where its wall-clock time goes."""
    with httpx.Client(base_url=base, timeout=30) as client:
        posted = time.time()
        job_id = client.post("/run", json={"url": URL, "time_limit": 60, "max_attempts": 1}).json()["job_id"]
        status: dict[str, Any] = {}
        while time.time() - posted < 180:
            status = client.get(f"/status/{job_id}").json()
            if status["status"] in ("SUCCEEDED", "FAILED"):
                break
            time.sleep(0.05)
        done = time.time()
    if status.get("status") != "SUCCEEDED":
        raise RuntimeError(f"the overhead job did not succeed: {status.get('message')}")
    prepare = _batch_started(batch, f"prepare-{job_id}")
    train = _batch_started(batch, f"train-{job_id}-1")
    program_seconds = sum(a["seconds"] for a in status["attempts"])
    return {
        "POST → prepare process started (s)": (prepare or done) - posted,
        "POST → training process started (s)": (train or done) - posted,
        "POST → SUCCEEDED (s)": done - posted,
        "training program ran (s)": program_seconds,
        "orchestration + process start-up (s)": done - posted - program_seconds,
    }


def check_outcome(dynamodb: Any, run: str, clients: int, timeout_s: float = 300) -> dict[str, float]:
    """Jobs of this run in the table (one per client: none lost, none twice) and how long until all started."""
    start = time.monotonic()
    table = names.resource_name("local", names.JOBS_TABLE)
    while True:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": table,
            "FilterExpression": "begins_with(idempotency_key, :run)",
            "ExpressionAttributeValues": {":run": {"S": f"{run}-"}},
        }
        while True:
            page = dynamodb.scan(**kwargs)
            items += page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        started = sum("execution_started_at" in item for item in items)
        if started >= len(items) or time.monotonic() - start > timeout_s:
            keys = {item["idempotency_key"]["S"] for item in items}
            return {
                "clients": clients,
                "jobs recorded": len(items),
                "distinct idempotency keys": len(keys),
                "jobs started": started,
                "seconds after the load until every job started": round(time.monotonic() - start, 1),
            }
        time.sleep(0.5)


def _wait_until_up(base: str, server: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"kaggle-solver serve exited with {server.returncode}")
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the stack did not answer {base}/health within {timeout_s} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _table(samples: Samples, wall: float) -> str:
    lines = [
        "| endpoint | requests | errors | p50 ms | p95 ms | p99 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for endpoint, values in samples.latencies.items():
        ms = [v * 1000 for v in values]
        lines.append(
            f"| {endpoint} | {len(ms)} | {samples.errors[endpoint]} | {statistics.median(ms):.0f} | "
            f"{_percentile(ms, 95):.0f} | {_percentile(ms, 99):.0f} | {max(ms):.0f} |"
        )
    total = sum(len(v) for v in samples.latencies.values())
    lines.append(f"\n{total} requests in {wall:.1f} s ({total / wall:.0f} req/s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--polls", type=int, default=5, help="GET /status calls per client after its POST")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between a client's polls")
    parser.add_argument(
        "--ramp",
        type=float,
        default=0.0,
        help="seconds over which the clients start, evenly (default 0: all at once, a burst)",
    )
    parser.add_argument("--skip-overhead", action="store_true", help="only the load test")
    parser.add_argument(
        "--batch-capacity",
        type=int,
        default=2,
        help="Batch jobs run at once (default 2); 0 leaves every job RUNNABLE, as a full compute "
        "environment would, so the API is measured without training processes on the same cores",
    )
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    parser.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    args = parser.parse_args(argv)

    api_port, aws_port, data_port = _free_port(), _free_port(), _free_port()
    base = f"http://127.0.0.1:{api_port}"
    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp:
        # The stack runs as `kaggle-solver serve` in its own process, as `make stack` runs it, so
        # this load generator does not share a Python interpreter with the emulator.
        command = [
            sys.executable,
            "-m",
            "batch_agent.cli",
            "serve",
            "--port",
            str(api_port),
            "--aws-port",
            str(aws_port),
            "--aws-data-port",
            str(data_port),
            "--work-dir",
            tmp,
            "--cache-dir",
            str(EXAMPLE.parent),
            "--api-workers",
            str(args.api_workers),
            "--batch-slots",
            str(args.batch_capacity),
        ]
        with open(Path(tmp) / "serve.log", "wb") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_up(base, server)
            load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"# API load on the emulated stack, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
                f"{os.cpu_count()} CPUs, load average {load} at start",
                flush=True,
            )
            result: dict[str, Any] = {}
            if not args.skip_overhead and args.batch_capacity > 0:
                batch = boto3.client(
                    "batch",
                    endpoint_url=f"http://127.0.0.1:{aws_port}",
                    region_name="us-east-1",
                    aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                )
                overhead = measure_overhead(batch, base)
                result["overhead"] = overhead
                print("\n## Orchestration overhead (one small job, idle stack)\n")
                print("| measure | seconds |\n| --- | ---: |")
                for name, value in overhead.items():
                    print(f"| {name.removesuffix(' (s)')} | {value:.1f} |")
            run = f"load-{time.time_ns()}"
            samples, wall = asyncio.run(run_load(base, args.clients, args.polls, args.interval, args.ramp, run))
            print(
                f"\n## {args.clients} concurrent clients: POST /run, then {args.polls} × GET /status "
                f"(started over {args.ramp:g} s, Batch capacity {args.batch_capacity}, "
                f"{args.api_workers} API workers)\n"
            )
            print(_table(samples, wall))
            if samples.examples:
                print("\nfirst errors:\n" + "\n".join(samples.examples))
            dynamodb = boto3.client(
                "dynamodb",
                endpoint_url=f"http://127.0.0.1:{data_port}",
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )
            outcome = check_outcome(dynamodb, run, args.clients)
            result["outcome"] = outcome
            print("\n## Outcome: every job recorded once and started\n")
            print("| measure | value |\n| --- | ---: |")
            for name, value in outcome.items():
                print(f"| {name} | {value:g} |")
            print(f"\nload average after the run: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
            result["load"] = {
                "clients": args.clients,
                "latencies_ms": {k: [round(v * 1000, 1) for v in vs] for k, vs in samples.latencies.items()},
                "errors": samples.errors,
            }
            if args.json:
                print(json.dumps(result))
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
