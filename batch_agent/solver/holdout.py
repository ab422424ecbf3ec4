"""The hidden holdout: labelled train rows a model-written program sees as test rows, to catch leaks.

A program that writes the true labels as its out-of-fold predictions, or that
otherwise lets the labels into its features, scores far better out of fold than
on rows whose labels it never had. Before such a program runs, a random share of
the labelled train rows is taken out of the train.csv it sees and added to its
test.csv and sample submission under fresh ids, at random places. The product
keeps those rows' labels and scores the program's predictions for them itself.

The program gets its own copy of the data, read-only for it: train.csv, test.csv
and the sample submission rewritten, every other file copied.
"""

from __future__ import annotations

import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from batch_agent.solver.competition import CompetitionProfile
from batch_agent.solver.profiling import normalise_id

# Below this many labelled train rows a holdout would take too much from training and be too noisy to judge.
MIN_LABELLED_ROWS = 1000
HOLDOUT_FRACTION = 0.10
# Where the data allows, at least this many rows, so the holdout's own noise stays small.
MIN_HOLDOUT_ROWS = 300


@dataclass(frozen=True)
class Holdout:
    """A prepared data folder and what the product keeps to itself about it."""

    profile: CompetitionProfile  # the competition as the program sees it (data_dir = the prepared folder)
    fresh_ids: list[str]  # the held rows' ids in the program's test.csv, normalised
    train_rows: np.ndarray  # their row numbers in the real train.csv, in the order of fresh_ids
    seen_train_rows: np.ndarray  # row numbers of the real train.csv rows the program sees, in its order


def holdout_size(n_labelled: int) -> int:
    """How many labelled rows to hold out: none when train is tiny, else ~10% and at least a few hundred."""
    if n_labelled < MIN_LABELLED_ROWS:
        return 0
    return max(round(HOLDOUT_FRACTION * n_labelled), min(MIN_HOLDOUT_ROWS, n_labelled // 5))


def labelled_rows(profile: CompetitionProfile, train: pd.DataFrame) -> np.ndarray:
    """Mask of train rows whose every target is present."""
    return np.asarray(train[profile.target_columns].notna().all(axis=1).to_numpy())


def prepare_holdout(profile: CompetitionProfile, destination: Path, seed: int | None = None) -> Holdout | None:
    """Write the program's data folder with a hidden holdout; None when train is too small for one."""
    data = Path(profile.data_dir)
    train = pd.read_csv(data / profile.train_file, dtype=str, keep_default_na=False, na_values=[""])
    labelled = np.flatnonzero(labelled_rows(profile, train))
    n_held = holdout_size(len(labelled))
    if n_held == 0:
        return None
    rng = np.random.default_rng(seed)
    held = choose_held_rows(profile, train, labelled, n_held, rng)
    n_held = len(held)
    seen = np.setdiff1d(np.arange(len(train)), held)
    test = pd.read_csv(data / profile.test_file, dtype=str, keep_default_na=False, na_values=[""])
    sample = pd.read_csv(data / profile.sample_submission_file, dtype=str, keep_default_na=False)
    fresh = _fresh_ids(train[profile.id_column], test[profile.id_column], n_held, rng)

    held_rows = train.iloc[held].reindex(columns=test.columns).copy()
    held_rows[profile.id_column] = fresh
    held_sample = pd.DataFrame([sample.iloc[0].to_dict()] * n_held, columns=sample.columns)
    held_sample[profile.id_column] = fresh
    # Held rows go to random places, the test rows keep their order; the sample follows the same order.
    order = _interleaved(len(test), n_held, rng)
    new_test = pd.concat([test, held_rows], ignore_index=True).iloc[order]
    sample_rows = _sample_for(sample, test, profile.id_column)
    new_sample = pd.concat([sample_rows, held_sample], ignore_index=True).iloc[order]

    if destination.exists():
        remove_prepared(destination)
    destination.mkdir(parents=True)
    for item in data.iterdir():
        if item.name in (profile.train_file, profile.test_file, profile.sample_submission_file):
            continue
        if item.is_dir():
            shutil.copytree(item, destination / item.name, symlinks=False)
        elif item.is_file():
            shutil.copyfile(item, destination / item.name)
    train.iloc[seen].to_csv(destination / profile.train_file, index=False)
    new_test.to_csv(destination / profile.test_file, index=False)
    new_sample.to_csv(destination / profile.sample_submission_file, index=False)
    _make_read_only(destination)
    seen_profile = profile.model_copy(update={
        "data_dir": str(destination), "n_train": len(seen), "n_test": len(test) + n_held,
    })
    return Holdout(profile=seen_profile, fresh_ids=[normalise_id(v) for v in fresh], train_rows=held,
                   seen_train_rows=seen)


def choose_held_rows(profile: CompetitionProfile, train: pd.DataFrame, labelled: np.ndarray, n_held: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Which labelled rows to hold out, sorted: the latest by the shape's time column (test comes after
    train there, and the held rows should too), whole groups of its group column, or a random sample."""
    shape = profile.shape
    if shape.time_column is not None:
        from batch_agent.solver.time_series import time_values

        times = time_values(train[shape.time_column].iloc[labelled])
        order = np.argsort(np.where(np.isnan(times), -np.inf, times), kind="stable")
        return np.sort(labelled[order[-n_held:]])
    if shape.group_column is not None:
        codes, uniques = pd.factorize(train[shape.group_column].iloc[labelled].fillna("__missing__"))
        if len(uniques) >= 2:
            groups = rng.permutation(len(uniques))
            taken = np.cumsum(np.bincount(codes, minlength=len(uniques))[groups])
            # Whole groups until about n_held rows, and never every group.
            n_groups = min(int(np.searchsorted(taken, n_held)) + 1, len(uniques) - 1)
            return np.sort(labelled[np.isin(codes, groups[:n_groups])])
    return np.sort(rng.choice(labelled, size=n_held, replace=False))


def _interleaved(n_test: int, n_held: int, rng: np.random.Generator) -> np.ndarray:
    """Row order: test rows 0..n_test-1 in order, held rows (numbered from n_test) at random places among them."""
    total = n_test + n_held
    held = np.zeros(total, dtype=bool)
    held[rng.choice(total, size=n_held, replace=False)] = True
    order = np.empty(total, dtype=int)
    order[~held] = np.arange(n_test)
    order[held] = n_test + rng.permutation(n_held)
    return order


def _sample_for(sample: pd.DataFrame, test: pd.DataFrame, id_column: str) -> pd.DataFrame:
    """The sample submission in test.csv's row order (the usual case already), so both can be shuffled alike."""
    if id_column not in sample.columns or len(sample) != len(test):
        return sample
    keys = sample[id_column].map(normalise_id)
    position = dict(zip(keys, range(len(keys)), strict=True)) if keys.is_unique else None
    if position is None:
        return sample
    order = [position.get(normalise_id(v), -1) for v in test[id_column]]
    if min(order, default=0) < 0:
        return sample
    return sample.iloc[order].reset_index(drop=True)


def _fresh_ids(train_ids: pd.Series, test_ids: pd.Series, n: int, rng: np.random.Generator) -> list[str]:
    """New ids in the style of the existing ones, unused by train and test, in random order."""
    used = {normalise_id(v) for v in pd.concat([train_ids, test_ids])}
    numbers = pd.to_numeric(pd.concat([train_ids, test_ids]), errors="coerce")
    if numbers.notna().all() and (numbers % 1 == 0).all():
        # Integer ids: unused integers from the range the ids span, widened by 2n (always room for n more).
        taken = {int(v) for v in numbers}
        low, high = min(taken), max(taken)
        chosen: list[int] = []
        for _ in range(20):  # sparse ids: random picks in the range find free ones fast
            for value in rng.integers(low, high + 2 * n + 1, size=2 * n):
                if len(chosen) < n and int(value) not in taken:
                    taken.add(int(value))
                    chosen.append(int(value))
            if len(chosen) == n:
                break
        top = [v for v in range(high + 1, high + 2 * n + 1) if v not in taken]  # dense ids: above the highest
        chosen += [int(v) for v in rng.permutation(top)[: n - len(chosen)]]
        return [str(v) for v in rng.permutation(chosen)]
    # Text ids: the test ids' common leading letters (e.g. "cust-") and random digits, as long as theirs.
    texts = [str(v) for v in test_ids]
    prefix = texts[0] if texts else ""
    for text in texts:
        while not text.startswith(prefix):
            prefix = prefix[:-1]
    prefix = prefix.rstrip("0123456789")
    width = max(4, int(np.median([len(t) for t in texts])) - len(prefix)) if texts else 8
    fresh: list[str] = []
    while len(fresh) < n:
        digits = str(int(rng.integers(1, 10))) + "".join(str(d) for d in rng.integers(0, 10, size=width - 1))
        candidate = prefix + digits
        if normalise_id(candidate) not in used:
            used.add(normalise_id(candidate))
            fresh.append(candidate)
        elif len(used) > 10 ** (width - 1):
            width += 1  # a crowded width: longer ids
    return fresh


def _make_read_only(folder: Path) -> None:
    for path in sorted(folder.rglob("*"), reverse=True):
        mode = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
        if path.is_dir():
            mode |= stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
        path.chmod(mode)
    folder.chmod(0o555)


def remove_prepared(folder: Path) -> None:
    """Delete a prepared data folder (its read-only folders first made writable again)."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder, ignore_errors=True)
