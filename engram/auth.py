"""Per-tenant NATS permissions: the users of a secured broker and what each may do.

``plan_users`` (pure) derives, from the tenants, the stream, the two subject prefixes, the event
registry and the verb catalogue, the users a nats-server needs:

- ``engine``: everything (``engram serve`` owns the stream, its neighbours and every subject).
- ``operator``: every operator verb (``status``, ``checkpoints``, ``sql``, ``export``) on every
  tenant's subjects and on the operator subjects; reading the stream and the dead letters
  (replay, tail, dead-letters), purging the stream and deleting a tenant's dead letters
  (compact, purge), the snapshot bucket of every namespace (``<stream>_SNAPSHOTS``) and those
  of the namespace sets it is given (``<stream>_SNAPSHOTS_<set key>``: a subject wildcard is a
  whole token, so no pattern covers every set), and the two lifecycle events its commands
  publish (``snapshot.created``, ``namespace.purged``, signed with the engine key). No agent
  event, no learner-derived event, no stream changes.
- ``agent-<ns>`` per tenant: publish only the agent event types on ``<prefix>.<type>.<ns>``, ask
  only the tenant's own non-operator verbs on ``<service>.query.<ns>.<verb>``; hear only the
  tenant's derived events on ``<prefix>.<type>.<ns>`` and its own inbox ``_INBOX_<ns>.>``. No
  JetStream API at all: a stream's info lists its subjects (every tenant's), so MemoryClient
  goes on without looking the stream up when the broker refuses it.

``render_authorization`` (pure) writes them as a nats-server ``authorization { users = [...] }``
block (an include file); ``new_credentials`` gives each user a random password and its bcrypt
hash (what the server stores); ``credentials_env`` is a user's env file for the SDK and the CLI.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import bcrypt

from consumers.tenants import set_key
from engine.errors import UsageError
from engine.events.envelope import NAMESPACE_PATTERN
from engine.events.registry import EVENT_TYPES, EventSpec
from engine.stream.engine_key import BUCKET as ENGINE_KEY_BUCKET
from engine.subjects import (
    DEFAULT_EVENT_PREFIX,
    DEFAULT_INBOX_PREFIX,
    DEFAULT_SERVICE_PREFIX,
    EventSubjects,
    ServiceSubjects,
    tenant_inbox_prefix,
)
from engine.verbs import CATALOGUE, VerbSpec

__all__ = [
    "BCRYPT_ROUNDS",
    "DEFAULT_INBOX_PREFIX",
    "LIFECYCLE_TYPES",
    "OPERATOR_INBOX_PREFIX",
    "TENANT_HEARD_TYPES",
    "Credential",
    "NatsUser",
    "Permissions",
    "agent_user",
    "bcrypt_hash",
    "check_tenants",
    "credentials_env",
    "new_credentials",
    "plan_users",
    "render_authorization",
    "tenant_inbox_prefix",
]

OPERATOR_INBOX_PREFIX = "_INBOX.operator"
"""The operator's inbox prefix: two tokens, so no tenant's ``_INBOX_<ns>`` can be it (a tenant
may well be called ``operator``), and apart from the engine's ``_INBOX.<nuid>`` inboxes."""

TENANT_HEARD_TYPES: frozenset[str] = frozenset(
    {
        "pattern.learned",
        "session.compacted",
        "context.suggested",
        "pattern.matched",
        "memory.recalled",
    }
)
"""Derived types a tenant's agent may hear on its own subject: each is derived from that
tenant's events only (its learned patterns, its compacted sessions, what its own queries
suggested, matched and recalled), carried in its namespace."""

LIFECYCLE_TYPES: frozenset[str] = frozenset({"snapshot.created", "namespace.purged"})
"""Derived types about the stream rather than one tenant's memory: published by the engine and
by the operator's commands (``engram snapshot``, ``engram purge``), heard by no tenant. A
snapshot's sequence counts every tenant's events (a tenant hearing it would learn how busy the
others are), and a purge is the operator's business."""

BCRYPT_ROUNDS = 11
"""bcrypt cost of the stored hashes: ``nats server passwd``'s default. nats-server checks the
hash at each connect (about 0.1 s at 11 on one core)."""

Role = Literal["engine", "operator", "agent"]

_NAMESPACE = re.compile(NAMESPACE_PATTERN)


@dataclass(frozen=True, slots=True)
class Permissions:
    """A user's subject permissions; deny wins over allow (nats-server's rule)."""

    publish_allow: tuple[str, ...]
    publish_deny: tuple[str, ...] = ()
    subscribe_allow: tuple[str, ...] = ()
    subscribe_deny: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class NatsUser:
    """One user of the broker: who it is for, its permissions and the inbox prefix its clients
    must use (``ENGRAM_NATS__INBOX_PREFIX``) so that their replies reach them."""

    name: str
    role: Role
    namespace: str | None
    inbox_prefix: str
    permissions: Permissions
    about: str
    """One line saying who the user is for (a comment in the generated file)."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A user's password in clear (for its 0600 credentials file only) and as the server
    stores it (a bcrypt hash, ``$2b$...``)."""

    user: str
    password: str
    stored: str


def check_tenants(tenants: Iterable[str]) -> tuple[str, ...]:
    """The tenants sorted, each once; raises UsageError naming the namespace pattern for a name
    that is not one NATS subject token, and for no tenant at all."""
    chosen: set[str] = set()
    for name in tenants:
        if not isinstance(name, str) or not _NAMESPACE.fullmatch(name):
            raise UsageError(
                f"tenant {name!r} is not a valid namespace: it must match {NAMESPACE_PATTERN} "
                "(letters, digits, '-' and '_', at most 64: one NATS subject token, no '.', "
                "'*', '>' or spaces)"
            )
        chosen.add(name)
    if not chosen:
        raise UsageError("name at least one tenant (e.g. --tenants alpha,beta)")
    return tuple(sorted(chosen))


def agent_user(namespace: str) -> str:
    """The user name of a tenant's agents."""
    return f"agent-{namespace}"


def _publisher_types(registry: Mapping[str, EventSpec], publisher: str) -> list[str]:
    return sorted(name for name, spec in registry.items() if spec.publisher == publisher)


def _classified(registry: Mapping[str, EventSpec]) -> list[str]:
    """The registry's derived types; raises ValueError for one neither heard by tenants nor a
    lifecycle type (a new derived type needs a decision here before it reaches a config)."""
    derived = _publisher_types(registry, "engine")
    unknown = [t for t in derived if t not in TENANT_HEARD_TYPES | LIFECYCLE_TYPES]
    if unknown:
        raise ValueError(
            f"derived event types {unknown} are neither heard by tenants (TENANT_HEARD_TYPES) "
            "nor lifecycle types (LIFECYCLE_TYPES): decide in engram/auth.py"
        )
    return derived


def _stream_admin_denied(stream: str) -> list[str]:
    """JetStream calls that change or empty a stream, and the engine key's bucket."""
    return [
        "$JS.API.STREAM.CREATE.>",
        "$JS.API.STREAM.UPDATE.>",
        "$JS.API.STREAM.DELETE.>",
        "$JS.API.STREAM.PURGE.>",
        "$JS.API.STREAM.MSG.DELETE.>",
        f"$JS.API.STREAM.MSG.GET.KV_{ENGINE_KEY_BUCKET}",
        f"$JS.API.DIRECT.GET.KV_{ENGINE_KEY_BUCKET}.>",
        f"$KV.{ENGINE_KEY_BUCKET}.>",
    ]


def _agent(
    namespace: str,
    *,
    stream: str,
    events: EventSubjects,
    service: ServiceSubjects,
    agent_types: list[str],
    derived_types: list[str],
    operator_verbs: list[str],
) -> NatsUser:
    inbox = tenant_inbox_prefix(namespace)
    heard = [t for t in derived_types if t in TENANT_HEARD_TYPES]
    publish_allow = [
        *(events.subject(t, namespace) for t in agent_types),
        # every verb of its own namespace (one token after it: what the engine answers)
        f"{service.query_prefix}{namespace}.*",
        # no JetStream API: the publish acks come on the inbox
    ]
    publish_deny = [
        # derived types, of every tenant and on v1 subjects: the engine's alone
        *(s for t in derived_types for s in (events.subject(t), f"{events.subject(t)}.*")),
        # the operator verbs, on its own namespace too
        *(service.tenant_query(namespace, v) for v in operator_verbs),
        # reading the stream would show every tenant's events, and its info (or the stream
        # list) every tenant's subjects (stream_info(subjects_filter="memory.>"))
        "$JS.API.STREAM.INFO.>",
        "$JS.API.STREAM.LIST",
        "$JS.API.CONSUMER.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        *_stream_admin_denied(stream),
    ]
    return NatsUser(
        name=agent_user(namespace),
        role="agent",
        namespace=namespace,
        inbox_prefix=inbox,
        permissions=Permissions(
            publish_allow=tuple(publish_allow),
            publish_deny=tuple(publish_deny),
            subscribe_allow=(*(events.subject(t, namespace) for t in heard), f"{inbox}.>"),
        ),
        about=f"tenant {namespace}'s agents (MemoryClient(namespace={namespace!r}))",
    )


def _operator(
    *,
    stream: str,
    events: EventSubjects,
    service: ServiceSubjects,
    operator_verbs: list[str],
    set_keys: Iterable[str] = (),
) -> NatsUser:
    # The snapshot buckets: every namespace's, and each named set's (<stream>_SNAPSHOTS_<set
    # key>); a subject wildcard is a whole token, so no pattern covers the sets' names.
    snapshots = [f"{stream}_SNAPSHOTS", *(f"{stream}_SNAPSHOTS_{key}" for key in set_keys)]
    buckets = [f"OBJ_{name}" for name in snapshots]
    readable = [stream, f"{stream}_DLQ", *buckets]
    publish_allow = [
        # the operator verbs of every tenant, and every verb on the operator subjects
        *(f"{service.query_prefix}*.{v}" for v in operator_verbs),
        f"{service.query_prefix}*",
        # stream info and listing (engram stream info, status)
        "$JS.API.INFO",
        "$JS.API.STREAM.INFO.>",
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.LIST",
        # reading the stream, the dead letters and the snapshots (replay, tail, dead-letters,
        # snapshot, compact): ephemeral consumers and direct reads
        *(
            subject
            for name in readable
            for subject in (
                f"$JS.API.CONSUMER.CREATE.{name}",
                f"$JS.API.CONSUMER.CREATE.{name}.>",
                f"$JS.API.CONSUMER.INFO.{name}.>",
                f"$JS.API.CONSUMER.MSG.NEXT.{name}.>",
                f"$JS.API.CONSUMER.DELETE.{name}.>",
                f"$JS.API.STREAM.MSG.GET.{name}",
                f"$JS.API.DIRECT.GET.{name}",
                f"$JS.API.DIRECT.GET.{name}.>",
                f"$JS.ACK.{name}.>",
            )
        ),
        # the engine key's fingerprint (its commands check ENGRAM_ENGINE_KEY against it)
        f"$JS.API.STREAM.MSG.GET.KV_{ENGINE_KEY_BUCKET}",
        f"$JS.API.DIRECT.GET.KV_{ENGINE_KEY_BUCKET}.>",
        # compact and purge empty (part of) the stream, purge deletes a tenant's dead letters
        # (and v1 messages where the stream allows it); snapshot writes its bucket, purge
        # deletes superseded snapshots
        f"$JS.API.STREAM.PURGE.{stream}",
        f"$JS.API.STREAM.MSG.DELETE.{stream}",
        f"$JS.API.STREAM.MSG.DELETE.{stream}_DLQ",
        *(f"$JS.API.STREAM.CREATE.{b}" for b in buckets),
        *(f"$JS.API.STREAM.PURGE.{b}" for b in buckets),
        *(f"$O.{name}.>" for name in snapshots),
        # the lifecycle events its commands publish (signed with the engine key)
        *(f"{events.subject(t)}.*" for t in sorted(LIFECYCLE_TYPES)),
    ]
    publish_deny = [
        f"$JS.API.STREAM.CREATE.{stream}",
        f"$JS.API.STREAM.CREATE.{stream}_DLQ",
        "$JS.API.STREAM.UPDATE.>",
        "$JS.API.STREAM.DELETE.>",
        f"$KV.{ENGINE_KEY_BUCKET}.>",
    ]
    return NatsUser(
        name="operator",
        role="operator",
        namespace=None,
        inbox_prefix=OPERATOR_INBOX_PREFIX,
        permissions=Permissions(
            publish_allow=tuple(publish_allow),
            publish_deny=tuple(publish_deny),
            subscribe_allow=(f"{OPERATOR_INBOX_PREFIX}.>",),
        ),
        about="operators: status, checkpoints, sql, export of every tenant; replay, tail, "
        "dead-letters, snapshot, compact, purge (with ENGRAM_ENGINE_KEY)",
    )


def plan_users(
    tenants: Iterable[str],
    *,
    stream: str = "ENGRAM",
    event_prefix: str = DEFAULT_EVENT_PREFIX,
    service_prefix: str = DEFAULT_SERVICE_PREFIX,
    registry: Mapping[str, EventSpec] = EVENT_TYPES,
    verbs: Mapping[str, VerbSpec] = CATALOGUE,
    sets: Iterable[Iterable[str]] = (),
) -> tuple[NatsUser, ...]:
    """``engine``, ``operator`` and one ``agent-<ns>`` per tenant (sorted), with their
    permissions. Pure. Raises UsageError for a tenant that is not a valid namespace. ``sets``:
    the namespace sets of engines that split the tenants, whose snapshot buckets the operator
    may also use (``engram snapshot --namespaces``, ``engram purge --also-set``)."""
    namespaces = check_tenants(tenants)
    events, service = EventSubjects(event_prefix), ServiceSubjects(service_prefix)
    agent_types = _publisher_types(registry, "agent")
    derived_types = _classified(registry)
    operator_verbs = sorted(name for name, spec in verbs.items() if spec.operator)
    engine = NatsUser(
        name="engine",
        role="engine",
        namespace=None,
        inbox_prefix=DEFAULT_INBOX_PREFIX,
        permissions=Permissions(publish_allow=(">",), subscribe_allow=(">",)),
        about="engram serve (with ENGRAM_ENGINE_KEY): the stream and everything beside it",
    )
    operator = _operator(
        stream=stream,
        events=events,
        service=service,
        operator_verbs=operator_verbs,
        set_keys=sorted({set_key(check_tenants(names)) for names in sets}),
    )
    agents = [
        _agent(
            ns,
            stream=stream,
            events=events,
            service=service,
            agent_types=agent_types,
            derived_types=derived_types,
            operator_verbs=operator_verbs,
        )
        for ns in namespaces
    ]
    return (engine, operator, *agents)


def bcrypt_hash(password: str, rounds: int = BCRYPT_ROUNDS) -> str:
    """``password``'s bcrypt hash (``$2b$<rounds>$...``), as nats-server checks it."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=rounds)).decode()


def new_credentials(
    users: Iterable[NatsUser],
    *,
    token: Callable[[], str] = lambda: secrets.token_urlsafe(32),
    hasher: Callable[[str], str] = bcrypt_hash,
) -> dict[str, Credential]:
    """A fresh random password per user (``secrets.token_urlsafe``, 256 bits) and its hash."""
    credentials: dict[str, Credential] = {}
    for user in users:
        password = token()
        credentials[user.name] = Credential(user.name, password, hasher(password))
    return credentials


def _quoted(text: str) -> str:
    # nats-server's config strings read like JSON's; quoting also keeps a bcrypt hash's "$"
    # from being read as a variable.
    return json.dumps(text)


def _listing(indent: str, key: str, subjects: tuple[str, ...]) -> list[str]:
    if not subjects:
        return []
    return [
        f"{indent}{key}: [",
        *(f"{indent}  {_quoted(s)}" for s in subjects),
        f"{indent}]",
    ]


def _user_block(user: NatsUser, stored: str) -> list[str]:
    p = user.permissions
    lines = [
        f"    # {user.about}",
        f"    # connects with ENGRAM_NATS__INBOX_PREFIX={user.inbox_prefix}",
        "    {",
        f"      user: {_quoted(user.name)}",
        f"      password: {_quoted(stored)}",
        "      permissions: {",
        "        publish: {",
        *_listing("          ", "allow", p.publish_allow),
        *_listing("          ", "deny", p.publish_deny),
        "        }",
        "        subscribe: {",
        *_listing("          ", "allow", p.subscribe_allow),
        *_listing("          ", "deny", p.subscribe_deny),
        "        }",
        "      }",
        "    }",
    ]
    return lines


def render_authorization(
    users: Iterable[NatsUser], stored: Mapping[str, str], *, generated_by: str = "engram auth"
) -> str:
    """The nats-server ``authorization`` block for ``users``, each with its stored password
    (``stored[user.name]``: a bcrypt hash, or a plain password, which nats-server accepts too).
    Pure; meant to be ``include``d by a server config."""
    users = list(users)
    lines = [
        f"# Generated by `{generated_by}`: users and subject permissions of engram's tenants.",
        '# Include it from nats-server.conf (`include "authorization.conf"`, a path relative',
        "# to that file). Passwords are bcrypt hashes; the clear ones are in credentials/.",
        "# Deny wins over allow. Regenerate rather than edit (engram auth --force).",
        "authorization {",
        "  users = [",
    ]
    for user in users:
        lines.extend(_user_block(user, stored[user.name]))
    lines.extend(["  ]", "}", ""])
    return "\n".join(lines)


def credentials_env(
    user: NatsUser,
    credential: Credential,
    *,
    url: str | None = None,
    settings: Mapping[str, str] | None = None,
) -> str:
    """A user's credentials file: ``ENGRAM_NATS__*`` lines the SDK and the CLI read from the
    environment (``set -a; . agent-alpha.env; set +a``), after ``settings`` (more ``ENGRAM_*``
    lines: the stream's name and prefixes when they are not the defaults, since the
    permissions name them). Holds the clear password: 0600."""
    lines = [
        f"# engram credentials of NATS user {user.name}: {user.about}",
        "# Secret: keep it 0600. Load with `set -a; . ./this-file; set +a`.",
    ]
    if url is not None:
        lines.append(f"ENGRAM_NATS__URL={url}")
    lines += [f"{key}={value}" for key, value in (settings or {}).items()]
    lines += [
        f"ENGRAM_NATS__USER={user.name}",
        f"ENGRAM_NATS__PASSWORD={credential.password}",
        f"ENGRAM_NATS__INBOX_PREFIX={user.inbox_prefix}",
    ]
    if user.role in ("engine", "operator"):
        lines.append(
            "# also needs the stream's engine key, the same for every engine and operator command:"
        )
        lines.append("# ENGRAM_ENGINE_KEY=<32+ characters, e.g. `openssl rand -hex 32`>")
    return "\n".join(lines) + "\n"
