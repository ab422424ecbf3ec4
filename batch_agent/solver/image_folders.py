"""Image competitions: a label CSV whose column names files in a folder of images.

Recognised when the train CSV has a column (the id, or one named like ``image``, ``file`` or
``path``) whose values name image files (with or without their extension) in a folder of the
competition (``train/``, ``images/``, ``train_images/``, or one level deeper), and the test
rows likewise (possibly in another folder; a competition without test.csv lists its test ids
in the sample submission). Zipped image folders are not read: the downloader unpacks the
competition's archive, not archives inside it.

The flat folder has one row per image: the CSV's other columns, ``image_file`` (the image's
path under ``original/``; programs read it, template models do not train on it) and features a
CPU can afford: grey pixels at 16×16 (8×8 for many images), a histogram of oriented gradients,
per-channel means, spreads and histograms, and the width, height, aspect and file size.

Images are untrusted input: a file that is not an image, a truncated one, one beyond
``MAX_IMAGE_PIXELS`` or a path that leaves the competition folder gives that row NaN features,
never an error. The cost is bounded: JPEGs decode at a reduced size, and once decoding has taken
``TIME_CAP_S`` seconds (or read ``MAX_TOTAL_PIXELS`` pixels) the remaining train images are left
out of the flat train.csv (every test image is always read).
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from batch_agent.solver.competition import DataShape
from batch_agent.solver.shapes import keep_original

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff")
# Column names that announce a file, besides the id column (checked first, in this order).
FILE_COLUMN_NAMES = ("image", "image_id", "image_name", "image_path", "img", "file", "filename", "file_name",
                     "path", "filepath", "file_path", "id")
# More columns than this and the images are a side input of a table (out of scope here).
MAX_COLUMNS = 100
# Rows of each CSV and files per folder looked at while deciding whether the competition is this shape.
SNIFF_ROWS = 200
MAX_LISTED_FILES = 600_000
# The share of sniffed values that must name an existing image.
MIN_MATCH = 0.9
# Beyond this a single image is refused (a decompression bomb or not worth reading on a CPU).
MAX_IMAGE_PIXELS = 64_000_000
# Decoding budget for the whole competition.
TIME_CAP_S = 240.0
MAX_TOTAL_PIXELS = 20_000_000_000
# Train images read whatever the budget says, so that there is always something to learn from.
MIN_TRAIN_IMAGES = 1_000
# Up to this many images the grey thumbnail is 16×16, beyond it 8×8: fewer columns for more rows (on 1,797
# digits, 8×8 trained the linear template in 30 s instead of 47 s at the same accuracy; README).
SMALL_COUNT = 1_000
HOG_SIZE = 32  # the grey image the gradients are taken on: 4×4 cells of 8×8 pixels
HOG_CELLS = 4
HOG_BINS = 9
COLOUR_SIZE = HOG_SIZE  # every feature comes from one 32×32 RGB version of the image
CHUNK = 512  # images decoded before their features are computed together
HIST_BINS = 8
FILE_COLUMN = "image_file"
PREFIX = "img_"


@dataclass
class _Side:
    """One CSV (train or test) and where its images are."""

    frame: pd.DataFrame
    column: str  # the column naming the files
    paths: list[Path | None]  # each row's image inside the competition folder, None when not found
    folders: Counter[str] = field(default_factory=Counter)


def flatten(data_dir: Path, out_dir: Path, *, time_cap: float = TIME_CAP_S,
            min_train: int = MIN_TRAIN_IMAGES) -> tuple[Path, DataShape] | None:
    """The flat folder of an image competition in ``out_dir``; None when ``data_dir`` is not one.

    ``time_cap`` (seconds of decoding) and ``min_train`` (train images read regardless) bound the cost.
    """
    data_dir = Path(data_dir)
    files = _csv_files(data_dir)
    if files is None:
        return None
    train_csv, test_csv, sample_csv = files
    index = _ImageIndex(data_dir)
    if not index.names:
        return None
    train_head = _read_head(train_csv)
    sample_head = _read_head(sample_csv)
    if train_head is None or sample_head is None or len(train_head.columns) > MAX_COLUMNS:
        return None
    test_head = _read_head(test_csv) if test_csv is not None else sample_head.iloc[:, :1]
    if test_head is None:
        return None
    train_column = _file_column(train_head, index, "train")
    test_column = _file_column(test_head, index, "test")
    if train_column is None or test_column is None:
        return None

    # File names and ids stay text as written ("00012" is not 12); the other columns are read as profiling
    # reads them.
    as_text = {str(sample_head.columns[0]), train_column, test_column}
    train = pd.read_csv(train_csv, low_memory=False, dtype={c: str for c in as_text if c in train_head.columns})
    sample = pd.read_csv(sample_csv, low_memory=False, dtype={c: str for c in as_text if c in sample_head.columns})
    test = (pd.read_csv(test_csv, low_memory=False, dtype={c: str for c in as_text if c in test_head.columns})
            if test_csv is not None else sample.iloc[:, :1].copy())
    sides = {
        "train": _Side(train, train_column, [index.find(v, "train") for v in train[train_column]]),
        "test": _Side(test, test_column, [index.find(v, "test") for v in test[test_column]]),
    }
    for side in sides.values():
        side.folders.update(str(p.parent.relative_to(data_dir)) for p in side.paths if p is not None)

    out_dir.mkdir(parents=True, exist_ok=True)
    # The flat train.csv holds the label CSV's columns: its original would hand programs the held-out labels.
    replaced = [p.name for p in (train_csv, test_csv) if p is not None]
    original = keep_original(data_dir, out_dir, replaced)
    n_images = sum(p is not None for side in sides.values() for p in side.paths)
    extractor = _Extractor(grid=16 if n_images <= SMALL_COUNT else 8, time_cap=time_cap, min_read=min_train)
    # Test images first: every one of them is needed for the submission; train images only as the budget allows.
    test_features = extractor.features([*sides["test"].paths], required=True)
    order = np.random.default_rng(0).permutation(len(train))
    train_features = extractor.features([sides["train"].paths[i] for i in order], required=False)
    train_features.index = order
    train_features = train_features.sort_index()
    read = train_features["_read"].to_numpy(dtype=bool) | ~np.array([p is not None for p in sides["train"].paths])
    colour = extractor.saw_colour

    keep_columns = set(sample.columns)
    kept = {c for side in sides.values() for c in side.frame.columns if c != side.column or c in keep_columns}
    file_column = FILE_COLUMN
    while file_column in kept:
        file_column += "_"
    frames: dict[str, pd.DataFrame] = {}
    for name, side, feats in (("train", sides["train"], train_features), ("test", sides["test"], test_features)):
        frame = side.frame.copy()
        if side.column not in keep_columns:
            frame = frame.drop(columns=[side.column])
        # Five decimals are plenty for these features and keep the CSVs (and their writing) small; the
        # CSV's own columns are written as they were read.
        feats = feats.drop(columns=["_read"]).reset_index(drop=True).astype(np.float64).round(5)
        if not colour:
            feats = feats.drop(columns=[c for c in feats.columns if c.startswith(f"{PREFIX}c")])
        rel = [f"{original}/{p.relative_to(data_dir).as_posix()}" if p is not None else "" for p in side.paths]
        frame = frame.drop(columns=[c for c in frame.columns if c in feats.columns])
        frame = pd.concat([frame.reset_index(drop=True), pd.DataFrame({file_column: rel}), feats], axis=1)
        frames[name] = frame
    skipped = int((~read).sum())
    frames["train"] = frames["train"][read].reset_index(drop=True)
    frames["train"].to_csv(out_dir / "train.csv", index=False)
    frames["test"].to_csv(out_dir / "test.csv", index=False)
    shutil.copyfile(sample_csv, out_dir / "sample_submission.csv")

    summary = _summary(sides, extractor, file_column, skipped, colour)
    description = _description(data_dir)
    (out_dir / "description.md").write_text(
        description.rstrip() + "\n\n## Images (as read by kaggle-solver)\n\n" + summary + "\n", encoding="utf-8"
    )
    return out_dir, DataShape(kind="images", original_dir=original, summary=summary, file_column=file_column,
                              replaced_files=replaced)


# ----------------------------------------------------------------------------- detection


def _csv_files(data_dir: Path) -> tuple[Path, Path | None, Path] | None:
    """train, test (None when the sample submission lists the test ids) and sample submission CSVs."""
    if not data_dir.is_dir():
        return None
    csvs = sorted(p for p in data_dir.iterdir() if p.is_file() and p.suffix.lower() == ".csv")

    def pick(exact: str, pattern: str) -> Path | None:
        for p in csvs:
            if p.name.lower() == exact:
                return p
        found = [p for p in csvs if re.search(pattern, p.name.lower())]
        return found[0] if len(found) == 1 else None

    train = pick("train.csv", r"^train|label")
    test = pick("test.csv", r"^test")
    sample = pick("sample_submission.csv", r"sample|submission")
    if train is None or sample is None or train in (test, sample):
        return None
    return train, test, sample


def _read_head(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path, nrows=SNIFF_ROWS, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, csv.Error):
        return None


class _ImageIndex:
    """The image files in the competition's sub-folders (two levels deep), found by name or stem."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.root = data_dir.resolve()
        self.names: dict[str, Path] = {}  # "folder/name.png" and "folder/name" → path
        self.bare: dict[str, list[Path]] = {}  # name and stem → every path that has it
        listed = 0
        folders = [p for p in sorted(data_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]
        folders += [q for p in folders for q in sorted(p.iterdir()) if q.is_dir() and not q.name.startswith(".")]
        for folder in folders:
            with os.scandir(folder) as entries:
                for entry in entries:
                    listed += 1
                    if listed > MAX_LISTED_FILES:
                        return
                    suffix = os.path.splitext(entry.name)[1]
                    if suffix.lower() not in IMAGE_SUFFIXES or not entry.is_file():
                        continue
                    path = folder / entry.name
                    rel = path.relative_to(data_dir).as_posix()
                    self.names[rel] = self.names[rel[: -len(suffix)]] = path
                    for key in {entry.name, entry.name[: -len(suffix)]}:
                        self.bare.setdefault(key, []).append(path)

    def find(self, value: object, prefer: str = "") -> Path | None:
        """The image a CSV cell names: a relative path, or a file name or stem.

        A name found in several folders is the one under a folder whose name contains ``prefer``
        ("train", "test"), when exactly one does.
        """
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        text = str(value).strip().replace("\\", "/")
        while text.startswith("./"):
            text = text[2:]
        if not text:
            return None
        found = self.names.get(text) or self._bare(text, prefer)
        if found is None and re.fullmatch(r"-?\d+\.0", text):
            found = self._bare(text[:-2], prefer)  # an integer id that pandas read as a float
        if found is None:
            return None
        # A symbolic link may point anywhere: only files inside the competition folder are read.
        resolved = found.resolve()
        return found if resolved.is_relative_to(self.root) and resolved.is_file() else None

    def _bare(self, name: str, prefer: str) -> Path | None:
        paths = self.bare.get(name, [])
        if len(paths) > 1 and prefer:
            paths = [p for p in paths if prefer in p.parent.relative_to(self.data_dir).as_posix().lower()]
        return paths[0] if len(paths) == 1 else None


def _file_column(head: pd.DataFrame, index: _ImageIndex, prefer: str) -> str | None:
    """The column whose distinct values name images (most of the sniffed rows), preferring named candidates."""
    by_lower = {str(c).strip().lower(): str(c) for c in head.columns}
    ordered = [by_lower[n] for n in FILE_COLUMN_NAMES if n in by_lower]
    ordered += [str(c) for c in head.columns if str(c) not in ordered]
    for column in ordered:
        values = [v for v in head[column].tolist() if str(v).strip()]
        # One image per row: a column of a few repeated names (classes with an icon each) is not it.
        if not values or len(set(values)) < MIN_MATCH * len(values):
            continue
        hits = sum(index.find(v, prefer) is not None for v in values)
        if hits >= MIN_MATCH * len(values):
            return column
    return None


# ----------------------------------------------------------------------------- features


class _Extractor:
    """Per-image features under one time and pixel budget.

    Each image is decoded once into a 32×32 RGB array; the features are computed for a chunk of such
    arrays at a time (numpy on a stack of images costs far less than per-image calls).
    """

    def __init__(self, *, grid: int, time_cap: float, min_read: int) -> None:
        self.grid = grid
        self.min_read = min_read
        self.deadline = time.monotonic() + time_cap
        self.total_pixels = 0
        self.saw_colour = False
        self.failed = 0
        self.sizes: list[tuple[int, int]] = []
        self.modes: Counter[str] = Counter()
        self.formats: Counter[str] = Counter()

    @property
    def columns(self) -> list[str]:
        names = [f"{PREFIX}px{i:03d}" for i in range(self.grid * self.grid)]
        names += [f"{PREFIX}hog{i:03d}" for i in range(HOG_CELLS * HOG_CELLS * HOG_BINS)]
        names += [f"{PREFIX}hog_all{i}" for i in range(HOG_BINS)]
        names += [f"{PREFIX}grey_mean", f"{PREFIX}grey_std", f"{PREFIX}edges"]
        for channel in "rgb":
            names += [f"{PREFIX}c{channel}_mean", f"{PREFIX}c{channel}_std"]
            names += [f"{PREFIX}c{channel}_hist{i}" for i in range(HIST_BINS)]
        names += [f"{PREFIX}csat_mean"]
        names += [f"{PREFIX}width", f"{PREFIX}height", f"{PREFIX}aspect", f"{PREFIX}bytes"]
        return names

    def features(self, paths: list[Path | None], *, required: bool) -> pd.DataFrame:
        """One row per path (NaN where unreadable); ``_read`` is False where the budget ran out first."""
        columns = self.columns
        rows = np.full((len(paths), len(columns)), np.nan, dtype=np.float32)
        read = np.ones(len(paths), dtype=bool)
        n_read = 0
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and twice that and refuses beyond: refuse at the limit.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
            try:
                for start in range(0, len(paths), CHUNK):
                    chunk = range(start, min(start + CHUNK, len(paths)))
                    pixels = np.zeros((len(chunk), COLOUR_SIZE, COLOUR_SIZE, 3), dtype=np.uint8)
                    meta = np.zeros((len(chunk), 4), dtype=np.float64)
                    decoded = np.zeros(len(chunk), dtype=bool)
                    stop = False
                    for j, i in enumerate(chunk):
                        path = paths[i]
                        if path is None:
                            continue
                        over = time.monotonic() > self.deadline or self.total_pixels > MAX_TOTAL_PIXELS
                        if not required and over and n_read >= self.min_read:
                            read[i:] = False
                            stop = True
                            break
                        n_read += 1
                        decoded[j] = self._decode(path, pixels[j], meta[j])
                    if decoded.any():
                        rows[np.asarray(chunk)[decoded]] = self._vectors(pixels[decoded], meta[decoded])
                    if stop:
                        break
            finally:
                Image.MAX_IMAGE_PIXELS = previous
        frame = pd.DataFrame(rows, columns=columns)
        frame["_read"] = read
        return frame

    def _decode(self, path: Path, pixels: np.ndarray, meta: np.ndarray) -> bool:
        """Fill ``pixels`` (32×32 RGB) and ``meta`` (width, height, aspect, bytes); False if unreadable."""
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise ValueError("image too large")
                self.modes[image.mode] += 1
                self.formats[str(image.format)] += 1
                if len(self.sizes) < 1000:
                    self.sizes.append((width, height))
                if image.format == "JPEG":
                    # Decode at a reduced scale (1/2 .. 1/8): the thumbnails need no more.
                    image.draft(None, (2 * HOG_SIZE, 2 * HOG_SIZE))
                self.total_pixels += image.size[0] * image.size[1]
                small = _as_rgb(image).resize((COLOUR_SIZE, COLOUR_SIZE), Image.Resampling.BILINEAR,
                                              reducing_gap=2.0)
                pixels[:] = np.asarray(small, dtype=np.uint8)
            meta[:] = (width, height, width / max(height, 1), path.stat().st_size)
        except Exception as exc:  # untrusted files: any decoder failure means "no features", never a crash
            self.failed += 1
            log.debug("cannot read %s: %s", path, exc)
            return False
        return True

    def _vectors(self, pixels: np.ndarray, meta: np.ndarray) -> np.ndarray:
        """The feature rows of a stack of 32×32 RGB images, in the order of ``columns``."""
        n = len(pixels)
        rgb = pixels.astype(np.float32) / 255.0
        grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (n, 32, 32), as Pillow's "L"
        block = COLOUR_SIZE // self.grid
        thumb = grey.reshape(n, self.grid, block, self.grid, block).mean(axis=(2, 4)).reshape(n, -1)
        cells, whole, edges = _hog(grey)
        parts = [thumb, cells, whole, grey.mean(axis=(1, 2))[:, None], grey.std(axis=(1, 2))[:, None], edges[:, None]]
        levels = (pixels // (256 // HIST_BINS)).reshape(n, -1, 3).astype(np.int64)
        offsets = (np.arange(n) * HIST_BINS)[:, None]
        for c in range(3):
            channel = rgb[..., c].reshape(n, -1)
            hist = np.bincount((levels[:, :, c] + offsets).ravel(), minlength=n * HIST_BINS).reshape(n, HIST_BINS)
            parts += [channel.mean(axis=1)[:, None], channel.std(axis=1)[:, None], hist / channel.shape[1]]
        saturation = rgb.max(axis=3) - rgb.min(axis=3)
        # Colour columns are written only when some image has colour (grey files saved as RGB have none).
        self.saw_colour = self.saw_colour or float(saturation.max()) > 2 / 255
        parts += [saturation.mean(axis=(1, 2))[:, None], meta]
        return np.concatenate([np.asarray(p, dtype=np.float32) for p in parts], axis=1)


def _as_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of any mode; 16-bit and float images are stretched to their own range."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
        return Image.fromarray(np.nan_to_num(scaled).astype(np.uint8), mode="L").convert("RGB")
    return image.convert("RGB")


def _hog(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histograms of oriented gradients of a stack of 32×32 grey images.

    Per image: 4×4 cells × 9 unsigned orientations, L2-normalised; the orientation histogram of the
    whole image (summing to 1); and the mean gradient magnitude (edge density).
    """
    n = len(grey)
    gx = np.zeros_like(grey)
    gy = np.zeros_like(grey)
    gx[:, :, 1:-1] = grey[:, :, 2:] - grey[:, :, :-2]
    gy[:, 1:-1, :] = grey[:, 2:, :] - grey[:, :-2, :]
    magnitude = np.hypot(gx, gy)
    angle = np.mod(np.degrees(np.arctan2(gy, gx)), 180.0)
    bins = np.minimum((angle / (180.0 / HOG_BINS)).astype(np.int64), HOG_BINS - 1)
    weighted = np.zeros((*grey.shape, HOG_BINS), dtype=np.float32)
    np.put_along_axis(weighted, bins[..., None], magnitude[..., None], axis=3)
    cell = HOG_SIZE // HOG_CELLS
    cells = weighted.reshape(n, HOG_CELLS, cell, HOG_CELLS, cell, HOG_BINS).sum(axis=(2, 4)).reshape(n, -1)
    norms = np.sqrt((cells**2).sum(axis=1, keepdims=True))
    whole = weighted.sum(axis=(1, 2))
    totals = whole.sum(axis=1, keepdims=True)
    return (np.divide(cells, norms, out=np.zeros_like(cells), where=norms > 0),
            np.divide(whole, totals, out=np.zeros_like(whole), where=totals > 0),
            magnitude.mean(axis=(1, 2)))


# ----------------------------------------------------------------------------- summary


def _summary(sides: dict[str, _Side], extractor: _Extractor, file_column: str, skipped: int, colour: bool) -> str:
    lines = []
    for name, side in sides.items():
        found = sum(p is not None for p in side.paths)
        folders = ", ".join(f"{f}/ ({n})" for f, n in side.folders.most_common(3)) or "none"
        lines.append(f"{name}: {len(side.frame)} rows, column '{side.column}' names the image; "
                     f"{found} images found in {folders}")
    sizes = Counter(f"{w}×{h}" for w, h in extractor.sizes)
    lines.append("image sizes (of the first read): " + ", ".join(f"{s} ({n})" for s, n in sizes.most_common(4)))
    lines.append("modes: " + ", ".join(f"{m} ({n})" for m, n in extractor.modes.most_common())
                 + "; formats: " + ", ".join(f"{f} ({n})" for f, n in extractor.formats.most_common()))
    features = (f"flat columns: {file_column} (the image's path in the flat folder), {PREFIX}px* "
                f"({extractor.grid}×{extractor.grid} grey pixels), {PREFIX}hog* (4×4 cells × 9 orientations)")
    features += f", {PREFIX}c* (per-channel means, spreads, histograms)" if colour else ""
    lines.append(features + f", {PREFIX}width/height/aspect/bytes")
    if extractor.failed:
        lines.append(f"{extractor.failed} images could not be read (their features are empty)")
    if skipped:
        lines.append(f"{skipped} train images were left out: decoding reached its time or pixel budget")
    return "\n".join(f"- {line}" for line in lines)


def _description(data_dir: Path) -> str:
    for path in [data_dir / "description.md", *sorted(data_dir.glob("*.md")), *sorted(data_dir.glob("*.txt"))]:
        if path.is_file():
            return path.read_text(encoding="utf-8", errors="replace")
    return ""
