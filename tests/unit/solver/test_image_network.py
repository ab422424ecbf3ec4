"""The pretrained-network program for image competitions: when it is offered, what it renders, what it writes.

torch is not installed here (the GPU image has it): the network itself is replaced by a stand-in
embedding, so these tests check the program around it, not ResNet-18's features.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from batch_agent.solver.competition import ColumnInfo, CompetitionProfile, DataShape
from batch_agent.solver.image_network import main
from batch_agent.solver.plan import AttemptResult
from batch_agent.solver.profiling import profile_competition
from batch_agent.solver.shapes import flatten_competition
from batch_agent.solver.templates import NETWORK_SPEC, TemplateAuthor, _config_of, network_program

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
    assert "from batch_agent.solver.image_network import main" in program.code
    config = _config_of(program)
    assert config is not None and config["network"] == "resnet18"
    assert config["profile"]["shape"]["file_column"] == "image_file"
    # A failed network program is not "repaired" into a plain table model under its name.
    failure = AttemptResult(number=1, program=program.name, origin="template", ok=False, seconds=3.0,
                            reason="exited with code 1", workdir="/tmp/x")
    assert author.repair(profile(IMAGES), program, failure) is None


def test_table_templates_of_an_image_competition_leave_the_file_column_out_of_the_features() -> None:
    author = TemplateAuthor()
    programs = author.draft(profile(IMAGES), author.plan(profile(IMAGES), time_limit=600))
    for program in programs:
        config = _config_of(program)
        assert config is not None
        assert [f["name"] for f in config["profile"]["features"]] == ["img_px000"]


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
    config = _config_of(program)
    assert config is not None

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(config, ["--data", str(flat), "--time-budget", "60"], embed=Oracle(labels)) == 0
    submission = pd.read_csv(work / "submission.csv")
    oof = pd.read_csv(work / "oof.csv")
    assert list(submission["id"]) == list(range(60, 80)) and list(oof["id"]) == list(range(60))
    assert submission["y"].between(0, 1).all()
    # Only the embeddings carry the class: the model trained on them.
    # (The flat table's image columns are all constant here: without the embeddings there is nothing to learn.)
    assert roc_auc_score(labels[60:], submission["y"]) > 0.9
    widened = pd.read_csv(work / "network_data" / "train.csv")
    assert {"resnet000", "resnet001", "resnet002"} <= set(widened.columns)
