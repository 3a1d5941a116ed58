"""
A scaled rebuild shared by several worker processes, one core each.

One Python process applies a rebuild at the speed of one core. With
``--workers N`` each of N spawned processes rebuilds the partitions whose
number is its index modulo N, into the same new version, storing its own
partitions' offsets. This process watches their progress from those
offsets, then, once every worker is done, applies the tail itself, switches
and drops as a single rebuild does. A conversation lives in one partition,
so its events, and its dead letters, stay with one worker and in order.
While workers run, the new version's ``history`` position is the highest
any of them reached; it is exact again once they are all done.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from multiprocessing.process import BaseProcess

from confluent_kafka import Consumer, TopicPartition

from infra.readmodels.scaled import (
    BATCH_SIZE,
    KAFKA_TIMEOUT,
    CassandraVersions,
    ScaledRebuild,
    offset_name,
)
from infra.settings import Settings

WATCH_SECONDS = 0.25


def work(
    settings: Settings, share: tuple[int, int], batch_size: int, version: int
) -> None:
    """
    One worker: rebuild its share of the partitions, then exit.
    """
    parent = os.getppid()
    job = ScaledRebuild(settings, batch_size=batch_size, share=share, version=version)
    try:
        # A worker whose parent died stops; running the rebuild again resumes.
        while os.getppid() == parent and job.step():
            pass
    finally:
        job.close()


class ParallelRebuild:
    """
    The ``Rebuild`` of ``run_rebuild``, its bulk applied by worker processes.
    """

    name = "history"

    def __init__(
        self, settings: Settings, *, workers: int, batch_size: int = BATCH_SIZE
    ) -> None:
        self._settings, self._workers = settings, workers
        self._batch_size = batch_size
        # The tail after the workers, read by one rebuild in this process.
        self._final: ScaledRebuild | None = None
        self._versions = CassandraVersions(settings)
        entry = self._versions.catalog.entry(self.name)
        self.old_version = entry.current
        self.version = entry.building or 1 + max(
            [entry.current, *self._versions.catalog.versions(self._versions.base)]
        )
        self._store = self._versions.open(self.version)
        self._versions.catalog.start_rebuild(self.name, self.version)
        self._watermarks = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"{settings.kafka_group_prefix}-rebuild",
            }
        )
        topic = self._watermarks.list_topics(
            settings.kafka_topic, timeout=KAFKA_TIMEOUT
        ).topics[settings.kafka_topic]
        self._partitions = list(topic.partitions)
        self._running: list[BaseProcess] = []
        self._started = False
        self._seen = self.done()

    def done(self) -> int:
        return sum(self._store.position(offset_name(p)) for p in self._partitions)

    def head(self) -> int:
        ends = 0
        for p in self._partitions:
            place = TopicPartition(self._settings.kafka_topic, p)
            ends += self._watermarks.get_watermark_offsets(
                place, timeout=KAFKA_TIMEOUT
            )[1]
        return ends

    def step(self) -> int:
        if not self._started:
            self._start()
        if self._running:
            return self._watch()
        return self._tail().step()

    def switch(self) -> None:
        self._tail().switch()

    def drop_old(self) -> None:
        self._tail().drop_old()

    def close(self) -> None:
        for process in self._running:
            process.terminate()
        if self._final is not None:
            self._final.close()
        self._watermarks.close()
        self._versions.close()

    def _tail(self) -> ScaledRebuild:
        if self._final is None:
            self._final = ScaledRebuild(
                self._settings, batch_size=self._batch_size, version=self.version
            )
        return self._final

    def _start(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        for index in range(self._workers):
            share = (index, self._workers)
            process = spawn.Process(
                target=work,
                args=(self._settings, share, self._batch_size, self.version),
            )
            process.start()
            self._running.append(process)
        self._started = True

    def _watch(self) -> int:
        """
        Wait for progress; return the events applied since the last call.
        """
        while True:
            time.sleep(WATCH_SECONDS)
            for process in [p for p in self._running if not p.is_alive()]:
                self._running.remove(process)
                if process.exitcode != 0:
                    msg = f"a rebuild worker exited with {process.exitcode}"
                    raise RuntimeError(msg)
            done = self.done()
            applied, self._seen = done - self._seen, done
            if applied or not self._running:
                return applied
