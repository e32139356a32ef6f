"""Vector memory storage: hnswlib indexes per (namespace, collection), saved with a watermark."""

from projections.vectors.index import IndexConfig, LoadedIndex, VectorIndex
from projections.vectors.index_set import IndexSet, SetHit
from projections.vectors.persistence import IndexMetadata, read_metadata

__all__ = [
    "IndexConfig",
    "IndexMetadata",
    "IndexSet",
    "LoadedIndex",
    "SetHit",
    "VectorIndex",
    "read_metadata",
]
