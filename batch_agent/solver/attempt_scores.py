"""The product's own scores of an attempt, from the files the program left; the program's claim is only shown.

A program writes ``oof.csv`` (out-of-fold predictions for its train.csv rows, in the
submission's format) next to ``submission.csv``. Outside the sandbox the product
checks it, scores it against the labels it holds with the competition's metric,
and, for a program that ran with a hidden holdout (``holdout.py``), scores the
held rows' predictions too: an out-of-fold score that beats the holdout score by
more than the holdout's bootstrap noise is a leak. ``metrics.json`` is optional;
its ``cv_score`` is recorded and flagged when it disagrees with the product's.

Every file is read through ``outputs.read_output`` (no links, size caps) and
checked from a private copy, so the program cannot change what is checked.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.holdout import Holdout
from batch_agent.solver.metrics import get_metric
from batch_agent.solver.outputs import MAX_SIDE_FILE_BYTES, OutputError, read_output
from batch_agent.solver.plan import AttemptResult
from batch_agent.solver.predictions import Decision, cv_score, encode_target, is_classification
from batch_agent.solver.profiling import normalise_id
from batch_agent.solver.scoring import score
from batch_agent.solver.submission import validate_submission

# A claim within this much of the product's score (absolute, or relative to the score) agrees with it.
CLAIM_TOLERANCE = 1e-4
CLAIM_RELATIVE_TOLERANCE = 1e-3
BOOTSTRAP_ROUNDS = 200
MIN_BOOTSTRAP_DRAWS = 30
BOOTSTRAP_SECONDS = 10.0
# How many bootstrap standard deviations of the holdout score an out-of-fold score may beat it by.
LEAK_NOISE_MULTIPLE = 3.0
HOLDOUT_FILE = "holdout.csv"
# With time-ordered folds, oof.csv may leave at most this share of the labelled rows empty (the earliest).
MAX_UNPREDICTED_SHARE = 0.5


class ScoringError(ValueError):
    """The program's files cannot be scored; the message says why, in one line."""


@dataclass(frozen=True)
class HoldoutVerdict:
    score: float
    noise: float
    rows: int
    leaking: bool


def judge_attempt(profile: CompetitionProfile, result: AttemptResult, *, ran: str,
                  holdout: Holdout | None = None) -> AttemptResult:
    """Check and score what a finished program left in ``result.workdir``; a failure is recorded, not raised.

    ``profile`` is the real competition; with ``holdout`` the program saw ``holdout.profile``'s data instead.
    On success the attempt's folder holds the product's versions of the files later steps read:
    submission.csv without the held rows, and holdout.csv with their predictions under their real train ids.
    """
    folder = Path(result.workdir)
    result.claimed_cv_score = _claimed_score(folder)
    try:
        with tempfile.TemporaryDirectory(prefix="kaggle-solver-check-") as tmp:
            private = Path(tmp)
            # What the program left comes first: nothing else is read when it wrote no submission.
            submission = _private_copy(folder, "submission.csv", private, ran)
            train = _read_table(Path(profile.data_dir) / profile.train_file)
            seen, seen_train = _reference(profile, holdout, train, private / "reference")
            problems = validate_submission(submission, seen)
            if problems:
                raise ScoringError("invalid submission: " + "; ".join(problems))
            oof_path = _private_copy(folder, "oof.csv", private, ran)
            problems = validate_submission(oof_path, seen, against="train",
                                           allow_empty_rows=seen.shape.time_column is not None)
            if problems:
                raise ScoringError("invalid oof.csv: " + "; ".join(problems))
            oof = align_rows(seen, _read_table(oof_path), seen_train[seen.id_column])
            y = encode_target(seen, seen_train)
            scored = scored_rows(seen, seen_train, oof, y)
            result.cv_score = product_score(seen, y[scored], oof[scored])
            if holdout is not None:
                _judge_holdout(profile, holdout, result, _read_table(submission), train)
            result.ok = result.reason is None
    except ScoringError as exc:
        result.reason = str(exc)
        return result
    result.claim_disagrees = result.claimed_cv_score is not None and not _agrees(
        result.claimed_cv_score, result.cv_score)
    return result


def scored_rows(profile: CompetitionProfile, train: pd.DataFrame, oof: pd.DataFrame, y: np.ndarray) -> np.ndarray:
    """Mask of the oof.csv rows (aligned with ``train``) that have predictions, after checking the empty ones.

    Time-ordered folds (``training.time_folds``) cannot predict the earliest rows without training on
    the future, so with a time column a program leaves them empty. The product accepts empty rows only
    when every labelled one is no later than every predicted labelled row and they are at most
    ``MAX_UNPREDICTED_SHARE`` of the labelled rows: a program cannot leave out rows it finds hard.
    """
    value_columns = [c for c in profile.submission_columns if c != profile.id_column]
    predicted = np.asarray(oof[value_columns].notna().all(axis=1).to_numpy())
    if predicted.all():
        return predicted
    time_column = profile.shape.time_column
    if time_column is None:
        raise ScoringError("oof.csv has rows without predictions")
    labelled = _labelled(profile, y)
    empty, scored = labelled & ~predicted, labelled & predicted
    if empty.sum() > MAX_UNPREDICTED_SHARE * labelled.sum():
        raise ScoringError(f"oof.csv leaves {int(empty.sum())} of {int(labelled.sum())} labelled rows empty; at most "
                           f"{MAX_UNPREDICTED_SHARE:.0%} may be (the earliest by {time_column!r})")
    from batch_agent.solver.time_series import time_values

    times = time_values(train[time_column])
    times = np.where(np.isnan(times), -np.inf, times)
    if empty.any() and scored.any() and times[empty].max() > times[scored].min():
        raise ScoringError(f"oof.csv leaves rows empty that are later by {time_column!r} than predicted ones: only "
                           "the earliest rows, which no model can predict without training on the future, may be empty")
    if not scored.any():
        raise ScoringError("oof.csv predicts no labelled row")
    return predicted


def _reference(profile: CompetitionProfile, holdout: Holdout | None, train: pd.DataFrame,
               folder: Path) -> tuple[CompetitionProfile, pd.DataFrame]:
    """The competition as the program saw it, from the product's own files, and the train rows it saw.

    With a holdout, the program's data folder is never read back: a program could have rewritten it.
    """
    if holdout is None:
        return profile, train
    data = Path(profile.data_dir)
    for name in (profile.train_file, profile.test_file, profile.sample_submission_file):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
    seen_train = train.iloc[holdout.seen_train_rows].reset_index(drop=True)
    seen_train[[profile.id_column]].to_csv(folder / profile.train_file, index=False)  # the checks read ids only
    test_ids = pd.read_csv(data / profile.test_file, usecols=[profile.id_column], dtype=str,
                           keep_default_na=False)[profile.id_column]
    pd.DataFrame({profile.id_column: [*test_ids, *holdout.fresh_ids]}).to_csv(folder / profile.test_file,
                                                                              index=False)
    shutil.copyfile(data / profile.sample_submission_file, folder / profile.sample_submission_file)
    return profile.model_copy(update={"data_dir": str(folder)}), seen_train


def _judge_holdout(profile: CompetitionProfile, holdout: Holdout, result: AttemptResult,
                   submission: pd.DataFrame, train: pd.DataFrame) -> None:
    """Score the held rows, strip them from the submission and flag a leak."""
    ids = submission[profile.id_column].map(normalise_id)
    held = ids.isin(set(holdout.fresh_ids))
    predictions = submission[held]
    predictions = align_rows(profile, predictions, pd.Series(holdout.fresh_ids))
    real_ids = train[profile.id_column].iloc[holdout.train_rows].to_numpy()
    y = encode_target(profile, train)[holdout.train_rows]
    folder = Path(result.workdir)
    _write_product_file(folder, "submission.csv", submission[~held].to_csv(index=False))
    _write_product_file(folder, HOLDOUT_FILE, predictions.assign(**{profile.id_column: real_ids})
                        .to_csv(index=False))
    result.holdout_rows = len(y)
    try:
        verdict = holdout_verdict(profile, y, predictions, result.cv_score)
    except ScoringError as exc:
        # E.g. no positive among the held rows of a rare class: no holdout score, so no verdict either.
        result.holdout = f"{len(y)} labelled rows hidden in test.csv, not scorable: {exc}"
        return
    result.holdout_score, result.holdout_noise = verdict.score, verdict.noise
    if verdict.leaking:
        result.reason = (
            f"leak: out-of-fold {profile.metric} {result.cv_score:.5f} beats the score on {verdict.rows} labelled "
            f"rows hidden in test.csv, {verdict.score:.5f} (± {verdict.noise:.5f}), by more than "
            f"{LEAK_NOISE_MULTIPLE:g}× their noise: the out-of-fold predictions saw their own labels "
            "(for example through the target, a feature derived from it, or fitting on all rows)"
        )


def holdout_verdict(profile: CompetitionProfile, y: np.ndarray, predictions: pd.DataFrame,
                    oof_score: float | None, *, seed: int = 0) -> HoldoutVerdict:
    """The held rows' score, its bootstrap noise, and whether the out-of-fold score beats it beyond that noise."""
    keep = _labelled(profile, y)
    y, frame = y[keep], predictions[keep]
    value = product_score(profile, y, frame)
    pred = None if profile.prediction_format == "ranked_labels" else prediction_space(profile, frame)
    rng = np.random.default_rng(seed)
    draws: list[float] = []
    stop_at = time.monotonic() + BOOTSTRAP_SECONDS
    for _ in range(BOOTSTRAP_ROUNDS):
        if len(draws) >= MIN_BOOTSTRAP_DRAWS and time.monotonic() > stop_at:
            break  # a large holdout on a slow metric: fewer resamples still measure the noise
        rows = rng.integers(0, len(y), size=len(y))
        try:
            draws.append(_score_rows(profile, y[rows], frame.iloc[rows] if pred is None else pred[rows]))
        except ValueError:
            continue  # a resample with one class only has no AUC; the others still measure the noise
    noise = float(np.std(draws)) if len(draws) >= 2 else 0.0
    sign = 1.0 if get_metric(profile.metric).higher_is_better else -1.0
    leaking = (oof_score is not None and len(draws) >= MIN_BOOTSTRAP_DRAWS
               and (oof_score - value) * sign > LEAK_NOISE_MULTIPLE * noise)
    return HoldoutVerdict(score=value, noise=noise, rows=len(y), leaking=bool(leaking))


def product_score(profile: CompetitionProfile, y: np.ndarray, frame: pd.DataFrame) -> float:
    """The metric on predictions in the submission's format, as Kaggle would score them, labelled rows only."""
    keep = _labelled(profile, y)
    try:
        if profile.prediction_format == "ranked_labels":
            return _score_rows(profile, y[keep], frame[keep])
        return _score_rows(profile, y[keep], prediction_space(profile, frame)[keep])
    except ValueError as exc:
        raise ScoringError(f"the predictions cannot be scored on {profile.metric}: {exc}") from None


def _score_rows(profile: CompetitionProfile, y: np.ndarray, pred: np.ndarray | pd.DataFrame) -> float:
    if isinstance(pred, pd.DataFrame):  # ranked labels: scored as written, never re-ranked
        classes = profile.classes or []
        column = next(c for c in profile.submission_columns if c != profile.id_column)
        truth = np.array([classes[i] for i in y], dtype=object)
        guesses = np.array([" ".join(normalise_id(v) for v in str(s).split()) for s in pred[column]], dtype=object)
        return score("map_at_k", truth, guesses, k=profile.map_k)
    # Decision(): the program already applied its post-processing to what it wrote.
    return cv_score(profile, y, pred, Decision())


def prediction_space(profile: CompetitionProfile, frame: pd.DataFrame) -> np.ndarray:
    """Predictions in the submission's format → the prediction space of ``predictions.py``.

    Labels become one-hot class probabilities (their argmax is the label again, and an average of
    them is a vote), so label-format programs can be scored and blended like the others. A row
    whose every prediction cell is empty (oof.csv rows time-ordered folds do not predict) is NaN.
    """
    value_columns = [c for c in profile.submission_columns if c != profile.id_column]
    cells = frame[value_columns]
    empty = (cells.isna() | (cells.astype(str).apply(lambda column: column.str.strip()) == "")).all(axis=1)
    if not empty.any():
        return _prediction_space(profile, frame)
    if empty.all():
        raise ScoringError("no row has predictions")
    filled = _prediction_space(profile, frame[~empty.to_numpy()])
    out = np.full((len(frame), *filled.shape[1:]), np.nan)
    out[~empty.to_numpy()] = filled
    return out


def _prediction_space(profile: CompetitionProfile, frame: pd.DataFrame) -> np.ndarray:
    value_columns = [c for c in profile.submission_columns if c != profile.id_column]
    fmt = profile.prediction_format
    classes = profile.classes or []
    if fmt == "class_probabilities":
        return frame[value_columns].to_numpy(dtype=float)
    if fmt == "label":
        index = {c: i for i, c in enumerate(classes)}
        codes = frame[value_columns[0]].map(lambda v: index.get(normalise_id(v), -1)).to_numpy(dtype=int)
        if (codes < 0).any():
            raise ScoringError("a prediction is not one of the classes")
        return np.eye(len(classes))[codes]
    if fmt == "ranked_labels":
        index = {c: i for i, c in enumerate(classes)}
        k = max(1, profile.map_k or 3)
        out = np.zeros((len(frame), len(classes)))
        for row, text in enumerate(frame[value_columns[0]]):
            for rank, label in enumerate(str(text).split()[:k]):
                if normalise_id(label) in index and out[row, index[normalise_id(label)]] == 0:
                    out[row, index[normalise_id(label)]] = (k - rank) / k
        return out
    if profile.task in ("multilabel", "multitarget_regression"):
        return frame[[c for c in profile.target_columns]].to_numpy(dtype=float)
    values = frame[value_columns[0]].to_numpy(dtype=float)
    if is_classification(profile):  # binary, one probability column
        return np.column_stack([1.0 - values, values])
    return values


def read_predictions(folder: Path, name: str, profile: CompetitionProfile, ids: pd.Series) -> np.ndarray:
    """A predictions file the product checked, in prediction space, rows in the order of ``ids``."""
    frame = pd.read_csv(io.BytesIO(read_output(folder, name)), dtype=str, keep_default_na=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    return prediction_space(profile, align_rows(profile, frame, ids))


def align_rows(profile: CompetitionProfile, frame: pd.DataFrame, ids: pd.Series) -> pd.DataFrame:
    """``frame``'s rows in the order of ``ids`` (each id present exactly once: validation checked it)."""
    keys = frame[profile.id_column].map(normalise_id)
    position = pd.Series(np.arange(len(frame)), index=keys.to_numpy())
    wanted = [normalise_id(v) for v in ids]
    missing = [k for k in wanted if k not in position.index]
    if missing:
        raise ScoringError(f"no prediction for {len(missing)} rows, e.g. id {missing[0]}")
    return frame.iloc[position.loc[wanted].to_numpy()].reset_index(drop=True)


def _labelled(profile: CompetitionProfile, y: np.ndarray) -> np.ndarray:
    if profile.classes is not None and y.ndim == 1:
        return np.asarray(y >= 0)
    return np.asarray(~np.isnan(y.reshape(len(y), -1)).any(axis=1))


def _read_table(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], low_memory=False)
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def _private_copy(folder: Path, name: str, private: Path, ran: str) -> Path:
    try:
        data = read_output(folder, name)
    except OutputError as exc:
        if str(exc) == f"{name} is missing":
            what = "out-of-fold predictions for every train.csv row" if name == "oof.csv" else "its predictions"
            raise ScoringError(f"{ran} finished without writing {name} ({what})") from None
        raise ScoringError(str(exc)) from None
    path = private / name
    path.write_bytes(data)
    return path


def _claimed_score(folder: Path) -> float | None:
    try:
        value = json.loads(read_output(folder, "metrics.json", max_bytes=MAX_SIDE_FILE_BYTES)).get("cv_score")
    except (OutputError, ValueError, AttributeError):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _agrees(claim: float, measured: float | None) -> bool:
    if measured is None:
        return False
    return abs(claim - measured) <= max(CLAIM_TOLERANCE, CLAIM_RELATIVE_TOLERANCE * abs(measured))


def _write_product_file(folder: Path, name: str, text: str) -> None:
    """Replace ``folder/name`` with the product's text; a link the program left there is replaced, not followed."""
    temporary = f".{name}.product"
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary, dir_fd=dir_fd)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=dir_fd)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
