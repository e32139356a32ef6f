"""What every projection agrees a workflow is: its key, the identity of a step sequence."""

from __future__ import annotations

import json
from collections.abc import Sequence

__all__ = ["workflow_key"]

_KEY_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def workflow_key(steps: Sequence[str]) -> str:
    """An injective text key of a step sequence (JSON), used to group identical workflows.

    The tables store it (``workflow_executions.workflow_key``), the learner keys its statistics
    by it and the session summaries name workflows by it: one definition, so they always agree.
    """
    return _KEY_ENCODER.encode(list(steps))
