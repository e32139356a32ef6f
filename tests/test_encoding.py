"""The fast encoder writes exactly the bytes of the reference JSON encoding."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.events import WorkflowExecuted, encode_event, make_event

FLOATS = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)
JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    FLOATS,
    st.none() | FLOATS,
    st.dictionaries(st.text(max_size=8), JSONISH, max_size=4),
    st.text(max_size=40),
)
def test_encode_event_matches_json_dumps(
    duration: float, cost: float | None, metadata: dict[str, object], request: str
) -> None:
    """Floats of every magnitude, any Unicode and nested metadata: identical bytes."""
    event = make_event(
        WorkflowExecuted(
            workflow_steps=["a"],
            success=True,
            duration=duration,
            cost=cost,
            metadata=metadata,
            request=request or None,
        )
    )
    reference = json.dumps(event.to_json_dict(), separators=(",", ":"), ensure_ascii=False).encode()
    assert encode_event(event) == reference
