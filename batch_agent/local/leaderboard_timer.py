"""The local stack's stand-in for the EventBridge schedule: the leaderboard sync on a timer thread.

It runs ``run_sync`` in this process, so the Kaggle client goes wherever this
process points it (the real Kaggle, or the fake server the tests start). Runs
never overlap (one thread), like the Lambda's reserved concurrency of 1.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from batch_agent.local.batch_runner import lower_thread_priority
from batch_agent.service.leaderboard_sync import SyncReport

log = logging.getLogger(__name__)


class SyncTimer:
    """Calls ``run`` now and then every ``interval_s`` until stopped; a failed run is logged, not fatal."""

    def __init__(self, run: Callable[[], SyncReport], interval_s: float) -> None:
        self._run = run
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="leaderboard-sync", daemon=True)
        self.runs = 0
        self.last_report: SyncReport | None = None
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        lower_thread_priority()  # background work, below the API's requests
        while not self._stop.is_set():
            try:
                self.last_report = self._run()
                self.last_error = None
            except Exception as error:  # the schedule keeps going, as EventBridge would
                log.warning("leaderboard sync run failed: %s", error)
                self.last_error = str(error)
            self.runs += 1
            self._stop.wait(self.interval_s)
