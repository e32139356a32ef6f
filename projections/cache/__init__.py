"""The semantic cache: prompts and their responses from ``cache.put`` events, found again by
prompt similarity within a namespace, expiring in event time."""

from projections.cache.entries import CacheEntry, prompt_key
from projections.cache.persistence import holds_namespace
from projections.cache.projection import PromptEmbedder, SemanticCache
from projections.cache.prompt_index import IndexParams
from projections.cache.state import CacheState, state_digest

__all__ = [
    "CacheEntry",
    "CacheState",
    "IndexParams",
    "PromptEmbedder",
    "SemanticCache",
    "holds_namespace",
    "prompt_key",
    "state_digest",
]
