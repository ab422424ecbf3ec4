"""Placeholder: this shape is not recognised yet (every competition of it is treated as one table)."""

from __future__ import annotations

from pathlib import Path

from batch_agent.solver.competition import DataShape


def flatten(data_dir: Path, out_dir: Path) -> tuple[Path, DataShape] | None:
    """None: the shape is not this module's (detection comes with the module's implementation)."""
    return None
