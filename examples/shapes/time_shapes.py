"""Generated competitions of one shape (filled in with the shape's support)."""

from __future__ import annotations

from pathlib import Path


def make(out: Path) -> list[str]:
    """Write this shape's competitions under ``out``; their slugs."""
    return []
