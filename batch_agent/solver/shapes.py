"""Competitions that are more than one table: recognise the shape, and flatten it into one table.

An image folder with a CSV of labels, related tables that share a key with train/test,
or a time series with a forecast horizon: each shape module looks at the downloaded
folder and, when the shape is its own, writes a *flat folder* (train.csv, test.csv,
sample_submission.csv, description.md, one row per id, the shape's features as columns)
so every template, the sandbox, the holdout and the blend work on it unchanged. The
flat folder keeps the downloaded files under ``original/`` for programs that want the
raw data (a pretrained network on the images, a model's own aggregates).

The flattening is the product's own code reading the data, as profiling does; it runs
before the first program and counts against the time limit.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from batch_agent.solver.competition import DataShape

ORIGINAL = "original"

Flatten = Callable[[Path, Path], "tuple[Path, DataShape] | None"]


def flatten_competition(data_dir: Path, out_dir: Path, *, time_budget: float | None = None) -> tuple[Path, DataShape]:
    """The folder to profile and train on, and the competition's shape.

    A plain table comes back as it is (``data_dir`` and ``DataShape()``); any other shape comes back
    as a flat folder under ``out_dir``. ``time_budget`` bounds the slow part (decoding images; the
    tables take seconds): past it, train images beyond a minimum are left out, never test ones.
    """
    from batch_agent.solver import image_folders, related_tables, time_series

    def images(data: Path, out: Path) -> tuple[Path, DataShape] | None:
        cap = image_folders.TIME_CAP_S if time_budget is None else min(image_folders.TIME_CAP_S, time_budget)
        return image_folders.flatten(data, out, time_cap=cap)

    # Most specific first: an image folder or a related table decides the shape before a date column does.
    flatteners: list[Flatten] = [images, related_tables.flatten, time_series.flatten]
    for flatten in flatteners:
        found = flatten(data_dir, out_dir)
        if found is not None:
            return found
    return data_dir, DataShape()


def keep_original(data_dir: Path, out_dir: Path, replaced: list[str]) -> str:
    """Put the downloaded files under ``out_dir/original`` (hard links when possible); its relative name.

    ``replaced`` (names relative to ``data_dir``: the train and test CSVs the flat tables replace) are left
    out, so the labels stay where the hidden holdout can hide some of them.
    """
    target = out_dir / ORIGINAL
    if target.exists():
        shutil.rmtree(target)
    # `kaggle-solver run .` inside the competition puts the work folder (and out_dir) inside data_dir:
    # the copy must not copy itself. A symbolic link out of the competition is not followed either
    # (programs read original/; what a link points at outside is none of their business).
    own, root = out_dir.resolve(), data_dir.resolve()
    leave_out = set(replaced)

    def ignore(folder: str, names: list[str]) -> list[str]:
        paths = [(n, Path(folder) / n) for n in names]
        return [n for n, path in paths
                if path.resolve() == own or (path.is_symlink() and not path.resolve().is_relative_to(root))
                or path.relative_to(data_dir).as_posix() in leave_out]

    try:
        shutil.copytree(data_dir, target, copy_function=os.link, symlinks=False, ignore=ignore)
    except OSError:
        # Another filesystem (or one without hard links): a copy costs disk, never correctness.
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(data_dir, target, symlinks=False, ignore=ignore)
    return ORIGINAL
