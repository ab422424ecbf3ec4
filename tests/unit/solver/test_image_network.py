"""The pretrained-network program for image competitions: when it is offered, what it renders, what it writes.

torch is not installed here (the GPU image has it): the network itself is replaced by a stand-in
embedding, so these tests check the program around it, not ResNet-18's features.
"""

from __future__ import annotations

import ast
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from batch_agent.solver import image_network, toolkit
from batch_agent.solver.competition import ColumnInfo, CompetitionProfile, DataShape
from batch_agent.solver.plan import AttemptResult
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.shapes import flatten_competition
from batch_agent.solver.templates import NETWORK_SPEC, TemplateAuthor, network_program, spec_of, write_program

IMAGES = DataShape(kind="images", original_dir="original", summary="- 40 images", file_column="image_file")


def profile(shape: DataShape) -> CompetitionProfile:
    return CompetitionProfile(
        data_dir="/data", id_column="id", target_columns=["y"], submission_columns=["id", "y"], task="binary",
        prediction_format="probability", classes=["0", "1"], metric="roc_auc", n_train=1000, n_test=100,
        features=[ColumnInfo(name="image_file", kind="categorical", dtype="object", n_unique=1100,
                             missing_fraction=0.0),
                  ColumnInfo(name="img_px000", kind="numeric", dtype="float64", n_unique=50, missing_fraction=0.0)],
        shape=shape,
    )


def drafts(shape: DataShape, compute: str) -> list[str]:
    author = TemplateAuthor()
    plan = author.plan(profile(shape), time_limit=600)
    plan.compute = compute  # type: ignore[assignment]
    return [p.name for p in author.draft(profile(shape), plan)]


def test_the_network_program_is_offered_first_on_gpu_plans_for_images_only() -> None:
    assert drafts(IMAGES, "gpu")[0] == NETWORK_SPEC.name
    assert NETWORK_SPEC.name not in drafts(IMAGES, "cpu")
    assert NETWORK_SPEC.name not in drafts(DataShape(), "gpu")
    assert NETWORK_SPEC.name not in drafts(DataShape(kind="time_series"), "gpu")


def test_the_network_program_renders_as_a_valid_program_calling_the_network_library() -> None:
    author = TemplateAuthor()
    plan = author.plan(profile(IMAGES), time_limit=600)
    plan.compute = "gpu"
    program = network_program(profile(IMAGES), plan)
    assert program is not None
    ast.parse(program.code)
    assert "from batch_agent.solver import image_network, toolkit" in program.code
    assert "X, X_test = image_network.with_embeddings(comp, X, X_test)" in program.code
    found = spec_of(program.code)
    assert found is not None and found[0].family == "linear" and found[0].name == NETWORK_SPEC.name
    # A failed network program is not "repaired" into a plain table model under its name.
    failure = AttemptResult(number=1, program=program.name, origin="template", ok=False, seconds=3.0,
                            reason="exited with code 1", workdir="/tmp/x")
    assert author.repair(profile(IMAGES), program, failure) is None


def test_programs_of_an_image_competition_leave_the_file_column_out_of_the_features(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pd.DataFrame({"id": [1, 2, 3, 4, 5, 6], "image_file": [f"original/train/{i}.png" for i in range(6)],
                  "img_px000": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6], "y": [0, 1, 0, 1, 0, 1]}).to_csv(
        data / "train.csv", index=False)
    pd.DataFrame({"id": [7, 8], "image_file": ["original/test/7.png", "original/test/8.png"],
                  "img_px000": [0.1, 0.9]}).to_csv(data / "test.csv", index=False)
    (tmp_path / "profile.json").write_text(profile(IMAGES).model_dump_json())
    comp = toolkit.load(data, n_folds=2, profile_path=tmp_path / "profile.json")
    assert [f.name for f in comp.profile.features] == ["img_px000"]
    assert "image_file" in comp.train.columns  # still there for programs that open the files
    X, _ = toolkit.tree_features(comp, native_categorical=True)
    assert list(X.columns) == ["img_px000"]


class Oracle:
    """A stand-in for the network that knows each image's class (the pictures are all alike)."""

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.calls = 0

    def __call__(self, paths: list[Path | None]) -> np.ndarray:
        self.calls += 1
        rng = np.random.default_rng(self.calls)
        out = rng.normal(0, 1, (len(paths), 3))
        for i, path in enumerate(paths):
            assert path is not None and path.is_file()
            out[i, 0] += 3.0 * self.labels[int(path.stem)]
        return out


def test_the_network_program_writes_the_contract_files_with_the_embeddings_as_features(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    for sub in ("train", "test"):
        (data / sub).mkdir(parents=True)
    # One picture for all: the class is only in what the stand-in network says about each file.
    labels = rng.integers(0, 2, size=80)
    for i in range(80):
        Image.new("RGB", (8, 8), (90, 120, 30)).save(data / ("train" if i < 60 else "test") / f"{i}.png")
    pd.DataFrame({"id": range(60), "y": labels[:60]}).to_csv(data / "train.csv", index=False)
    pd.DataFrame({"id": range(60, 80)}).to_csv(data / "test.csv", index=False)
    pd.DataFrame({"id": range(60, 80), "y": 0.5}).to_csv(data / "sample_submission.csv", index=False)
    (data / "description.md").write_text("# Red or blue\n\n## Evaluation\n\nScored by area under the ROC curve.\n")
    flat, shape = flatten_competition(data, tmp_path / "flat")
    competition = profile_competition(flat)
    competition.shape = shape
    author = TemplateAuthor()
    plan = author.plan(competition, time_limit=600)
    plan.compute = "gpu"
    program = network_program(competition, plan)
    assert program is not None
    work = tmp_path / "work"
    path = write_program(work, program, competition)
    monkeypatch.chdir(work)
    monkeypatch.setattr(image_network, "resnet18_embeddings", Oracle(labels))
    monkeypatch.setattr(sys, "argv", [str(path), "--data", str(flat), "--time-budget", "60"])
    runpy.run_path(str(path), run_name="__main__")
    submission = pd.read_csv(work / "submission.csv")
    oof = pd.read_csv(work / "oof.csv")
    assert list(submission["id"]) == list(range(60, 80)) and list(oof["id"]) == list(range(60))
    assert submission["y"].between(0, 1).all()
    # Only the embeddings carry the class: the model trained on them.
    # (The flat table's image columns are all constant here: without the embeddings there is nothing to learn.)
    assert roc_auc_score(labels[60:], submission["y"]) > 0.9

