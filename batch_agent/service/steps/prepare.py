"""The prepare step (a Batch job): competition files into the S3 cache and the profile.

The leaderboard snapshot is the scheduled sync's (``service.leaderboard_sync``): a new
job's competition is tracked from its next run on.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from batch_agent.service import artifacts, jobs
from batch_agent.service.settings import ContainerSettings
from batch_agent.service.steps.context import COMPLETE_MARKER, ServiceClients, load_job
from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.errors import InputError, SolverError

# ---------------------------------------------------------------- competition files

log = logging.getLogger(__name__)


def fetch_competition(clients: ServiceClients, settings: ContainerSettings, slug: str, *,
                      download: bool = True) -> Path:
    """A local folder with the competition's files: a local cache, else the S3 cache, else Kaggle.

    A Kaggle download is uploaded to ``cache/{slug}/`` so later jobs on the same
    competition (on any machine) skip the download. Training jobs pass ``download=False``:
    they hold no Kaggle credentials and read only what prepare put in the cache.
    """
    prefix = artifacts.cache_prefix(slug)
    if settings.local_cache_dir:
        local = (Path(settings.local_cache_dir) / slug).resolve()
        if local.is_dir() and any(local.iterdir()):
            _fill_s3_cache(clients, prefix, local)
            return local
    folder = Path(settings.work_dir) / "cache" / slug
    # The marker sits beside the folder: inside it, profiling would list it as a competition file.
    marker = folder.with_name(slug + COMPLETE_MARKER)
    if marker.exists():
        # A machine's copy can outlive the bucket's (a restarted local stack, a bucket emptied by hand).
        _fill_s3_cache(clients, prefix, folder)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    if artifacts.download_prefix(clients.s3, clients.bucket, prefix, folder) == 0:
        if not download:
            raise InputError(f"competition {slug} is not in the cache; the prepare step fills it first")
        from batch_agent.kaggle.download import download_competition

        downloaded = Path(download_competition(slug, folder))
        artifacts.upload_folder(clients.s3, clients.bucket, prefix, downloaded)
        if downloaded != folder:
            return downloaded
    marker.touch()
    return folder


def training_folder(clients: ServiceClients, settings: ContainerSettings, slug: str, profile: CompetitionProfile,
                    original: Path) -> Path:
    """The folder programs train on: the competition's own for one table, else its flat folder.

    The prepare step uploads the flat tables to ``cache/{slug}@flat/`` (not the ``original/`` copy, which
    is the cache itself); a training job downloads them once per machine and links the files it already
    has under ``original/``, so programs see the same folder as in `kaggle-solver run`.
    """
    if profile.shape.kind == "table":
        return original
    folder = Path(settings.work_dir) / "cache" / f"{slug}@flat"
    marker = folder.with_name(folder.name + COMPLETE_MARKER)
    if not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        if artifacts.download_prefix(clients.s3, clients.bucket, artifacts.flat_prefix(slug), folder) == 0:
            raise InputError(f"the flat tables of {slug} are not in the cache; the prepare step writes them first")
        from batch_agent.solver.shapes import keep_original

        keep_original(original, folder, profile.shape.replaced_files)
        marker.touch()
    return folder


def _fill_s3_cache(clients: ServiceClients, prefix: str, folder: Path) -> None:
    """The Lambda steps read the competition from the S3 cache: upload a local copy when the cache is empty."""
    if not artifacts.list_keys(clients.s3, clients.bucket, prefix, limit=1):
        artifacts.upload_folder(clients.s3, clients.bucket, prefix, folder)


# ---------------------------------------------------------------- Batch steps


def record_compute(clients: ServiceClients, settings: ContainerSettings, job_id: str, seconds: float) -> None:
    """Add one Batch job's wall-clock (and its price, when the container knows its rate) to the job."""
    amounts = {"compute_seconds": round(seconds, 2)}
    if settings.usd_per_hour is not None:
        amounts["compute_cost_usd"] = round(seconds * settings.usd_per_hour / 3600, 6)
    jobs.add_to_job(clients.dynamodb, clients.table, job_id, **amounts)


def prepare_job(clients: ServiceClients, settings: ContainerSettings, job_id: str) -> CompetitionProfile:
    """Fetch the competition and write jobs/{id}/profile.json. A SolverError marks the job FAILED."""
    job = load_job(clients, job_id)
    if not jobs.mark_stage(
        clients.dynamodb,
        clients.table,
        job_id,
        "prepare",
        message="fetching and profiling the data",
        batch_job_id=settings.batch_job_id,
    ):
        raise SolverError(f"job {job_id} has already ended ({load_job(clients, job_id).status}); nothing to prepare")
    try:
        from batch_agent.solver.data_preview import data_preview
        from batch_agent.solver.profiling import profile_competition
        from batch_agent.solver.shapes import ORIGINAL, flatten_competition

        original = fetch_competition(clients, settings, job.competition)
        flat_dir = Path(settings.work_dir) / "jobs" / job_id / "flat"
        data_dir, shape = flatten_competition(original, flat_dir, time_budget=0.25 * job.time_limit)
        profile = profile_competition(data_dir)
        profile.shape = shape
        profile.preview = data_preview(profile)
        if shape.kind != "table":
            artifacts.upload_folder(clients.s3, clients.bucket, artifacts.flat_prefix(job.competition), data_dir,
                                    skip=ORIGINAL)
            shutil.rmtree(flat_dir, ignore_errors=True)
    except SolverError as exc:
        jobs.mark_failed(clients.dynamodb, clients.table, job_id, str(exc))
        raise
    artifacts.put_json(clients.s3, clients.bucket, artifacts.job_key(job_id, "profile.json"), profile.model_dump())
    jobs.update_job(
        clients.dynamodb,
        clients.table,
        job_id,
        message=f"{profile.task} on {profile.n_train} rows, metric {profile.metric}",
    )
    return profile


