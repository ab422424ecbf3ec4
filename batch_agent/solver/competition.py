"""What the agent knows about a competition: its files, columns, task, target and metric.

These models travel between pipeline steps as JSON (profile.json in S3, Lambda
payloads), so they hold plain data only. Stdlib + pydantic: Lambdas import them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

TaskType = Literal["binary", "multiclass", "regression", "multitarget_regression", "multilabel"]
# What each non-id submission column holds:
#   label               the predicted class label (one target column)
#   probability         P(positive class) or a score ranked by the metric (binary, multilabel)
#   class_probabilities one column per class, each row a distribution (multiclass)
#   value               a real-valued prediction (regression)
#   ranked_labels       space-separated top-k labels (MAP@K)
PredictionFormat = Literal["label", "probability", "class_probabilities", "value", "ranked_labels"]
ColumnKind = Literal["numeric", "categorical", "text", "date", "constant"]


class ColumnInfo(BaseModel):
    name: str
    kind: ColumnKind
    dtype: str
    n_unique: int
    missing_fraction: float


ShapeKind = Literal["table", "images", "multi_table", "time_series"]


class DataShape(BaseModel):
    """What the competition's data looks like beyond train/test tables (solver.shapes detects it).

    For every shape but "table" the solver writes a flat folder (one row per train/test id, the shape's
    features as columns) that the templates train on; ``original_dir`` keeps the files as downloaded
    (inside the flat folder, so sandboxed programs can read them too).
    """

    kind: ShapeKind = "table"
    original_dir: str = ""  # relative to the flat folder; "" for a plain table
    # Human-readable facts for the plan and the model's prompt: file layout, image sizes, related
    # tables' keys and row counts, the time range of train and test.
    summary: str = ""
    # Validation that matches the shape: folds ordered by this column (never train on the future) ...
    time_column: str | None = None
    # ... or grouped so that rows of one entity never sit on both sides of a split.
    group_column: str | None = None
    # The downloaded tables the flat ones replace (train and test CSVs), left out of original/: a copy of the
    # train labels there would hand a program the labels of the rows the hidden holdout moves to its test.csv.
    replaced_files: list[str] = Field(default_factory=list)
    # Images: the flat table's column holding each row's file (relative to the flat folder, under
    # original_dir): programs read the image from it, template models never treat it as a feature.
    file_column: str | None = None


class CompetitionProfile(BaseModel):
    """Everything later steps need to train and to check a submission."""

    title: str = ""
    data_dir: str
    train_file: str = "train.csv"
    test_file: str = "test.csv"
    sample_submission_file: str = "sample_submission.csv"
    id_column: str
    target_columns: list[str]
    submission_columns: list[str]
    task: TaskType
    prediction_format: PredictionFormat
    # Class labels as they appear in train.csv (as strings), in submission-column
    # order for class_probabilities; None for regression.
    classes: list[str] | None = None
    metric: str
    metric_source: Literal["option", "description", "kaggle", "default"] = "description"
    map_k: int | None = None
    n_train: int
    n_test: int
    # Regression: the smallest target value in train.csv (None when unknown), so the plan knows before any
    # program runs whether the target can go on the log scale at all (log1p needs values above -1).
    target_min: float | None = None
    features: list[ColumnInfo] = Field(default_factory=list)
    description: str = ""
    extra_files: list[str] = Field(default_factory=list)
    # A few KB about the values and the machine (solver.data_preview), made where the data is, so
    # steps that run without the files (Lambdas) can still show it to the model.
    preview: str = ""
    shape: DataShape = Field(default_factory=DataShape)
