"""`kaggle-solver serve`: the emulated stack and the API on loopback until interrupted."""


from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path

from batch_agent.local.stack import EmulatedStack, StackOptions

# ---------------------------------------------------------------- `kaggle-solver serve`


def serve(
    *,
    api_port: int = 8000,
    moto_port: int = 5000,
    data_port: int = 5001,
    work_dir: Path = Path("/tmp/kaggle-solver-stack"),
    local_cache_dir: Path | None = None,
    api_key: str | None = None,
    api_workers: int = 1,
    batch_slots: int = 2,
    fresh: bool = False,
    leaderboard_interval_s: float | None = 300.0,
    ready: Callable[[EmulatedStack, str], None] | None = None,
) -> None:
    """Run the emulated stack and the API until interrupted (Ctrl-C / SIGTERM)."""
    if fresh:
        shutil.rmtree(work_dir, ignore_errors=True)
    options = StackOptions(
        port=moto_port,
        data_port=data_port,
        work_dir=work_dir,
        local_cache_dir=local_cache_dir,
        max_batch_jobs=batch_slots,
        leaderboard_sync_interval_s=leaderboard_interval_s,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmulatedStack(options) as stack, stack.api_server(api_port, api_key=api_key, workers=api_workers) as base:
        if ready:
            ready(stack, base)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
