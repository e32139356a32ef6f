"""The JetStream stream that holds the log: looking it up, and creating or raising it.

Only ``engram serve`` and ``engram stream apply`` create or update the stream
(``apply_stream``); every other verb and the SDK only look it up (``lookup_stream``). Even an
apply never lowers a limit of an existing stream (replicas, duplicate window, max age, max
bytes, max message size) unless told to: it keeps the stronger value and logs the difference.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import structlog
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import APIError, NotFoundError

from engine.errors import ConfigurationError, StreamNotFoundError
from engine.settings import StreamSettings

__all__ = [
    "LIMIT_FIELDS",
    "KeptLimit",
    "StreamApplied",
    "StreamPlan",
    "apply_stream",
    "ensure_stream",
    "lookup_stream",
    "merge_stream_config",
    "stream_config",
]

log = structlog.get_logger(__name__)

LIMIT_FIELDS = ("num_replicas", "duplicate_window", "max_age", "max_bytes", "max_msg_size")
"""The limits an apply never lowers without ``allow_downgrade``."""
# For these, JetStream reads 0 and -1 (and an absent value) as "no limit": the largest.
_UNLIMITED_AT_OR_BELOW_ZERO = frozenset({"max_age", "max_bytes", "max_msg_size"})
_SERVER_DEFAULT_DUPLICATE_WINDOW_S = 120.0

Action = Literal["created", "updated", "unchanged"]


def stream_config(settings: StreamSettings) -> StreamConfig:
    """The JetStream configuration of the log as ``settings`` want it (pure)."""
    return StreamConfig(
        name=settings.name,
        subjects=list(settings.subjects),
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
        max_age=settings.max_age_s,
        max_bytes=settings.max_bytes,
        max_msg_size=settings.max_msg_size,
        # Purges are how compaction removes covered history; deletes of single events are not.
        deny_delete=True,
        deny_purge=False,
        allow_direct=True,
    )


@dataclass(frozen=True, slots=True)
class KeptLimit:
    """A limit whose wanted value was lower than the existing one, so the existing was kept.

    Values are as JetStream spells them (seconds for durations; 0 or -1: no limit).
    """

    field: str
    existing: float | None
    wanted: float | None

    def describe(self) -> str:
        have, want = _show(self.field, self.existing), _show(self.field, self.wanted)
        return f"{self.field}: existing {have}, wanted {want}"


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """What an apply sends: the merged configuration, whether it differs from the existing
    one, and the lower wanted limits it did not apply."""

    config: StreamConfig
    changed: bool
    kept: tuple[KeptLimit, ...]


@dataclass(frozen=True, slots=True)
class StreamApplied:
    """The outcome of ``apply_stream``."""

    info: StreamInfo
    action: Action
    kept: tuple[KeptLimit, ...] = ()


def _normalized(field: str, value: float | None) -> float:
    """A limit as a comparable number: "no limit" is infinity, an absent value its default."""
    if field == "num_replicas":
        return float(value or 1)
    if field == "duplicate_window":
        return float(value) if value else _SERVER_DEFAULT_DUPLICATE_WINDOW_S
    return math.inf if value is None or value <= 0 else float(value)


def _show(field: str, value: float | None) -> str:
    number = _normalized(field, value)
    if math.isinf(number):
        return "unlimited"
    text = f"{number:.0f}" if number.is_integer() else f"{number:g}"
    return f"{text} s" if field in ("duplicate_window", "max_age") else text


def merge_stream_config(
    existing: StreamConfig, wanted: StreamConfig, *, allow_downgrade: bool = False
) -> StreamPlan:
    """The configuration to apply over ``existing`` so that it matches ``wanted`` (pure).

    Subjects follow ``wanted`` when that only adds subjects; dropping one the stream captures
    (a changed subject prefix: the stream would stop storing what agents publish there, and
    readers of the new prefix would not see the history) raises ConfigurationError unless
    ``allow_downgrade``. Each limit in LIMIT_FIELDS takes the wanted value when it is at
    least as strong as the existing one ("no limit" counts as the largest); a lower wanted value
    is kept at the existing one and reported in ``kept``, unless ``allow_downgrade``. Every
    other field of ``existing`` (description, placement, compression ...) is left as it is.
    """
    updates: dict[str, object] = {}
    kept: list[KeptLimit] = []
    for field in LIMIT_FIELDS:
        have: float | None = getattr(existing, field)
        want: float | None = getattr(wanted, field)
        if _normalized(field, have) == _normalized(field, want):
            continue
        if not allow_downgrade and _normalized(field, want) < _normalized(field, have):
            kept.append(KeptLimit(field, have, want))
            continue
        updates[field] = want
    if list(existing.subjects or []) != list(wanted.subjects or []):
        dropped = sorted(set(existing.subjects or []) - set(wanted.subjects or []))
        if dropped and not allow_downgrade:
            raise ConfigurationError(
                f"stream {existing.name} captures {list(existing.subjects or [])}; these "
                f"settings would make it capture {list(wanted.subjects or [])}, dropping "
                f"{dropped}: events published there would no longer be stored, and the history "
                "on them would not be read. Check ENGRAM_STREAM__SUBJECT_PREFIX (and "
                "--stream), or pass --allow-stream-downgrade to change the subjects"
            )
        updates["subjects"] = list(wanted.subjects or [])
    merged = dataclasses.replace(existing, **updates) if updates else existing  # type: ignore[arg-type]
    return StreamPlan(config=merged, changed=bool(updates), kept=tuple(kept))


async def lookup_stream(
    js: JetStreamContext, settings: StreamSettings, *, where: str = "this NATS server"
) -> StreamInfo:
    """The stream's info; raises StreamNotFoundError saying how to create it (``where`` names
    the server, without credentials). Changes nothing."""
    try:
        return await js.stream_info(settings.name)
    except NotFoundError:
        raise StreamNotFoundError(
            f"stream {settings.name} does not exist on {where}: start `engram serve` "
            "or run `engram stream apply` (with the same --nats-url and --stream)"
        ) from None


async def apply_stream(
    js: JetStreamContext,
    settings: StreamSettings,
    *,
    allow_downgrade: bool = False,
    warn_kept: bool = True,
) -> StreamApplied:
    """Create the stream, or raise its limits and set its subjects to ``settings``.

    Idempotent. A limit of an existing stream is lowered only with ``allow_downgrade``;
    otherwise the stronger existing value stays, is reported in ``StreamApplied.kept`` and,
    with ``warn_kept`` (``engram serve``), one warning names each kept field (a caller that
    reports them itself, as ``engram stream apply`` does, passes False: said once).
    Raises ConfigurationError when the server refuses the stream.
    """
    wanted = stream_config(settings)
    try:
        current = await js.stream_info(settings.name)
    except NotFoundError:
        try:
            info = await js.add_stream(wanted)
        except APIError as exc:
            raise ConfigurationError(
                f"cannot create stream {settings.name} on {', '.join(settings.subjects)}: "
                f"{exc.description} (another stream on this server already captures those "
                "subjects: use its name with --stream / ENGRAM_STREAM__NAME)"
            ) from None
        log.info("stream created", stream=settings.name, subjects=list(settings.subjects))
        return StreamApplied(info, "created")
    plan = merge_stream_config(current.config, wanted, allow_downgrade=allow_downgrade)
    if plan.kept and warn_kept:
        log.warning(
            "stream limits kept: the settings ask for less than the stream has "
            "(engram serve --allow-stream-downgrade lowers them)",
            stream=settings.name,
            kept={
                k.field: {
                    "existing": _show(k.field, k.existing),
                    "wanted": _show(k.field, k.wanted),
                }
                for k in plan.kept
            },
        )
    if not plan.changed:
        return StreamApplied(current, "unchanged", plan.kept)
    if current.config.storage != StorageType.FILE:
        raise ConfigurationError(
            f"stream {settings.name} exists with {current.config.storage} storage; "
            "engram needs file"
        )
    try:
        info = await js.update_stream(plan.config)
    except APIError as exc:
        raise ConfigurationError(
            f"cannot update stream {settings.name}: {exc.description}"
        ) from None
    log.info(
        "stream updated",
        stream=settings.name,
        changed={
            f: {"from": getattr(current.config, f), "to": getattr(plan.config, f)}
            for f in (*LIMIT_FIELDS, "subjects")
            if getattr(current.config, f) != getattr(plan.config, f)
        },
    )
    return StreamApplied(info, "updated", plan.kept)


async def ensure_stream(
    js: JetStreamContext, settings: StreamSettings, *, allow_downgrade: bool = False
) -> StreamInfo:
    """``apply_stream``'s info: for ``engram serve``, the admin verb and tests only."""
    return (await apply_stream(js, settings, allow_downgrade=allow_downgrade)).info
