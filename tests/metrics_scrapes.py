"""Scraping an engine's metrics endpoint in a test: the exposition parsed, and samples by name and
labels."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from nats.aio.client import Client as NatsClient
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from engine.settings import Settings
from engram.app import Engine
from tests.engines import running

__all__ = ["Scrape", "metered", "scrape"]


@dataclass(frozen=True)
class Scrape:
    """One ``/metrics`` answer: the raw text and its families."""

    text: str
    families: list[Metric]

    def value(self, name: str, **labels: str) -> float:
        """The value of the sample ``name`` with exactly ``labels``; KeyError when absent."""
        for family in self.families:
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        raise KeyError(f"{name}{labels} not in the exposition")

    def values(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        """Every sample ``name``: its labels (sorted pairs) -> value."""
        return {
            tuple(sorted(s.labels.items())): float(s.value)
            for f in self.families
            for s in f.samples
            if s.name == name
        }

    def label_values(self, name: str, label: str) -> set[str]:
        return {dict(labels)[label] for labels in self.values(name)}


async def scrape(engine: Engine, path: str = "/metrics") -> Scrape:
    body = (await get(engine, path)).text
    return Scrape(body, list(text_string_to_metric_families(body)))


async def get(engine: Engine, path: str) -> httpx.Response:
    assert engine.metrics_endpoint is not None, "the engine serves no metrics"
    async with httpx.AsyncClient(timeout=10.0) as client:
        return await client.get(engine.metrics_endpoint.url + path)


@contextlib.asynccontextmanager
async def metered(
    settings: Settings, nc: NatsClient, data_dir: Path, **overrides: Any
) -> AsyncIterator[Engine]:
    """``running`` with the metrics endpoint on a free loopback port and sizes counted at every
    scrape (plus ``overrides`` of the settings), once its projections run."""
    update = {"metrics_listen": "127.0.0.1:0", "metrics_memory_refresh_s": 0.0, **overrides}
    async with running(settings.model_copy(update=update), nc, data_dir) as engine:
        async with asyncio.timeout(30):  # until the endpoint listens and the runners run
            while engine.metrics_endpoint is None or not engine.runners:
                await asyncio.sleep(0.01)
        yield engine
