"""DuckDB working-memory tables: schema, pure row folding, the transactional store."""

from projections.tables.digest import table_digests
from projections.tables.projection import TablesProjection
from projections.tables.rows import TableChanges, fold_batch
from projections.tables.schema import TABLES, VIEWS
from projections.tables.store import DATABASE_FILE, TableStore, connect_database

__all__ = [
    "DATABASE_FILE",
    "TABLES",
    "VIEWS",
    "TableChanges",
    "TableStore",
    "TablesProjection",
    "connect_database",
    "fold_batch",
    "table_digests",
]
