"""The Batch container's entrypoint: ``python -m batch_agent prepare|train --job-id ID --bucket B``.

Reads its inputs from S3 and the job record, runs the agent code, writes outputs
under ``jobs/{job_id}/``. Exit status: 0 when the step produced its outputs (for
train this includes a program that failed: its result records why, and the
state machine repairs it); 1 when the step itself failed, which the state
machine's Catch records as the job's failure; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from botocore.exceptions import ClientError

from batch_agent.solver.errors import SolverError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batch_agent", description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["prepare", "train"])
    parser.add_argument("--job-id", required=True)
    parser.add_argument("--bucket", required=True, help="artifacts bucket (overrides the settings)")
    parser.add_argument("--attempt", type=int, default=0, help="attempt number (train)")
    args = parser.parse_args(argv)
    if args.step == "train" and args.attempt < 1:
        parser.error("train needs --attempt N (N >= 1)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from batch_agent.service.settings import ContainerSettings
    from batch_agent.service.steps.context import service_clients
    from batch_agent.service.steps.prepare import prepare_job, record_compute
    from batch_agent.service.steps.train import train_job

    settings = ContainerSettings(artifacts_bucket=args.bucket)  # type: ignore[call-arg]
    clients = service_clients(settings.jobs_table, settings.artifacts_bucket)
    if args.step == "train" and settings.train_access_role_arn:
        from batch_agent.service.job_scope import scoped_train_clients

        # From here on this job can reach only its own job's files and record (and the competition cache).
        clients = scoped_train_clients(settings.train_access_role_arn, table=settings.jobs_table,
                                       bucket=settings.artifacts_bucket, job_id=args.job_id)
        logging.getLogger("batch_agent").info("credentials scoped to job %s (session policy on %s)",
                                              args.job_id, settings.train_access_role_arn)
    log = logging.getLogger("batch_agent")
    started = time.monotonic()
    try:
        if args.step == "prepare":
            profile = prepare_job(clients, settings, args.job_id)
            log.info("prepared %s: %s, metric %s", args.job_id, profile.task, profile.metric)
        else:
            result = train_job(clients, settings, args.job_id, args.attempt)
            log.info("attempt %d: ok=%s cv=%s (claimed %s) holdout=%s reason=%s", args.attempt, result.ok,
                     result.cv_score, result.claimed_cv_score, result.holdout_score, result.reason)
    except SolverError as exc:
        log.error("%s failed: %s", args.step, exc)
        return 1
    finally:
        try:
            record_compute(clients, settings, args.job_id, time.monotonic() - started)
        except ClientError as exc:
            log.warning("could not record the compute time: %s", exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
