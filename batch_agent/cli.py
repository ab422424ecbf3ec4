"""`kaggle-solver`: the command line. Parses arguments, calls one function of batch_agent, reports.

Exit codes: 0 a valid submission was written; 2 bad input (one line saying why);
1 every attempt failed (with the last error); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from batch_agent.solver.author import ProgramAuthor
from batch_agent.solver.errors import InputError, SolverError

if TYPE_CHECKING:
    from batch_agent.solver.competition import CompetitionProfile
    from batch_agent.solver.plan import AttemptResult, Program
    from batch_agent.solver.solve import Download, RemoteAttempt


class CliSettings(BaseSettings):
    """What the CLI reads from the environment (KAGGLE_SOLVER_*)."""

    model_config = SettingsConfigDict(env_prefix="KAGGLE_SOLVER_")

    cache_dir: Path = Path.home() / ".cache" / "kaggle-solver" / "competitions"
    memory_limit_mb: int = 8192


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaggle-solver",
        description="Turn a Kaggle competition into a validated submission.csv.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "run",
        help="solve a competition folder or Kaggle competition URL",
        description="Solve a competition and write submission.csv.",
    )
    run.add_argument("source", metavar="URL_OR_FOLDER",
                     help="a folder with train.csv, test.csv and sample_submission.csv, a .zip, "
                          "or a Kaggle competition URL")
    run.add_argument("--output", "-o", type=Path, default=Path("submission.csv"),
                     help="where to write the submission (default: ./submission.csv)")
    run.add_argument("--time-limit", type=_positive, default=300.0, metavar="SECONDS",
                     help="wall-clock limit for solving (default: 300). For a Kaggle URL, the leaderboard "
                          "estimate (one download) and, with --submit, the upload and up to --submit-wait "
                          "seconds of waiting for the public score come after it")
    run.add_argument("--metric", help="override the metric read from the description (e.g. roc_auc, rmse)")
    run.add_argument("--workdir", type=Path, help="where programs, logs and predictions go "
                                                  "(default: ./.kaggle-solver/NAME-TIMESTAMP)")
    run.add_argument("--no-llm", action="store_true",
                     help="use the built-in templates only (the default when ANTHROPIC_API_KEY is not set)")
    run.add_argument("--max-cost", type=_positive, metavar="USD",
                     help="ceiling on what Claude may cost in this run, in dollars "
                          "(default: KAGGLE_SOLVER_LLM_MAX_COST_USD or 5)")
    run.add_argument("--allow-unisolated", action="store_true",
                     help="run model-written programs even where they cannot get their own uid or user namespace "
                          "(they could then read this process's secrets); without it such a run uses templates only")
    run.add_argument("--slots", type=int, choices=range(1, 9), metavar="N",
                     help="programs that train at once (default: 2 on tables under 20,000 rows with 2 or more "
                          "cores, else 1)")
    run.add_argument("--json", action="store_true", help="print a JSON summary as the last line of stdout")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    run.add_argument("--compute", choices=["auto", "cpu", "gpu", "kaggle-gpu"], default="auto",
                     help="where programs train: the plan's choice (auto), this machine's CPU or GPU, or a "
                          "private Kaggle kernel with a GPU (URL sources only)")
    run.add_argument("--submit", action="store_true",
                     help="upload the submission to Kaggle (URL sources only), wait for its public score and rank")
    run.add_argument("--submit-wait", type=_positive, default=600.0, metavar="SECONDS",
                     help="with --submit, wait at most this long for Kaggle to score the submission; "
                          "after it the submission stays in and the summary says pending (default: 600)")
    board = commands.add_parser(
        "leaderboard",
        help="summarise a competition's public leaderboard",
        description="Download the complete public leaderboard and summarise it; --score ranks a score on it.",
    )
    board.add_argument("competition", metavar="SLUG_OR_URL", help="a competition slug or Kaggle competition URL")
    board.add_argument("--score", type=float, help="rank this score against the leaderboard")
    direction = board.add_mutually_exclusive_group()
    direction.add_argument("--higher-is-better", dest="higher_is_better", action="store_true", default=None,
                           help="the metric rewards larger scores (default: read from the leaderboard order)")
    direction.add_argument("--lower-is-better", dest="higher_is_better", action="store_false",
                           help="the metric rewards smaller scores")
    serve = commands.add_parser(
        "serve",
        help="run the whole service on this machine (emulated AWS on loopback + the HTTP API)",
        description="Start moto on loopback with the service's resources, real Lambda handlers and local "
                    "Batch jobs, and serve the API with uvicorn. Stop with Ctrl-C.",
    )
    serve.add_argument("--port", type=int, default=8000, help="API port on 127.0.0.1 (default: 8000)")
    serve.add_argument("--aws-port", type=int, default=5000,
                       help="emulated AWS endpoint port on 127.0.0.1 (default: 5000)")
    serve.add_argument("--aws-data-port", type=int, default=5001,
                       help="port of the emulated DynamoDB and S3, a process of their own (default: 5001)")
    serve.add_argument("--work-dir", type=Path, default=Path("/tmp/kaggle-solver-stack"),
                       help="logs and Batch scratch space (default: /tmp/kaggle-solver-stack)")
    serve.add_argument("--cache-dir", type=Path,
                       help="competition folders by slug (DIR/SLUG/train.csv ...), used before Kaggle")
    serve.add_argument("--api-key", help="require this x-api-key header on every route but /health")
    serve.add_argument("--api-workers", type=int, default=1, help="uvicorn worker processes (default: 1)")
    serve.add_argument("--batch-slots", type=int, default=2,
                       help="Batch jobs run at once; the others wait RUNNABLE (default: 2)")
    serve.add_argument("--leaderboard-interval", type=_positive, default=300.0, metavar="SECONDS",
                       help="refresh tracked Kaggle leaderboards this often, as the deployed schedule does "
                            "(default: 300)")
    return parser


class _ProgressPrinter:
    """Progress lines on stderr: elapsed time, stage, message."""

    def __init__(self, quiet: bool, start: float) -> None:
        self.quiet = quiet
        self.start = start

    def __call__(self, stage: str, message: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.start:6.1f}s] {stage:<8} {message}", file=sys.stderr, flush=True)


def _author(args: argparse.Namespace) -> ProgramAuthor:
    """Claude with the templates as candidates and fallback, or the templates alone with --no-llm."""
    from batch_agent.llm.author import choose_author
    from batch_agent.llm.calls import LLMSettings
    from batch_agent.solver.templates import TemplateAuthor

    llm_settings = LLMSettings() if args.max_cost is None else LLMSettings(max_cost_usd=args.max_cost)
    return choose_author(llm_settings, no_llm=args.no_llm, fallback=TemplateAuthor())


def _llm_usage(author: ProgramAuthor) -> dict[str, Any] | None:
    """Tokens, cost and any fallback of a Claude author, with a one-line summary; None for templates alone."""
    from batch_agent.llm.author import ClaudeAuthor

    if not isinstance(author, ClaudeAuthor):
        return None
    return {**author.usage(), "summary": author.summary()}


def _kaggle_download(cache_dir: Path) -> Download:
    def download(url: str, into: Path, progress: Callable[[str], None]) -> Path:
        from batch_agent.kaggle.download import download_competition
        from batch_agent.kaggle.urls import competition_slug

        return download_competition(competition_slug(url), into, cache_dir=cache_dir, progress=progress)

    return download


def _kaggle_kernel_attempt(slug: str) -> RemoteAttempt:
    def attempt(profile: CompetitionProfile, program: Program, attempt_dir: Path, budget: float,
                number: int) -> AttemptResult:
        from batch_agent.kaggle.kernel_attempts import run_attempt_on_kaggle

        return run_attempt_on_kaggle(profile, program, attempt_dir, slug=slug, time_budget=budget, number=number)

    return attempt


def _run(args: argparse.Namespace, settings: CliSettings, started: float) -> int:
    from batch_agent.solver.report import REPORT_NAME, write_report
    from batch_agent.solver.solve import SolveOptions, solve

    output = args.output.expanduser()
    if not output.parent.exists():
        raise InputError(f"cannot write {output}: folder {output.parent} does not exist")
    slug = _competition_of(args.source)
    if args.submit and slug is None:
        raise InputError("--submit needs a Kaggle competition URL as the source")
    options = SolveOptions(
        time_limit=args.time_limit,
        metric=args.metric,
        workdir=args.workdir,
        memory_limit_mb=settings.memory_limit_mb,
        compute=args.compute,
        allow_unisolated=args.allow_unisolated,
        slots=args.slots,
    )
    author = _author(args)
    result = solve(args.source, output, options, author, progress=_ProgressPrinter(args.quiet, started),
                   started=started, download=_kaggle_download(settings.cache_dir),
                   remote_attempt=_kaggle_kernel_attempt(slug) if slug is not None else None)
    direction = "higher" if result.higher_is_better else "lower"
    lines = [
        f"submission: {result.output} (valid)",
        f"competition: {result.competition} — {result.task}, target {result.target}",
        f"CV {result.metric}: {result.cv_score:.5f} ({direction} is better), from {result.best}"
        + (f" = {', '.join(f'{w:.2f}×{n}' for n, w in result.blend.items())}" if len(result.blend) > 1 else ""),
        f"{result.attempts} attempts in {result.seconds:.1f} s; programs and logs in {result.workdir}",
        f"programs ran {result.isolation}",
    ]
    llm_usage = _llm_usage(author)
    if llm_usage is not None:
        lines.append(f"LLM: {llm_usage['summary']}")
    kaggle: dict[str, Any] = {}
    kaggle_lines: list[str] = []
    if slug is not None:
        kaggle_lines, kaggle = _kaggle_report(slug, result.cv_score, result.higher_is_better, result.metric,
                                              args.submit, output, submit_wait=args.submit_wait)
        lines.extend(kaggle_lines)
    report = write_report(result.model_dump(mode="json"), Path(result.workdir) / REPORT_NAME,
                          notes=kaggle_lines, llm_usage=llm_usage)
    lines.append(f"report: {report}")
    if not args.json or not args.quiet:
        print("\n".join(lines))
    if args.json:
        summary = {
            "status": "succeeded",
            "task": result.task,
            "target": result.target,
            "metric": result.metric,
            "cv_score": result.cv_score,
            "seconds": result.seconds,
            "first_valid_seconds": result.first_valid_seconds,
            "attempts": result.attempts,
            "slots": result.slots,
            "blend": result.blend,
            "output": result.output,
            "best": result.best,
            "workdir": result.workdir,
            "report": str(report),
            "isolation": result.isolation,
            # Per attempt: the product's score of oof.csv next to the program's own claim and the holdout.
            "history": [
                a.model_dump(include={"number", "program", "origin", "ok", "cv_score", "claimed_cv_score",
                                      "claim_disagrees", "holdout_score", "holdout_noise", "holdout_rows",
                                      "holdout", "seconds", "reason", "isolation"})
                for a in result.history
            ],
        }
        summary.update(kaggle)
        if llm_usage is not None:
            summary["llm"] = llm_usage
            summary["tokens"] = llm_usage["total_tokens"]
            summary["cost_usd"] = llm_usage["cost_usd"]
        print(json.dumps(summary))
    return 0


def _competition_of(source: str) -> str | None:
    """The competition slug when SOURCE is a Kaggle URL, else None (a folder or zip)."""
    from batch_agent.solver.source import is_url

    if not is_url(source):
        return None
    from batch_agent.kaggle.urls import competition_slug

    return competition_slug(source)


def _kaggle_report(
    slug: str, cv_score: float, higher_is_better: bool, metric: str, submit: bool, output: Path,
    *, submit_wait: float = 600.0,
) -> tuple[list[str], dict[str, Any]]:
    """Where the CV score would land on the leaderboard and, with --submit, the public score.

    Returns the text lines and the JSON summary's fields: ``leaderboard`` (the CV
    score's estimate, or None) and, with --submit, ``submission`` (ref, status,
    public score and its rank).
    """
    from batch_agent.kaggle.leaderboard import describe_rank
    from batch_agent.kaggle.leaderboard_download import estimate_rank
    from batch_agent.kaggle.submit import submit as submit_to_kaggle

    lines = []
    estimate = estimate_rank(slug, cv_score, higher_is_better)
    fields: dict[str, Any] = {
        "leaderboard": {**estimate.model_dump(), "score": cv_score} if estimate is not None else None
    }
    if estimate is None:
        lines.append("leaderboard: not available (no Kaggle credentials or Kaggle unreachable)")
    else:
        lines.append(f"leaderboard (CV): {describe_rank(cv_score, estimate)}")
    if submit:
        result = submit_to_kaggle(slug, output, f"kaggle-solver CV {metric}={cv_score:.5f}",
                                  higher_is_better=higher_is_better, timeout=submit_wait)
        fields["submission"] = {
            "ref": result.ref,
            "status": result.status,
            "public_score": result.public_score,
            "rank": result.rank.model_dump() if result.rank is not None else None,
            "error": result.error,
            "description": result.description,
        }
        if result.status == "complete" and result.public_score is not None:
            lines.append(f"submitted: public score {result.public_score:.5f}")
            if result.rank is not None:
                lines.append(f"leaderboard (public): {describe_rank(result.public_score, result.rank)}")
        elif result.status == "error":
            lines.append(f"submitted, but Kaggle could not score it: {result.error or 'no reason given'}")
        else:
            lines.append(f"submitted (ref {result.ref}); Kaggle has not scored it yet")
    return lines, fields


def _leaderboard(args: argparse.Namespace) -> int:
    from batch_agent.kaggle.leaderboard import summarize_leaderboard
    from batch_agent.kaggle.leaderboard_download import download_leaderboard
    from batch_agent.kaggle.urls import competition_slug
    from batch_agent.solver.source import is_url

    slug = competition_slug(args.competition) if is_url(args.competition) else args.competition.strip().lower()
    entries = download_leaderboard(slug)
    print(summarize_leaderboard(slug, entries, higher_is_better=args.higher_is_better, score=args.score))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from batch_agent.local.serve import serve
    from batch_agent.local.stack import EmulatedStack

    def ready(stack: EmulatedStack, base: str) -> None:
        print(f"emulated AWS: {stack.endpoint} (AWS_ENDPOINT_URL for the aws CLI and boto3); DynamoDB and S3: "
              f"{stack.data_endpoint} (AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_S3)", file=sys.stderr)
        print(f"API: {base}  (docs: {base}/docs)  logs: {stack.options.work_dir / 'logs'}", file=sys.stderr)
        print(f"try: curl -X POST {base}/run -H 'content-type: application/json' "
              "-d '{\"url\": \"https://www.kaggle.com/competitions/<slug>\"}'", file=sys.stderr)

    serve(api_port=args.port, moto_port=args.aws_port, data_port=args.aws_data_port, work_dir=args.work_dir,
          local_cache_dir=args.cache_dir.resolve() if args.cache_dir else None, api_key=args.api_key,
          api_workers=args.api_workers, batch_slots=args.batch_slots,
          leaderboard_interval_s=args.leaderboard_interval, ready=ready)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "leaderboard":
            return _leaderboard(args)
        if args.command == "serve":
            return _serve(args)
        settings = CliSettings()
        return _run(args, settings, started)
    except SolverError as exc:
        print(f"kaggle-solver: error: {exc}", file=sys.stderr)
        if getattr(args, "json", False):
            print(json.dumps({"status": "failed", "error": str(exc), "exit_code": exc.exit_code}))
        return exc.exit_code
    except KeyboardInterrupt:
        print("kaggle-solver: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
