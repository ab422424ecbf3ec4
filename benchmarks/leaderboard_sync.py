"""How long one leaderboard sync takes: N competitions × M teams against the fake Kaggle server.

    python benchmarks/leaderboard_sync.py                       # 20 × 5,000, the three modes below
    python benchmarks/leaderboard_sync.py --competitions 5 --teams 1000 --modes csv

The official client talks to the fake Kaggle server on loopback (tests/fakes);
S3 is moto in this process. One run of ``sync_leaderboards`` (download, parse,
rank maths, snapshot + history writes) per mode:

* ``csv``: the leaderboard download (one request per competition), no spacing;
* ``csv-spaced``: the same with the sync's default spacing between requests
  (``LeaderboardSyncSettings.kaggle_min_interval_s``), as the deployed sync runs;
* ``paged``: the download refused, so every page is read (the fake, like Kaggle,
  serves at most 50 rows a page), no spacing.

Prints one table row per mode. Loopback has no network latency: against Kaggle,
add the round trips (requests × RTT) and the download time of the CSVs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from batch_agent.kaggle.client import KaggleOptions  # noqa: E402
from batch_agent.service.leaderboard_sync import sync_leaderboards  # noqa: E402
from batch_agent.service.settings import LeaderboardSyncSettings  # noqa: E402
from tests.fakes.kaggle_server import FakeCompetition, FakeKaggle  # noqa: E402

BUCKET = "bench-kaggle-solver-artifacts"
MODES = ("csv", "csv-spaced", "paged")


def _point_client_at(server: FakeKaggle, home: Path) -> None:
    from kagglesdk import kaggle_env

    kaggle_env._env_to_endpoint[kaggle_env.KaggleEnv.LOCAL] = server.url
    (home / "kaggle-config").mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "KAGGLE_API_ENVIRONMENT": "LOCALHOST",
            "KAGGLE_CONFIG_DIR": str(home / "kaggle-config"),
            "KAGGLE_USERNAME": "solver-user",
            "KAGGLE_KEY": "solver-key",
            "HOME": str(home),
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    os.environ.pop("KAGGLE_API_TOKEN", None)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with contextlib.redirect_stdout(io.StringIO()):
        import kaggle  # noqa: F401  # authenticates once at import; keep it out of the timing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--competitions", type=int, default=20)
    parser.add_argument("--teams", type=int, default=5000)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    spacing = LeaderboardSyncSettings.model_fields["kaggle_min_interval_s"].default

    server = FakeKaggle()
    server.start()
    slugs = [f"bench-{i:02d}" for i in range(args.competitions)]
    for i, slug in enumerate(slugs):
        board = [(f"team-{k}", 0.99 - (k + i) / (args.teams * 10)) for k in range(args.teams)]
        server.add(FakeCompetition(slug=slug, files={}, leaderboard=board))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _point_client_at(server, Path(tmp))
        for mode in args.modes:
            server.leaderboard_download_enabled = mode != "paged"
            options = KaggleOptions(
                config_dir=Path(tmp) / "kaggle-config", min_interval_s=spacing if mode == "csv-spaced" else 0.0
            )
            with mock_aws():
                s3 = boto3.client("s3", region_name="us-east-1")
                s3.create_bucket(Bucket=BUCKET)
                before = len(server.requests)
                started = time.perf_counter()
                report = sync_leaderboards(s3, BUCKET, slugs, options=options)
                seconds = time.perf_counter() - started
                requests = len(server.requests) - before
                size = s3.head_object(Bucket=BUCKET, Key=f"leaderboards/{slugs[0]}.json")["ContentLength"]
            assert report.updated == len(slugs), report.outcome
            rows.append((mode, spacing if mode == "csv-spaced" else 0.0, requests, seconds, size))
    server.stop()

    print(f"leaderboard sync: {args.competitions} competitions × {args.teams:,} teams, fake Kaggle on loopback")
    print(f"{'mode':<11} {'spacing s':>9} {'requests':>8} {'total s':>8} {'s/comp':>7} {'snapshot KB':>11}")
    for mode, space, requests, seconds, size in rows:
        print(
            f"{mode:<11} {space:>9.1f} {requests:>8} {seconds:>8.1f} "
            f"{seconds / args.competitions:>7.2f} {size / 1024:>11.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
