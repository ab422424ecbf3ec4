"""Load on the service's API against the local emulated stack, and the pipeline's orchestration overhead.

    python benchmarks/api_load.py --clients 50
    python benchmarks/api_load.py --clients 200 --skip-overhead

Starts the emulated stack (moto on loopback, real Lambda handlers, local Batch
jobs) and the API under uvicorn, seeds the bundled example competition into
the S3 cache, then:

1. overhead: one job on the idle stack, POST → prepare process starts → training
   process starts → SUCCEEDED, against the seconds the training program itself ran;
2. load: N concurrent clients each POST /run, then poll GET /status/{id}
   ``--polls`` times; every request's latency and every error (non-2xx or
   exception) is recorded, and p50/p95/p99 are printed per endpoint.

The jobs the load starts really run (Batch capacity 2 at a time) while the
clients poll, so the API is measured with the pipeline busy behind it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from batch_agent.local_stack import EmulatedStack, StackOptions

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "breast-cancer-diagnosis"
SLUG = EXAMPLE.name
URL = f"https://www.kaggle.com/competitions/{SLUG}"


@dataclass
class Samples:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

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


async def _request(
    client: httpx.AsyncClient, samples: Samples, endpoint: str, method: str, url: str, **kwargs: Any
) -> httpx.Response | None:
    start = time.perf_counter()
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        samples.add(endpoint, time.perf_counter() - start, f"{type(exc).__name__}: {exc}")
        return None
    error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:200]}"
    samples.add(endpoint, time.perf_counter() - start, error)
    return response


async def _one_client(client: httpx.AsyncClient, samples: Samples, index: int, polls: int, interval: float) -> None:
    body = {"url": URL, "time_limit": 30, "max_attempts": 1, "idempotency_key": f"load-{time.time_ns()}-{index}"}
    response = await _request(client, samples, "POST /run", "POST", "/run", json=body)
    if response is None or response.status_code != 202:
        return
    job_id = response.json()["job_id"]
    for _ in range(polls):
        await asyncio.sleep(interval)
        await _request(client, samples, "GET /status", "GET", f"/status/{job_id}")


async def run_load(base: str, clients: int, polls: int, interval: float) -> tuple[Samples, float]:
    samples = Samples()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(_one_client(client, samples, i, polls, interval) for i in range(clients)))
        return samples, time.perf_counter() - start


def _batch_started(stack: EmulatedStack, job_name: str) -> float | None:
    batch = stack.client("batch")
    for queue in (stack.name("cpu"), stack.name("gpu")):
        for status in ("RUNNING", "SUCCEEDED", "FAILED"):
            for summary in batch.list_jobs(jobQueue=queue, jobStatus=status).get("jobSummaryList", []):
                if summary["jobName"] == job_name and summary.get("startedAt"):
                    return float(summary["startedAt"]) / 1000
    return None


def measure_overhead(stack: EmulatedStack, base: str) -> dict[str, float]:
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
    prepare = _batch_started(stack, f"prepare-{job_id}")
    train = _batch_started(stack, f"train-{job_id}-1")
    program_seconds = sum(a["seconds"] for a in status["attempts"])
    return {
        "POST → prepare process started (s)": (prepare or done) - posted,
        "POST → training process started (s)": (train or done) - posted,
        "POST → SUCCEEDED (s)": done - posted,
        "training program ran (s)": program_seconds,
        "orchestration + process start-up (s)": done - posted - program_seconds,
    }


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
    parser.add_argument("--skip-overhead", action="store_true", help="only the load test")
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    parser.add_argument("--json", action="store_true", help="also print the raw numbers as JSON")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="api-load-") as tmp:
        options = StackOptions(work_dir=Path(tmp), max_lambda_workers=4)
        with EmulatedStack(options) as stack, stack.api_server(_free_port(), workers=args.api_workers) as base:
            stack.seed_competition(SLUG, EXAMPLE)
            load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
            print(
                f"# API load on the emulated stack, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
                f"{os.cpu_count()} CPUs, load average {load} at start",
                flush=True,
            )
            result: dict[str, Any] = {}
            if not args.skip_overhead:
                overhead = measure_overhead(stack, base)
                result["overhead"] = overhead
                print("\n## Orchestration overhead (one small job, idle stack)\n")
                print("| measure | seconds |\n| --- | ---: |")
                for name, value in overhead.items():
                    print(f"| {name.removesuffix(' (s)')} | {value:.1f} |")
            samples, wall = asyncio.run(run_load(base, args.clients, args.polls, args.interval))
            print(f"\n## {args.clients} concurrent clients: POST /run, then {args.polls} × GET /status\n")
            print(_table(samples, wall))
            if samples.examples:
                print("\nfirst errors:\n" + "\n".join(samples.examples))
            result["load"] = {
                "clients": args.clients,
                "latencies_ms": {k: [round(v * 1000, 1) for v in vs] for k, vs in samples.latencies.items()},
                "errors": samples.errors,
            }
            if args.json:
                print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
