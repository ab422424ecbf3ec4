"""Metadata and data download through the official client against the fake Kaggle server."""

from __future__ import annotations

import random
import re
import zipfile
from pathlib import Path

import pytest

from batch_agent.kaggle.client import KaggleOptions
from batch_agent.kaggle.download import competition_metadata, download_competition
from batch_agent.kaggle.errors import (
    KaggleAuthError,
    KaggleNotFoundError,
    KaggleRateLimitError,
    KaggleRulesNotAcceptedError,
)
from batch_agent.solver.errors import InputError
from tests.fakes.kaggle_server import RULES_MESSAGE, FakeCompetition, FakeKaggle, fake_kaggle

__all__ = ["fake_kaggle"]

_rng = random.Random(7)
# Noisy enough that the zipped archive spans several download chunks.
TRAIN = b"id,x,target\n" + b"".join(f"{i},{_rng.random()},{_rng.random()}\n".encode() for i in range(20000))
TEST = b"id,x\n" + b"".join(f"{i},{i * 0.5}\n".encode() for i in range(2000, 2500))
SAMPLE = b"id,target\n" + b"".join(f"{i},0\n".encode() for i in range(2000, 2500))


def _competition(slug: str = "tabular-demo", **kwargs: object) -> FakeCompetition:
    return FakeCompetition(
        slug=slug,
        title="Tabular Demo",
        files={"train.csv": TRAIN, "test.csv": TEST, "sample_submission.csv": SAMPLE},
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def options(tmp_path: Path) -> KaggleOptions:
    return KaggleOptions(config_dir=tmp_path / "kaggle-config", backoff_s=0.01, max_backoff_s=0.05)


def test_metadata_names_title_metric_deadline_and_files(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition(evaluation_page="Submissions are scored on RMSE."))
    meta = competition_metadata("tabular-demo", options=options)
    assert meta.title == "Tabular Demo"
    assert meta.evaluation_metric == "Root Mean Squared Error"
    assert meta.deadline is not None and meta.deadline.year == 2030
    assert meta.evaluation == "Submissions are scored on RMSE."
    assert {f.name: f.size for f in meta.files} == {
        "train.csv": len(TRAIN),
        "test.csv": len(TEST),
        "sample_submission.csv": len(SAMPLE),
    }


def test_download_extracts_files_and_writes_description_with_metric(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition())
    messages: list[str] = []
    folder = download_competition("tabular-demo", tmp_path / "data", progress=messages.append, options=options)
    assert folder == tmp_path / "data"
    assert (folder / "train.csv").read_bytes() == TRAIN
    assert (folder / "test.csv").read_bytes() == TEST
    assert (folder / "sample_submission.csv").read_bytes() == SAMPLE
    description = (folder / "description.md").read_text()
    assert "# Tabular Demo" in description
    assert "## Evaluation" in description
    assert "Root Mean Squared Error" in description
    assert not (folder / ".kaggle-download").exists()
    assert any("downloaded tabular-demo" in m for m in messages)
    # Requests carried the legacy API key as the official client sends it.
    download = fake_kaggle.calls("DownloadDataFiles")[0]
    assert download.headers["Authorization"].startswith("Basic ")


def test_nested_zips_are_extracted_and_a_shipped_description_is_kept(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    inner = tmp_path / "train.csv.zip"
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("train.csv", TRAIN)
    fake_kaggle.add(
        FakeCompetition(
            slug="zipped",
            files={"train.csv.zip": inner.read_bytes(), "description.md": b"# Own text\n", "test.csv": TEST},
        )
    )
    folder = download_competition("zipped", tmp_path / "data", options=options)
    assert (folder / "train.csv").read_bytes() == TRAIN
    assert not (folder / "train.csv.zip").exists()
    assert (folder / "description.md").read_text() == "# Own text\n"


def test_filled_cache_is_used_without_asking_kaggle(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition())
    cache = tmp_path / "cache"
    first = download_competition("tabular-demo", tmp_path / "run1", cache_dir=cache, options=options)
    assert (cache / "tabular-demo" / "train.csv").read_bytes() == TRAIN
    requests_after_first = len(fake_kaggle.requests)
    second = download_competition("tabular-demo", tmp_path / "run2", cache_dir=cache, options=options)
    assert len(fake_kaggle.requests) == requests_after_first
    assert (second / "train.csv").read_bytes() == TRAIN
    assert (second / "description.md").read_text() == (first / "description.md").read_text()


def test_hand_filled_cache_works_offline_without_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    monkeypatch.delenv("KAGGLE_API_TOKEN", raising=False)
    cached = tmp_path / "cache" / "offline-comp"
    cached.mkdir(parents=True)
    (cached / "train.csv").write_bytes(TRAIN)
    folder = download_competition("offline-comp", tmp_path / "data", cache_dir=tmp_path / "cache")
    assert (folder / "train.csv").read_bytes() == TRAIN


def test_refused_get_competition_falls_back_to_the_competition_list(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition())
    fake_kaggle.fail_next("GetCompetition", 403, "Permission 'competitions.get' was denied")
    folder = download_competition("tabular-demo", tmp_path / "data", options=options)
    assert (folder / "train.csv").read_bytes() == TRAIN
    assert "Root Mean Squared Error" in (folder / "description.md").read_text()
    assert fake_kaggle.calls("ListCompetitions")[0].body["search"] == "tabular-demo"


def test_rules_not_accepted_raises_with_rules_url(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    fake_kaggle.add(_competition(rules_accepted=False))
    with pytest.raises(KaggleRulesNotAcceptedError) as caught:
        download_competition("tabular-demo", tmp_path / "data", options=options)
    message = str(caught.value)
    assert "https://www.kaggle.com/competitions/tabular-demo/rules" in message
    assert RULES_MESSAGE in message
    assert isinstance(caught.value, InputError) and caught.value.exit_code == 2
    assert not (tmp_path / "data" / "train.csv").exists()


def test_unknown_competition_raises_not_found(fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path) -> None:
    with pytest.raises(KaggleNotFoundError, match="'no-such-comp' was not found"):
        download_competition("no-such-comp", tmp_path / "data", options=options)


def test_wrong_credentials_raise_auth_error(
    fake_kaggle: FakeKaggle, options: KaggleOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kaggle.add(_competition())
    monkeypatch.setenv("KAGGLE_KEY", "wrong")
    with pytest.raises(KaggleAuthError, match="HTTP 401"):
        competition_metadata("tabular-demo", options=options)


def test_missing_credentials_raise_auth_error_before_any_request(
    fake_kaggle: FakeKaggle, options: KaggleOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    with pytest.raises(KaggleAuthError, match="KAGGLE_API_TOKEN"):
        competition_metadata("tabular-demo", options=options)
    assert fake_kaggle.requests == []


def test_kaggle_json_in_config_dir_is_used(
    fake_kaggle: FakeKaggle, options: KaggleOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kaggle.add(_competition())
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    assert options.config_dir is not None
    config = options.config_dir / "kaggle.json"
    config.write_text('{"username": "solver-user", "key": "solver-key"}')
    config.chmod(0o600)
    assert competition_metadata("tabular-demo", options=options).title == "Tabular Demo"


def test_api_token_is_sent_as_bearer(
    fake_kaggle: FakeKaggle, options: KaggleOptions, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_kaggle.add(_competition())
    monkeypatch.delenv("KAGGLE_USERNAME")
    monkeypatch.delenv("KAGGLE_KEY")
    monkeypatch.setenv("KAGGLE_API_TOKEN", "solver-token")
    competition_metadata("tabular-demo", options=options)
    assert fake_kaggle.calls("GetCompetition")[0].headers["Authorization"] == "Bearer solver-token"


def test_rate_limited_requests_are_retried_then_succeed(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition())
    fake_kaggle.fail_next("GetCompetition", 429, "Too many requests", times=2, **{"Retry-After": "0"})
    assert competition_metadata("tabular-demo", options=options).title == "Tabular Demo"
    assert len(fake_kaggle.calls("GetCompetition")) == 3


def test_rate_limit_on_every_attempt_raises_rate_limit_error(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition())
    fake_kaggle.fail_next("GetCompetition", 429, "Too many requests", times=options.max_attempts)
    with pytest.raises(KaggleRateLimitError, match="rate-limited"):
        competition_metadata("tabular-demo", options=options)
    assert len(fake_kaggle.calls("GetCompetition")) == options.max_attempts


def test_server_errors_are_retried(fake_kaggle: FakeKaggle, options: KaggleOptions) -> None:
    fake_kaggle.add(_competition())
    fake_kaggle.fail_next("ListDataFiles", 503, "Backend unavailable", times=2)
    assert len(competition_metadata("tabular-demo", options=options).files) == 3


def test_dropped_connection_mid_download_resumes_and_file_is_intact(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path
) -> None:
    competition = fake_kaggle.add(_competition())
    archive_size = len(competition.archive())
    assert archive_size > 4 * 65536
    fake_kaggle.drop_downloads_after.extend([archive_size // 2])
    folder = download_competition("tabular-demo", tmp_path / "data", options=options)
    assert (folder / "train.csv").read_bytes() == TRAIN
    storage = [r for r in fake_kaggle.requests if r.method == "GET" and r.path.startswith("/storage/")]
    # first try (cut), a fresh redirect, then the ranged request for the rest
    assert len(storage) == 3
    assert _range_start(storage[2].headers) > 0


def test_interrupted_download_never_replaces_good_files(fake_kaggle: FakeKaggle, tmp_path: Path) -> None:
    fake_kaggle.add(_competition())
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "train.csv").write_bytes(b"good old copy")
    options = KaggleOptions(config_dir=tmp_path / "kaggle-config", max_attempts=2, backoff_s=0.01)
    # every storage response is cut: the first try, and both requests of the second
    fake_kaggle.drop_downloads_after.extend([150_000] * 4)
    with pytest.raises(InputError, match="partial file"):
        download_competition("tabular-demo", dest, options=options)
    assert (dest / "train.csv").read_bytes() == b"good old copy"
    # A later run resumes the kept partial file instead of starting over.
    folder = download_competition("tabular-demo", dest, options=options)
    assert (folder / "train.csv").read_bytes() == TRAIN
    last = [r for r in fake_kaggle.requests if r.path.startswith("/storage/")][-1]
    assert _range_start(last.headers) > 0


def _range_start(headers: dict[str, str]) -> int:
    match = re.fullmatch(r"bytes=(\d+)-", headers.get("Range", ""))
    assert match, headers
    return int(match.group(1))


def test_a_competition_too_big_for_the_free_disk_fails_before_downloading(
    fake_kaggle: FakeKaggle, options: KaggleOptions, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from batch_agent.kaggle import download

    fake_kaggle.add(_competition())
    real = download.shutil.disk_usage

    def almost_full(path: object) -> object:
        usage = real(path)  # type: ignore[arg-type]
        return usage._replace(free=download.DISK_HEADROOM_BYTES + len(TRAIN))

    monkeypatch.setattr(download.shutil, "disk_usage", almost_full)

    with pytest.raises(download.NotEnoughDiskError, match=r"tabular-demo has .* of files; .* but only .* is free"):
        download_competition("tabular-demo", tmp_path / "data", options=options)
    assert fake_kaggle.calls("DownloadDataFiles") == []
