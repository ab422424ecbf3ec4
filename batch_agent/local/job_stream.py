"""The starter on one machine: a thread that reads the jobs table's emulated stream and sweeps on a timer.

In AWS the stream invokes the starter Lambda and an EventBridge schedule runs its
sweep; here one thread does both with the same functions
(``batch_agent.service.job_starter``), so the outbox path is the one deployed.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from batch_agent.local.batch_runner import lower_thread_priority
from batch_agent.service import job_starter
from batch_agent.service.job_starter import PipelineClients
from batch_agent.service.settings import StarterSettings

log = logging.getLogger(__name__)


class LocalStarter:
    """Polls the stream's one shard every ``poll_s`` and sweeps every ``sweep_interval_s``."""

    def __init__(
        self,
        clients: PipelineClients,
        streams: Any,
        stream_arn: str,
        settings: StarterSettings,
        *,
        sweep_interval_s: float,
        poll_s: float = 0.1,
    ) -> None:
        self.clients = clients
        self.streams = streams
        self.stream_arn = stream_arn
        self.settings = settings
        self.sweep_interval_s = sweep_interval_s
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-starter", daemon=True)

    def start(self) -> None:
        shard = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self._iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        # The outbox is background work: below the API's requests (AWS runs it in another Lambda).
        lower_thread_priority()
        next_sweep = time.monotonic() + self.sweep_interval_s
        while not self._stop.is_set():
            busy = False
            try:
                response = self.streams.get_records(ShardIterator=self._iterator, Limit=100)
                self._iterator = response["NextShardIterator"]
                if response["Records"]:
                    busy = True
                    job_starter.handle_stream_records(self.clients, self.settings, response["Records"])
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + self.sweep_interval_s
                    job_starter.sweep(self.clients, self.settings)
            except (ClientError, BotoCoreError) as exc:
                if self._stop.is_set():
                    return
                log.warning("the local starter failed a round: %s", exc)
            if not busy:
                self._stop.wait(self.poll_s)
