"""The pretrained-network program for image competitions on a GPU: what its template imports.

An ImageNet-pretrained ResNet-18 (torchvision) turns each image of the flat folder's file column
into 512 numbers (the pooled last layer, averaged with the left-right mirror image); those join the
flat table's own features and the training library fits its cross-validated model on them, so the
program writes the contract's files (submission.csv, oof.csv, oof.npy, test_pred.npy) like every
template and takes part in the blend.

torch and torchvision are installed in the GPU image only (Dockerfile.gpu), which also stores the
network's weights inside the Python environment (``<sys.prefix>/share/torch``): training programs run
without network access, and the environment is what their sandbox can read. Elsewhere torchvision
downloads the weights where it may, and the program fails with one line where it may not.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from batch_agent.solver.competition import ColumnInfo, CompetitionProfile

log = logging.getLogger("image_network")

# (file paths, None where a row has no image) → one row of numbers per path.
Embed = Callable[[list[Path | None]], np.ndarray]
NETWORK_DATA = "network_data"
IMAGE_SIZE = 224
BATCH = 64


def main(config: dict[str, Any], argv: list[str], started: float | None = None, *, embed: Embed | None = None) -> int:
    """Embed the images, add the embeddings to the flat table, and train the configured model on both."""
    from batch_agent.solver import training

    parser = argparse.ArgumentParser(description="kaggle-solver image network program")
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--time-budget", type=float, default=600.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)

    profile = CompetitionProfile.model_validate(config["profile"])
    file_column = profile.shape.file_column
    if not file_column:
        raise SystemExit("this program needs an image competition's flat folder (no file column in the profile)")
    embed = embed or resnet18_embeddings
    data: Path = args.data
    frames: dict[str, pd.DataFrame] = {}
    names: list[str] = []
    for name, file in (("train", profile.train_file), ("test", profile.test_file)):
        frame = pd.read_csv(data / file, low_memory=False)
        paths = [None if not isinstance(v, str) or not v else data / v for v in frame[file_column]]
        vectors = embed(paths)
        log.info("%s: %d images embedded into %d numbers each", name, len(paths), vectors.shape[1])
        names = [f"resnet{i:03d}" for i in range(vectors.shape[1])]
        embedded = pd.DataFrame(vectors, columns=names)
        frames[name] = pd.concat([frame.drop(columns=[c for c in names if c in frame.columns]).reset_index(drop=True),
                                  embedded], axis=1)

    # The training library reads a data folder: the flat table plus the embeddings, written next to the program.
    folder = Path(NETWORK_DATA)
    folder.mkdir(exist_ok=True)
    frames["train"].to_csv(folder / profile.train_file, index=False, float_format="%.6g")
    frames["test"].to_csv(folder / profile.test_file, index=False, float_format="%.6g")
    shutil.copy(data / profile.sample_submission_file, folder / profile.sample_submission_file)
    n_rows = len(frames["train"]) + len(frames["test"])
    network_columns = [ColumnInfo(name=c, kind="numeric", dtype="float64", n_unique=n_rows, missing_fraction=0.0)
                       for c in names]
    features = [f for f in profile.features if f.name != file_column and f.name not in names] + network_columns
    widened = profile.model_copy(update={"features": features, "data_dir": str(folder.resolve())})
    training_config = {**config, "profile": widened.model_dump(mode="json")}
    return training.main(training_config, ["--data", str(folder), "--time-budget", str(args.time_budget)],
                         started=started)


def weights_home() -> Path:
    """Where the weights are looked for first: inside the Python environment, which sandboxes can read."""
    return Path(sys.prefix) / "share" / "torch"


def resnet18_embeddings(paths: list[Path | None]) -> np.ndarray:
    """512 numbers per image from ImageNet-pretrained ResNet-18; zeros where a file cannot be read."""
    os.environ.setdefault("TORCH_HOME", str(weights_home()))
    import torch
    import torchvision
    from PIL import Image

    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
        network = torchvision.models.resnet18(weights=weights)
    except Exception as exc:  # no stored weights and no network: one clear line, not a traceback
        raise SystemExit(f"cannot load the pretrained ResNet-18 weights: {exc}") from None
    network.fc = torch.nn.Identity()
    network.eval().to(device)
    preprocess = weights.transforms()
    out = np.zeros((len(paths), 512), dtype=np.float32)
    Image.MAX_IMAGE_PIXELS = 64_000_000
    for start in range(0, len(paths), BATCH):
        batch, rows = [], []
        for i in range(start, min(start + BATCH, len(paths))):
            path = paths[i]
            if path is None:
                continue
            try:
                with Image.open(path) as image:
                    batch.append(preprocess(image.convert("RGB")))
                rows.append(i)
            except Exception as exc:  # an unreadable image keeps its zero row
                log.info("cannot read %s: %s", path, exc)
        if not batch:
            continue
        with torch.no_grad():
            pixels = torch.stack(batch).to(device)
            vectors = (network(pixels) + network(torch.flip(pixels, dims=[3]))) / 2
        out[rows] = vectors.float().cpu().numpy()
    return out
