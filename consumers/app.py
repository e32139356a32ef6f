"""The running engine: every projection live on its own durable consumer, plus the query
service. ``engram serve`` is this, on the embedded server or a given one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from nats.aio.client import Client as NatsClient

from consumers.deadletters import DeadLetterPublisher
from consumers.instance import durable_name, instance_id
from consumers.queries import QueryDispatcher, build_query_broker
from consumers.queries.learning_verbs import register_learning_verbs
from consumers.runner import ProjectionRunner, RunnerSettings
from engine.settings import Settings
from engine.stream import EventLog
from engine.stream.append import Appender
from projections.base import Projection
from projections.learning import LearnerProjection
from projections.tables import TablesProjection, TableStore

__all__ = ["Engine", "ProjectionSet", "open_projections"]

log = structlog.get_logger(__name__)


@dataclass
class ProjectionSet:
    """Every projection of an engine over one data directory."""

    store: TableStore
    tables: TablesProjection
    learner: LearnerProjection

    @property
    def all(self) -> list[Projection]:
        return [self.tables, self.learner]

    def close(self) -> None:
        for projection in self.all:
            projection.close()


def open_projections(settings: Settings) -> ProjectionSet:
    """Every projection of the engine over the data directory (the replay uses the same)."""
    store = TableStore.open(settings.data_dir)
    return ProjectionSet(
        store=store,
        tables=TablesProjection(store),
        learner=LearnerProjection(settings.data_dir / "patterns"),
    )


class Engine:
    """Projections + dead letters + query service over one NATS connection."""

    def __init__(
        self,
        settings: Settings,
        nc: NatsClient,
        url: str,
        *,
        runner_settings: RunnerSettings | None = None,
    ) -> None:
        self.settings = settings
        self.nc = nc
        self.url = url
        self.log = EventLog(nc, settings.stream)
        self.runner_settings = runner_settings or RunnerSettings()
        self.set = open_projections(settings)
        self.projections = self.set.all
        self.instance = instance_id(settings.data_dir)
        self.dispatcher = QueryDispatcher(self.set.store.reader)
        self.dispatcher.register("status", self.status)
        register_learning_verbs(self.dispatcher, self.set.learner)
        self.runners: list[ProjectionRunner] = []

    async def status(self, _payload: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Stream state and, per projection, its checkpoint and lag."""
        state = await self.log.state()
        projections = {}
        for runner in self.runners:
            projections[runner.projection.name] = {
                "checkpoint": runner.checkpoint,
                "last_sequence": state.last_sequence,
                "lag": max(0, state.last_sequence - runner.checkpoint),
                "durable": runner.durable,
            }
        return {
            "stream": state.name,
            "messages": state.messages,
            "bytes": state.bytes,
            "first_sequence": state.first_sequence,
            "last_sequence": state.last_sequence,
            "projections": projections,
            "instance": self.instance,
        }

    def _announcing(self, projection: Projection) -> dict[str, Any]:
        if projection is self.set.learner:
            appender = Appender(
                self.nc, self.settings.stream.name, timeout_s=self.settings.nats.request_timeout_s
            )
            return {"announcer": self.set.learner, "appender": appender}
        return {}

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop consuming and close the stores."""
        await self.log.ensure()
        dead_letters = DeadLetterPublisher(self.log.js, self.settings.stream)
        await dead_letters.ensure()
        self.runners = [
            ProjectionRunner(
                self.log.js,
                self.settings.stream.name,
                projection,
                durable=durable_name(self.instance, projection.name),
                settings=self.runner_settings,
                dead_letters=dead_letters,
                **self._announcing(projection),
            )
            for projection in self.projections
        ]
        broker = build_query_broker(self.dispatcher, self.url, self.settings.nats)
        await broker.start()
        tasks = [asyncio.create_task(r.run(stop), name=r.projection.name) for r in self.runners]
        log.info(
            "engine running",
            projections=[p.name for p in self.projections],
            instance=self.instance,
            queries=self.dispatcher.verbs,
        )
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await broker.stop()
            self.set.close()
