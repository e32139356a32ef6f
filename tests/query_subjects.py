"""Where a test's raw request goes: the subject the SDK would ask a verb on (wire contract v2).

A verb about a tenant on ``engram.query.<namespace>.<verb>``, the namespace the body names (else
``default``); a verb that may be asked without a namespace, when the body names none, on the
operator's ``engram.query.<verb>``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from engine.events import NAMESPACE_PATTERN
from engine.subjects import ServiceSubjects
from engine.verbs import verb as catalogued

__all__ = ["raw_subject"]


def raw_subject(
    verb: str, body: dict[str, Any] | bytes | None = None, service: ServiceSubjects | None = None
) -> str:
    """The subject a request for ``verb`` with ``body`` is sent on. A body namespace that is not
    one subject token cannot be a subject's: the request goes on ``default``'s subject with it
    (the engine then refuses the body's namespace as it refuses any other that differs)."""
    spec = catalogued(verb)
    payload = body if isinstance(body, dict) else _parsed(body)
    namespace = payload.get("namespace")
    if not isinstance(namespace, str) or not re.fullmatch(NAMESPACE_PATTERN, namespace):
        namespace = None if namespace is None and spec.scope != "tenant" else "default"
    return spec.subject(namespace, service or ServiceSubjects())


def _parsed(body: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except (ValueError, RecursionError):  # hostile bodies: the engine's to refuse
        return {}
    return value if isinstance(value, dict) else {}
