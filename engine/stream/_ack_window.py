"""Pipelined JetStream publishing: a window of messages in flight, acks matched by reply subject.

nats-py's ``js.publish_async`` spends about twice the CPU per message of this (a semaphore wait,
a nuid token, a future with a done-callback and a PubAck dataclass for every message), which made
it the larger part of a bulk append. Here a batch has one reply subscription: message ``i`` asks
for its ack on ``<inbox>.<i>`` and the subscription's callback writes the outcome into slot ``i``.
The publisher only waits (and so only yields to the event loop) when the window is full, so the
messages of a window leave in a few socket writes.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header
from nats.js.errors import APIError, NoStreamResponseError

__all__ = ["Ack", "AckRouter", "AckWindow", "parse_ack"]

Ack = tuple[int, bool]
"""(stream sequence, duplicate): a stored message."""

NO_RESPONDERS = "503"


def parse_ack(msg: Msg) -> Ack | Exception:
    """What a reply to a JetStream publish says: the stored sequence, or the error."""
    if not msg.data and msg.headers and msg.headers.get(Header.STATUS) == NO_RESPONDERS:
        return NoStreamResponseError()
    try:
        reply = json.loads(msg.data.decode())  # from str: a third cheaper than from bytes
        error = reply.get("error")
        if error is not None:
            return APIError(
                code=error.get("code"),
                err_code=error.get("err_code"),
                description=error.get("description"),
            )
        return int(reply["seq"]), reply.get("duplicate") is True
    except (ValueError, TypeError, KeyError, AttributeError):
        return ValueError(f"unreadable JetStream ack: {msg.data[:200]!r}")


class AckWindow:
    """Publishes the messages of one batch with at most ``max_in_flight`` unacknowledged.

    Use as an async context manager (it holds the batch's reply subscription). ``outcomes[i]``
    is the Ack or error of message ``i`` once its reply came, else None; a reply arriving after
    the block is dropped.
    """

    def __init__(self, nc: NatsClient, size: int, *, max_in_flight: int, timeout_s: float) -> None:
        self.outcomes: list[Ack | Exception | None] = [None] * size
        self._nc = nc
        self._max_in_flight = max(1, max_in_flight)
        self._timeout_s = timeout_s
        self._prefix = nc.new_inbox() + "."
        self._sent = 0
        self._acked = 0
        self._resume_at = 0
        self._progress = asyncio.Event()
        self._sub: Subscription | None = None

    async def __aenter__(self) -> AckWindow:
        # SUB leaves before the first PUB on the same connection: no reply can be missed.
        self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            await sub.unsubscribe()

    async def publish(self, index: int, subject: str, body: bytes, headers: dict[str, str]) -> bool:
        """Publish message ``index``, first waiting for room when the window is full.

        Returns False, having sent nothing, when the window stayed full for ``timeout_s``
        without a single ack (the server has stalled). Raises what ``nc.publish`` raises.
        """
        if self._sent - self._acked >= self._max_in_flight and not await self._wait_until(
            self._max_in_flight // 2
        ):
            return False
        await self._nc.publish(subject, body, reply=self._prefix + str(index), headers=headers)
        self._sent += 1
        return True

    async def drain(self) -> bool:
        """Wait for the ack of every message sent; False after ``timeout_s`` without one."""
        return await self._wait_until(0)

    async def _wait_until(self, in_flight: int) -> bool:
        # Woken once, when the count is reached, not per ack: waking per ack would cost an
        # event-loop round per message, the very cost this module exists to avoid.
        while self._sent - self._acked > in_flight:
            acked = self._acked
            self._resume_at = in_flight
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), self._timeout_s)
            except TimeoutError:
                if self._acked == acked:
                    return False
        return True

    async def _on_reply(self, msg: Msg) -> None:
        try:
            index = int(msg.subject[len(self._prefix) :])
        except ValueError:
            return
        if not 0 <= index < len(self.outcomes) or self.outcomes[index] is not None:
            return
        self.outcomes[index] = parse_ack(msg)
        self._acked += 1
        if self._sent - self._acked <= self._resume_at:
            self._progress.set()


class AckRouter:
    """Single publishes from many concurrent callers, their acks over one reply subscription.

    What ``AckWindow`` does for one batch, for the life of a connection: message ``n`` asks for
    its ack on ``<inbox>.<n>`` of one long-lived subscription, whose callback resolves the
    caller's future. Compared with nats-py's ``js.publish`` (a request: a token, a future and a
    ``wait_for`` timer per message), a caller pays a future and a dict entry; timeouts are swept
    by one task that runs only while acks are awaited. At most ``max_in_flight`` acks are
    awaited at once: further callers wait for room (the bounded window ``append_many`` uses).
    """

    def __init__(self, nc: NatsClient, *, max_in_flight: int, timeout_s: float) -> None:
        self._nc = nc
        self._max_in_flight = max(1, max_in_flight)
        self._timeout_s = timeout_s
        self._prefix = ""
        self._sub: Subscription | None = None
        self._opening = asyncio.Lock()
        self._waiting: dict[int, asyncio.Future[Ack | Exception]] = {}
        self._deadlines: deque[tuple[float, int]] = deque()
        self._next = 0
        self._room = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None

    async def publish(self, subject: str, body: bytes, headers: dict[str, str]) -> Ack:
        """Publish one message and wait for its ack; raises the ack's error, TimeoutError
        when none came within ``timeout_s``, or what ``nc.publish`` raises."""
        if self._sub is None:
            await self._open()
        loop = asyncio.get_running_loop()
        if len(self._waiting) >= self._max_in_flight:
            await self._wait_for_room(loop.time() + self._timeout_s)
        number = self._next
        self._next += 1
        future: asyncio.Future[Ack | Exception] = loop.create_future()
        self._waiting[number] = future
        self._deadlines.append((loop.time() + self._timeout_s, number))
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep(), name="engram-ack-timeouts")
        try:
            await self._nc.publish(subject, body, reply=self._prefix + str(number), headers=headers)
        except BaseException:
            self._waiting.pop(number, None)
            raise
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _open(self) -> None:
        async with self._opening:
            if self._sub is None:
                self._prefix = self._nc.new_inbox() + "."
                self._sub = await self._nc.subscribe(self._prefix + "*", cb=self._on_reply)

    async def _wait_for_room(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while len(self._waiting) >= self._max_in_flight:
            self._room.clear()
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError("no room in the ack window")
            try:
                async with asyncio.timeout(left):
                    await self._room.wait()
            except TimeoutError:
                continue

    async def _on_reply(self, msg: Msg) -> None:
        try:
            number = int(msg.subject[len(self._prefix) :])
        except ValueError:
            return
        future = self._waiting.pop(number, None)
        if future is not None and not future.done():
            future.set_result(parse_ack(msg))
        if len(self._waiting) < self._max_in_flight:
            self._room.set()

    async def _sweep(self) -> None:
        """Fail the callers whose ack is overdue; ends once no ack is awaited."""
        loop = asyncio.get_running_loop()
        try:
            while self._waiting:
                await asyncio.sleep(min(0.25, self._timeout_s / 4))
                now = loop.time()
                while self._deadlines and self._deadlines[0][0] <= now:
                    _, number = self._deadlines.popleft()
                    future = self._waiting.pop(number, None)
                    if future is not None and not future.done():
                        future.set_result(TimeoutError())
                while self._deadlines and self._deadlines[0][1] not in self._waiting:
                    self._deadlines.popleft()  # answered long ago
                if len(self._waiting) < self._max_in_flight:
                    self._room.set()
            self._deadlines.clear()  # every one of them was answered
        finally:
            self._sweeper = None
