"""Read verbs over the projections, served over NATS request-reply or read directly."""

from consumers.queries.dispatch import QUERY_PREFIX, OperatorAccess, QueryDispatcher, error_reply
from consumers.queries.readers import ensure_read_only, run_sql, task_metrics, workflow_metrics
from consumers.queries.service import QUEUE_GROUP, build_query_broker

__all__ = [
    "QUERY_PREFIX",
    "QUEUE_GROUP",
    "OperatorAccess",
    "QueryDispatcher",
    "build_query_broker",
    "ensure_read_only",
    "error_reply",
    "run_sql",
    "task_metrics",
    "workflow_metrics",
]
