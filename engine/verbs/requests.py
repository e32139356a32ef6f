"""What each query verb accepts: one pydantic model per verb, the single declaration the engine
validates against, the SDK builds, the command line offers and the AsyncAPI document shows.

Unknown keys are ignored (a newer client may send more); types are strict (``"false"`` is not
false, ``"5"`` is not 5).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from engine.events.items import MAX_LABELS, ItemKey, Label, check_label
from engine.item_filters import check_filter
from engine.verbs.fields import (
    Cli,
    Identifier,
    LongText,
    Namespace,
    OptionalNamespace,
    TopK,
    or_default,
)

__all__ = [
    "AssembleContextRequest",
    "BestWorkflowRequest",
    "CacheLookupRequest",
    "CheckpointsRequest",
    "ExportRequest",
    "ExtractPatternRequest",
    "ItemNamespacesRequest",
    "ItemsGetRequest",
    "ItemsSearchRequest",
    "LearningRequest",
    "ListPatternsRequest",
    "PatternsRequest",
    "QueryRequest",
    "SearchMode",
    "SearchPatternsRequest",
    "SearchRequest",
    "SessionsRequest",
    "SqlRequest",
    "StatusRequest",
    "TableMetricsRequest",
    "TaskContextRequest",
    "TaskMetricsRequest",
    "Tier",
]

SearchMode = Literal["hybrid", "vector", "lexical"]
"""hybrid (default): words (BM25) and vectors fused; vector or lexical: one retriever alone."""
Tier = Literal["operational", "working", "longterm"]
Target = Literal["success_rate", "duration", "cost"]
Collection = Literal["tasks", "decisions", "knowledge"]
ALL_TIERS: tuple[Tier, ...] = ("operational", "working", "longterm")

SQL_MAX_ROWS = 10_000
"""The most rows one ``sql`` statement may ask for (``limit``); a larger limit is refused."""


class QueryRequest(BaseModel):
    """The base of every request model: what every verb accepts."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    min_sequence: Annotated[
        int | None,
        Field(
            ge=1,
            description="read your writes: answer once the projections this verb reads have "
            "applied this stream sequence (the one a write returned), waiting a bounded time, "
            "else answer with consistency.stale true",
        ),
        Cli(flag="--after-seq"),
    ] = None


class StatusRequest(QueryRequest):
    """No parameters."""


class CheckpointsRequest(QueryRequest):
    """No parameters."""


class TableMetricsRequest(QueryRequest):
    namespace: OptionalNamespace = None
    task_type: Annotated[Identifier | None, Field(description="only this task type")] = None


class SqlRequest(QueryRequest):
    sql: Annotated[
        LongText,
        Field(min_length=1),
        Field(description='one SELECT statement, e.g. "SELECT * FROM sessions"'),
        Cli(positional=True, flag="query"),
    ]
    limit: Annotated[int, Field(ge=1, le=SQL_MAX_ROWS, description="at most this many rows")] = (
        SQL_MAX_ROWS
    )


class ExportRequest(QueryRequest):
    to: Annotated[
        Identifier,
        Field(min_length=1),
        Field(
            description="a new directory (asked of a running engine: a name under its "
            "<data dir>/exports)"
        ),
    ]


class PatternsRequest(QueryRequest):
    namespace: Namespace = "default"
    task_type: Identifier | None = None
    min_success_rate: Annotated[
        float, Field(ge=0.0, le=1.0, description="the lowest success rate listed")
    ] = 0.7


class BestWorkflowRequest(QueryRequest):
    namespace: Namespace = "default"
    task_type: Annotated[Identifier, Field(min_length=1)]
    optimization_target: Annotated[
        Target,
        or_default("success_rate"),
        Field(description="what best means"),
        Cli(flag="--target"),
    ] = "success_rate"


class TaskMetricsRequest(QueryRequest):
    namespace: Namespace = "default"
    task_type: Identifier | None = None


class SearchPatternsRequest(QueryRequest):
    namespace: Namespace = "default"
    task_type: Identifier | None = None
    pattern_type: Annotated[
        Identifier | None, Field(description="workflow, success or failure")
    ] = None
    limit: Annotated[int, Field(ge=1)] = 10


class ListPatternsRequest(QueryRequest):
    namespace: Namespace = "default"
    pattern_type: Annotated[
        Identifier | None, Field(description="workflow, success or failure")
    ] = None
    limit: Annotated[int, Field(ge=1)] = 50


class LearningRequest(QueryRequest):
    namespace: Namespace = "default"


class ExtractPatternRequest(QueryRequest):
    namespace: Namespace = "default"
    task_type_pattern: Annotated[
        Identifier,
        Field(min_length=1),
        Field(
            description="a regular-expression subset matched whole against task types, in "
            "linear time (e.g. .*authentication.*)"
        ),
        Cli(positional=True),
    ]
    pattern_type: Annotated[Literal["success", "failure", "workflow"], or_default("success")] = (
        "success"
    )
    min_samples: Annotated[int, Field(ge=1, description="pooled runs needed")] = 5


class SessionsRequest(QueryRequest):
    namespace: Namespace = "default"
    session: Annotated[
        Identifier | None, Field(description="one session id (each of its compacted segments)")
    ] = None
    session_id: Annotated[Identifier | None, Cli(hidden=True)] = None
    """The same as ``session`` (an older spelling)."""
    limit: Annotated[int, Field(ge=1)] = 50
    summary: Annotated[
        bool,
        Field(description="include the compressed summaries"),
        Cli(hidden=True),  # engram sessions asks for them with --json only (its table has none)
    ] = True


class SearchRequest(QueryRequest):
    namespace: Namespace = "default"
    text: Annotated[
        LongText | None, Field(description="what to look for"), Cli(positional=True)
    ] = None
    vector: Annotated[list[float] | None, Cli(hidden=True)] = None
    top_k: TopK = 5
    similarity_threshold: Annotated[
        float,
        Field(ge=0.0, le=1.0, description="minimum similarity (0..1)"),
        Cli(flag="--threshold"),
    ] = 0.0
    success_only: bool = False
    collections: Annotated[list[Collection] | None, Cli(repeat="--collection")] = None
    task_type: Identifier | None = None
    mode: Annotated[
        SearchMode,
        or_default("hybrid"),
        Field(
            description="hybrid (default): words and vectors fused; vector or lexical: one alone"
        ),
    ] = "hybrid"
    group_duplicates: Annotated[
        bool,
        Field(description="group near-duplicate memories under the best one"),
        Cli(negate="--no-group"),
    ] = True
    duplicate_similarity: Annotated[
        float | None,
        Field(
            gt=0.0,
            le=1.0,
            description="the similarity at which two memories are duplicates (default: the "
            "engine's setting)",
        ),
    ] = None

    @model_validator(mode="after")
    def _has_a_query(self) -> SearchRequest:
        if self.text is None and self.vector is None:
            raise ValueError("search needs text or a vector")
        if self.mode == "lexical" and self.text is None:
            raise ValueError("a lexical search needs text")
        return self


class TaskContextRequest(QueryRequest):
    namespace: Namespace = "default"
    task_description: Annotated[
        LongText,
        Field(min_length=1, description="the task to prepare"),
        Cli(positional=True, flag="text"),
    ]
    top_k: TopK = 5
    task_type: Annotated[Identifier | None, Field(description="default: inferred")] = None
    mode: Annotated[SearchMode, or_default("hybrid")] = "hybrid"


class AssembleContextRequest(QueryRequest):
    namespace: Namespace = "default"
    task_description: Annotated[
        LongText,
        Field(min_length=1, description="the task to prepare"),
        Cli(positional=True, flag="text"),
    ]
    max_tokens: Annotated[int, Field(ge=1, description="the token budget")] = 1_000
    tiers: Annotated[
        list[Tier],
        Field(min_length=1, description="operational, working and/or longterm"),
        Cli(repeat="--tier"),
    ] = Field(default_factory=lambda: list(ALL_TIERS))


# -- items (the LangGraph store) -----------------------------------------------------------------


def _label_or_any(label: str) -> str:
    return label if label == "*" else check_label(label)


def _filter(value: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if value is None else dict(check_filter(value))


ItemPath = Annotated[list[Label], Field(max_length=MAX_LABELS)]
MatchPath = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_label_or_any)]],
    Field(max_length=MAX_LABELS),
]
"""Labels, ``*`` matching any one label."""


class ItemsGetRequest(QueryRequest):
    namespace: Namespace = "default"
    path: Annotated[
        ItemPath,
        Field(min_length=1, description="the items' path (a LangGraph namespace), label by label"),
        Cli(repeat="--label"),
    ]
    keys: Annotated[
        list[ItemKey],
        Field(min_length=1, max_length=1_000, description="the keys to read"),
        Cli(repeat="--key"),
    ]


class ItemsSearchRequest(QueryRequest):
    namespace: Namespace = "default"
    prefix: Annotated[
        ItemPath,
        Field(description="items at this path or below it (none: every item)"),
        Cli(repeat="--label"),
    ] = Field(default_factory=list)
    filter: Annotated[
        dict[str, Any] | None,
        AfterValidator(_filter),
        Field(
            description="conditions on the value's fields: a value (equal), or operators $eq, "
            "$ne, $gt, $gte, $lt, $lte"
        ),
        Cli(hidden=True),
    ] = None
    query: Annotated[
        LongText | None, Field(description="rank the items by similarity to this text")
    ] = None
    limit: Annotated[int, Field(ge=1, le=1_000, description="how many items at most")] = 10
    offset: Annotated[int, Field(ge=0, le=1_000_000, description="items to skip first")] = 0


class ItemNamespacesRequest(QueryRequest):
    namespace: Namespace = "default"
    prefix: Annotated[
        MatchPath | None,
        Field(description="paths starting with these labels (* any one)"),
        Cli(repeat="--prefix"),
    ] = None
    suffix: Annotated[
        MatchPath | None,
        Field(description="paths ending with these labels (* any one)"),
        Cli(repeat="--suffix"),
    ] = None
    max_depth: Annotated[
        int | None, Field(ge=1, description="cut the paths to this many labels")
    ] = None
    limit: Annotated[int, Field(ge=1, le=1_000, description="how many paths at most")] = 100
    offset: Annotated[int, Field(ge=0, le=1_000_000, description="paths to skip first")] = 0


# -- the semantic cache ----------------------------------------------------------------------------


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be blank")
    return text


class CacheLookupRequest(QueryRequest):
    namespace: Namespace = "default"
    prompt: Annotated[
        LongText,
        Field(min_length=1, description="the prompt to find a cached response for"),
        AfterValidator(_not_blank),
        Cli(positional=True),
    ]
    threshold: Annotated[
        float | None,
        Field(
            gt=0.0,
            le=1.0,
            description="the similarity (0..1] a cached prompt needs to answer (default: the "
            "engine's cache_similarity, 0.85)",
        ),
    ] = None
    model: Annotated[
        Identifier | None, Field(description="only responses cached for this model")
    ] = None
    at: Annotated[
        AwareDatetime | None,
        Field(
            strict=False,
            description="the time expiry is judged at, RFC 3339 with a zone (default: now)",
        ),
        Cli(hidden=True),
    ] = None
