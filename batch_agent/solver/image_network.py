"""The pretrained-network program for image competitions on a GPU: what its template imports.

An ImageNet-pretrained ResNet-18 (torchvision) turns each image of the flat folder's file column
into 512 numbers (the pooled last layer, averaged with the left-right mirror image); those join the
toolkit's features of the flat table and the toolkit fits its cross-validated model on them, so the
program writes the contract's files (submission.csv, oof.csv, oof.npy, test_pred.npy) like every
template and takes part in the blend.

torch and torchvision are installed in the GPU image only (Dockerfile.gpu), which also stores the
network's weights inside the Python environment (``<sys.prefix>/share/torch``): training programs run
without network access, and the environment is what their sandbox can read. Elsewhere torchvision
downloads the weights where it may, and the program fails with one line where it may not.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from batch_agent.solver.toolkit import Competition

log = logging.getLogger("image_network")

# (file paths, None where a row has no image) → one row of numbers per path.
Embed = Callable[[list[Path | None]], np.ndarray]
IMAGE_SIZE = 224
BATCH = 64


def with_embeddings(comp: Competition, X: Any, X_test: Any, *, embed: Embed | None = None) -> tuple[Any, Any]:
    """``X`` and ``X_test`` (the toolkit's features of comp.train and comp.test) with each image's embedding added.

    The embeddings are standardised (their scale means nothing to a linear model) and appended as
    columns: sparse matrices stay sparse, frames get columns ``resnet000``…, arrays are stacked.
    """
    file_column = comp.profile.shape.file_column
    if not file_column:
        raise SystemExit("this program needs an image competition's flat folder (no file column in the profile)")
    embed = embed or resnet18_embeddings
    vectors = []
    for name, frame in (("train", comp.train), ("test", comp.test)):
        paths = [None if not isinstance(v, str) or not v else comp.data_dir / v for v in frame[file_column]]
        vectors.append(np.asarray(embed(paths), dtype=np.float64))
        log.info("%s: %d images embedded into %d numbers each", name, len(paths), vectors[-1].shape[1])
    both = np.vstack(vectors)
    mean, std = both.mean(axis=0), both.std(axis=0)
    std[std == 0] = 1.0
    train, test = ((v - mean) / std for v in vectors)
    return _append(X, train), _append(X_test, test)


def _append(X: Any, columns: np.ndarray) -> Any:
    from scipy import sparse

    if sparse.issparse(X):
        return sparse.hstack([X, sparse.csr_matrix(columns)], format="csr")
    if isinstance(X, pd.DataFrame):
        names = [f"resnet{i:03d}" for i in range(columns.shape[1])]
        return pd.concat([X.reset_index(drop=True), pd.DataFrame(columns, columns=names)], axis=1)
    return np.hstack([np.asarray(X, dtype=np.float64), columns])


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
