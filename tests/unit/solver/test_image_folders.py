"""Image competitions: which folders are recognised, what the flat folder holds, and hostile image files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from batch_agent.solver import image_folders
from batch_agent.solver.image_folders import FILE_COLUMN, flatten
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.shapes import flatten_competition

REPO = Path(__file__).resolve().parents[3]
SHARED = Path("/work/shared/competitions")
DESCRIPTION = "# Pictures\n\nPredict the label.\n\n## Evaluation\n\nSubmissions are scored on accuracy.\n"


def picture(rng: np.random.Generator, label: int, size: int = 20, colour: bool = False) -> Image.Image:
    """A bright bar, vertical for label 1 and horizontal for 0, on noise."""
    pixels = rng.integers(0, 60, size=(size, size)).astype(np.uint8)
    middle = slice(size // 2 - 2, size // 2 + 2)
    if label:
        pixels[:, middle] = 230
    else:
        pixels[middle, :] = 230
    image = Image.fromarray(pixels, mode="L")
    if colour:
        rgb = np.stack([pixels, pixels // 2, 255 - pixels], axis=2).astype(np.uint8)
        image = Image.fromarray(rgb, mode="RGB")
    return image


def competition(folder: Path, n_train: int = 30, n_test: int = 10, *, colour: bool = False) -> Path:
    """train.csv id,label + train/<id>.png, test.csv id + test/<id>.png, and a sample submission."""
    rng = np.random.default_rng(0)
    for sub in ("train", "test"):
        (folder / sub).mkdir(parents=True)
    labels = rng.integers(0, 2, size=n_train + n_test)
    ids = [f"{i:05d}" for i in range(n_train + n_test)]  # leading zeros: the file names are text
    for i, (name, label) in enumerate(zip(ids, labels, strict=True)):
        sub = "train" if i < n_train else "test"
        picture(rng, int(label), colour=colour).save(folder / sub / f"{name}.png")
    pd.DataFrame({"id": ids[:n_train], "label": labels[:n_train]}).to_csv(folder / "train.csv", index=False)
    pd.DataFrame({"id": ids[n_train:]}).to_csv(folder / "test.csv", index=False)
    pd.DataFrame({"id": ids[n_train:], "label": 0}).to_csv(folder / "sample_submission.csv", index=False)
    (folder / "description.md").write_text(DESCRIPTION)
    return folder


def test_a_label_csv_naming_png_files_becomes_a_flat_table_of_image_features(tmp_path: Path) -> None:
    data = competition(tmp_path / "data")
    found = flatten_competition(data, tmp_path / "flat")
    flat, shape = found
    assert flat == tmp_path / "flat" and shape.kind == "images"
    assert shape.file_column == FILE_COLUMN and shape.original_dir == "original"
    train = pd.read_csv(flat / "train.csv", dtype={"id": str})
    test = pd.read_csv(flat / "test.csv", dtype={"id": str})
    assert len(train) == 30 and len(test) == 10
    assert list(train["id"][:2]) == ["00000", "00001"]  # ids keep their leading zeros
    assert test["id"][0] == "00030"
    assert (flat / "sample_submission.csv").read_bytes() == (data / "sample_submission.csv").read_bytes()
    assert train[FILE_COLUMN][0] == "original/train/00000.png"
    assert (flat / train[FILE_COLUMN][0]).is_file()
    pixels = [c for c in train.columns if c.startswith("img_px")]
    assert len(pixels) == 16 * 16
    assert {"img_width", "img_height", "img_aspect", "img_bytes", "img_hog000"} <= set(train.columns)
    assert not any(c.startswith("img_c") for c in train.columns)  # grey pictures: no colour columns
    assert train["img_width"].eq(20).all() and not train[pixels].isna().any().any()
    assert "30 rows" in shape.summary and "20×20" in shape.summary and "L (40)" in shape.summary
    assert "Images (as read by kaggle-solver)" in (flat / "description.md").read_text()
    # The flat folder is an ordinary competition for the profiler, metric included.
    profile = profile_competition(flat)
    assert profile.metric == "accuracy" and profile.id_column == "id" and profile.target_columns == ["label"]


def test_the_features_separate_the_classes_the_pictures_show(tmp_path: Path) -> None:
    flat, _ = flatten_competition(competition(tmp_path / "data"), tmp_path / "flat")
    train = pd.read_csv(flat / "train.csv")
    hog = train[[c for c in train.columns if c.startswith("img_hog_all")]].to_numpy()
    # A vertical bar has horizontal gradients (orientation bin 0), a horizontal bar vertical ones (bin 4).
    vertical = hog[:, 0] > hog[:, 4]
    assert (vertical == train["label"].astype(bool)).mean() > 0.95


def test_colour_images_get_channel_statistics(tmp_path: Path) -> None:
    flat, shape = flatten_competition(competition(tmp_path / "data", colour=True), tmp_path / "flat")
    train = pd.read_csv(flat / "train.csv")
    assert {"img_cr_mean", "img_cb_std", "img_cg_hist7", "img_csat_mean"} <= set(train.columns)
    assert train["img_cr_mean"].gt(train["img_cg_mean"]).all()
    assert "per-channel" in shape.summary


def test_nested_folders_a_file_column_without_extension_and_test_ids_only_in_the_sample(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(1)
    (data / "images" / "train_images").mkdir(parents=True)
    (data / "images" / "test_images").mkdir(parents=True)
    for i in range(12):
        picture(rng, i % 2).convert("RGB").save(data / "images" / "train_images" / f"a{i}.jpg")
    for i in range(5):
        picture(rng, i % 2).convert("RGB").save(data / "images" / "test_images" / f"b{i}.jpg")
    pd.DataFrame({"image_name": [f"a{i}" for i in range(12)], "weather": ["sun", "rain"] * 6,
                  "target": [i % 2 for i in range(12)]}).to_csv(data / "train_labels.csv", index=False)
    pd.DataFrame({"image_name": [f"b{i}" for i in range(5)], "target": 0.5}).to_csv(
        data / "sample_submission.csv", index=False)
    found = flatten(data, tmp_path / "flat")
    assert found is not None
    flat, shape = found
    train, test = pd.read_csv(flat / "train.csv"), pd.read_csv(flat / "test.csv")
    assert list(test["image_name"]) == [f"b{i}" for i in range(5)]
    assert test[FILE_COLUMN][0] == "original/images/test_images/b0.jpg"
    assert list(train["weather"][:2]) == ["sun", "rain"]  # the CSV's other columns stay
    assert "images/train_images/ (12)" in shape.summary and "JPEG" in shape.summary


def test_a_separate_file_column_is_replaced_by_the_path_column(tmp_path: Path) -> None:
    data = competition(tmp_path / "data")
    train = pd.read_csv(data / "train.csv", dtype={"id": str})
    train["file"] = "train/" + train["id"] + ".png"
    train["id"] = range(100, 130)
    train.to_csv(data / "train.csv", index=False)
    test = pd.read_csv(data / "test.csv", dtype={"id": str})
    test["file"] = "test/" + test["id"] + ".png"
    test["id"] = range(200, 210)
    test.to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": range(200, 210), "label": 0}).to_csv(data / "sample_submission.csv", index=False)
    flat, shape = flatten_competition(data, tmp_path / "flat")
    columns = pd.read_csv(flat / "train.csv").columns
    assert shape.kind == "images" and "file" not in columns and FILE_COLUMN in columns and "id" in columns


@pytest.mark.parametrize("name", ["titanic-survival", "ames-house-prices", "seattle-weather",
                                  "telco-customer-churn"])
def test_the_shared_table_competitions_stay_tables(name: str, tmp_path: Path) -> None:
    folder = SHARED / name / "public"
    if not folder.is_dir():
        pytest.skip(f"{folder} is not on this machine")
    assert flatten(folder, tmp_path / "flat") is None
    assert not (tmp_path / "flat").exists()


def test_a_table_with_an_unrelated_picture_folder_stays_a_table(tmp_path: Path) -> None:
    example = REPO / "examples" / "breast-cancer-diagnosis"
    assert flatten(example, tmp_path / "flat") is None
    data = tmp_path / "data"
    data.mkdir()
    for file in example.iterdir():
        (data / file.name).write_bytes(file.read_bytes())
    (data / "figures").mkdir()
    for i in range(5):
        picture(np.random.default_rng(i), 1).save(data / "figures" / f"{i}.png")  # named like small ids
    assert flatten(data, tmp_path / "flat") is None


def test_unreadable_hostile_and_outside_files_give_empty_features_not_errors(tmp_path: Path) -> None:
    data = competition(tmp_path / "data")
    (data / "train" / "00000.png").write_bytes(b"not an image at all")
    whole = (data / "train" / "00001.png").read_bytes()
    (data / "train" / "00001.png").write_bytes(whole[: len(whole) // 2])  # truncated
    # A decompression bomb: 9,000 × 9,000 pixels (beyond MAX_IMAGE_PIXELS) in a few kilobytes.
    Image.new("1", (9000, 9000)).save(data / "train" / "00002.png")
    assert (data / "train" / "00002.png").stat().st_size < 100_000
    # A link to a picture outside the competition folder must not be read.
    outside = tmp_path / "secret.png"
    picture(np.random.default_rng(5), 1).save(outside)
    (data / "train" / "00003.png").unlink()
    os.symlink(outside, data / "train" / "00003.png")
    # A path that climbs out of the folder names nothing.
    train = pd.read_csv(data / "train.csv", dtype={"id": str})
    train.loc[4, "id"] = "../../secret"
    train.to_csv(data / "train.csv", index=False)

    flat, shape = flatten_competition(data, tmp_path / "flat")
    features = pd.read_csv(flat / "train.csv")
    empty = features["img_px000"].isna()
    assert list(np.flatnonzero(empty)) == [0, 1, 2, 3, 4]
    assert features["img_px000"].notna().sum() == 25
    assert "could not be read" in shape.summary


def test_the_decoding_budget_leaves_out_train_images_beyond_the_minimum_but_never_test_images(
        tmp_path: Path) -> None:
    data = competition(tmp_path / "data", n_train=30, n_test=10)
    found = flatten(data, tmp_path / "flat", time_cap=0.0, min_train=12)
    assert found is not None
    flat, shape = found
    train, test = pd.read_csv(flat / "train.csv"), pd.read_csv(flat / "test.csv")
    assert len(train) == 12 and not train["img_px000"].isna().any()
    assert len(test) == 10 and not test["img_px000"].isna().any()
    assert "18 train images were left out" in shape.summary


def test_hog_orientations_follow_the_edges() -> None:
    vertical_edge = np.zeros((32, 32), dtype=np.float32)
    vertical_edge[:, 16:] = 1.0
    uniform = np.full((32, 32), 0.5, dtype=np.float32)
    cells, whole, edges = image_folders._hog(np.stack([vertical_edge, vertical_edge.T, uniform]))
    assert cells.shape == (3, 4 * 4 * 9) and abs(float(np.linalg.norm(cells[0])) - 1.0) < 1e-5
    # A vertical edge has horizontal gradients (orientation bin 0), a horizontal one vertical gradients (bin 4).
    assert whole[0, 0] == pytest.approx(1.0) and whole[1, 4] == pytest.approx(1.0)
    assert edges[0] > 0 and edges[1] > 0
    assert not cells[2].any() and not whole[2].any() and edges[2] == 0


def test_a_column_of_a_few_repeated_names_that_match_pictures_stays_a_table(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "icons").mkdir(parents=True)
    for name in ("cat", "dog"):
        picture(np.random.default_rng(0), 1).save(data / "icons" / f"{name}.png")
    rows = pd.DataFrame({"id": range(40), "animal": ["cat", "dog"] * 20, "y": [0, 1] * 20})
    rows.iloc[:30].to_csv(data / "train.csv", index=False)
    rows.iloc[30:].drop(columns="y").to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": range(30, 40), "y": 0}).to_csv(data / "sample_submission.csv", index=False)
    assert flatten(data, tmp_path / "flat") is None


@pytest.mark.parametrize(("mode", "suffix"), [
    ("I;16", ".png"), ("P", ".png"), ("RGBA", ".png"), ("LA", ".png"), ("1", ".bmp"), ("CMYK", ".jpg"),
    ("L", ".jpg"), ("RGB", ".gif"), ("RGB", ".tif"), ("F", ".tif"),
])
def test_every_common_mode_and_format_gives_finite_features(tmp_path: Path, mode: str, suffix: str) -> None:
    data = competition(tmp_path / "data", n_train=6, n_test=2)
    rng = np.random.default_rng(3)
    for path in sorted((data / "train").iterdir()) + sorted((data / "test").iterdir()):
        base = picture(rng, 1, size=24, colour=True)
        image = base.convert("I;16") if mode == "I;16" else base.convert(mode)
        path.unlink()
        image.save(path.with_suffix(suffix))
    flat, shape = flatten_competition(data, tmp_path / "flat")
    features = pd.read_csv(flat / "train.csv")
    columns = [c for c in features.columns if c.startswith("img_")]
    assert np.isfinite(features[columns].to_numpy()).all(), shape.summary
    assert features["img_width"].eq(24).all()


def test_a_work_folder_inside_the_competition_is_not_copied_into_itself(tmp_path: Path) -> None:
    data = competition(tmp_path / "data")
    out = data / ".kaggle-solver" / "run-1" / "flat"  # `kaggle-solver run .` from inside the competition
    flat, shape = flatten_competition(data, out)
    assert shape.kind == "images"
    assert (flat / "original" / "train" / "00000.png").is_file()
    assert not (flat / "original" / ".kaggle-solver" / "run-1" / "flat").exists()
    # A second run beside the first copies the first one's folder once, never itself.
    flat, shape = flatten_competition(data, data / ".kaggle-solver" / "run-2" / "flat")
    assert shape.kind == "images" and not (flat / "original" / ".kaggle-solver" / "run-2" / "flat").exists()


def test_the_same_names_in_train_and_test_folders_resolve_to_each_sides_own_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(2)
    for sub, n in (("train_images", 20), ("test_images", 8)):
        (data / sub).mkdir(parents=True)
        for i in range(n):
            picture(rng, i % 2, size=12 if sub == "train_images" else 16).save(data / sub / f"{i}.png")
    pd.DataFrame({"id": range(20), "label": [i % 2 for i in range(20)]}).to_csv(data / "train.csv", index=False)
    pd.DataFrame({"id": range(8)}).to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": range(8), "label": 0}).to_csv(data / "sample_submission.csv", index=False)
    flat, shape = flatten_competition(data, tmp_path / "flat")
    train, test = pd.read_csv(flat / "train.csv"), pd.read_csv(flat / "test.csv")
    assert shape.kind == "images"
    assert train[FILE_COLUMN][3] == "original/train_images/3.png" and train["img_width"].eq(12).all()
    assert test[FILE_COLUMN][3] == "original/test_images/3.png" and test["img_width"].eq(16).all()


def test_links_out_of_the_competition_are_not_copied_into_the_flat_folder(tmp_path: Path) -> None:
    data = competition(tmp_path / "data")
    secret = tmp_path / "secret.txt"
    secret.write_text("not for programs")
    os.symlink(secret, data / "notes.txt")
    os.symlink(tmp_path, data / "train" / "parent")
    os.symlink(data / "description.md", data / "about.md")  # a link inside the competition is fine
    flat, _ = flatten_competition(data, tmp_path / "flat")
    original = flat / "original"
    assert not (original / "notes.txt").exists() and not (original / "train" / "parent").exists()
    assert (original / "about.md").read_text() == DESCRIPTION


def test_the_label_csv_is_not_among_the_original_files_programs_can_read(tmp_path: Path) -> None:
    flat, shape = flatten_competition(competition(tmp_path / "data"), tmp_path / "flat")
    # A copy of the labels beside the flat tables would hand a program the hidden holdout's answers.
    assert sorted(shape.replaced_files) == ["test.csv", "train.csv"]
    assert not (flat / "original" / "train.csv").exists() and not (flat / "original" / "test.csv").exists()
    assert (flat / "original" / "train" / "00000.png").is_file()
    assert (flat / "original" / "sample_submission.csv").is_file()


def test_the_run_s_time_budget_caps_the_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[float] = []
    real = image_folders.flatten

    def spy(data: Path, out: Path, *, time_cap: float = image_folders.TIME_CAP_S) -> object:
        seen.append(time_cap)
        return real(data, out, time_cap=time_cap)

    monkeypatch.setattr(image_folders, "flatten", spy)
    data = competition(tmp_path / "data")
    flatten_competition(data, tmp_path / "a", time_budget=12.5)
    flatten_competition(data, tmp_path / "b", time_budget=10_000)
    flatten_competition(data, tmp_path / "c")
    assert seen == [12.5, image_folders.TIME_CAP_S, image_folders.TIME_CAP_S]
