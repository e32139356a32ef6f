"""VectorIndex and IndexSet: search, growth, persistence, torn saves and namespace isolation."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import (
    DimensionMismatchError,
    IndexCorruptError,
    IndexMismatchError,
    VectorIndexError,
)
from projections.vectors import IndexConfig, IndexSet, VectorIndex, persistence
from projections.vectors.index_set import MANIFEST_NAME

DIM = 16
SMALL = IndexConfig(m=16, ef_construction=100, ef=64, initial_capacity=8)


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    data = rng.standard_normal((n, dim)).astype(np.float32)
    normalised: np.ndarray = data / np.linalg.norm(data, axis=1, keepdims=True)
    return normalised


@pytest.fixture
def vectors() -> np.ndarray:
    return unit(np.random.default_rng(3), 200)


@pytest.fixture
def index(vectors: np.ndarray) -> VectorIndex:
    built = VectorIndex(DIM, "hashing", SMALL)
    built.add(np.arange(1000, 1200), vectors)
    return built


def test_search_returns_nearest_first_with_similarity_in_unit_range(
    index: VectorIndex, vectors: np.ndarray
) -> None:
    """Searching a stored vector returns its own label first with similarity 1, sorted down."""
    hits = index.search(vectors[5], 10)
    assert len(hits) == 10
    assert hits[0][0] == 1005
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    sims = [s for _, s in hits]
    assert sims == sorted(sims, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in sims)


def test_opposite_vector_similarity_is_clipped_to_zero() -> None:
    """A vector pointing the other way scores 0, not a negative similarity."""
    small = VectorIndex(2, "hashing", SMALL)
    small.add([1], [[1.0, 0.0]])
    assert small.search([-1.0, 0.0], 1) == [(1, 0.0)]


def test_empty_index_and_large_k() -> None:
    """An empty index answers []; k above the count returns every vector."""
    empty = VectorIndex(DIM, "hashing", SMALL)
    assert empty.search(np.ones(DIM), 5) == []
    empty.add([7, 8], unit(np.random.default_rng(1), 2))
    assert sorted(label for label, _ in empty.search(np.ones(DIM), 50)) == [7, 8]


def test_index_grows_before_it_is_full(vectors: np.ndarray) -> None:
    """Adding past the initial capacity resizes first, and every vector stays findable."""
    grown = VectorIndex(DIM, "hashing", SMALL)
    assert grown.capacity == 8
    for start in range(0, 200, 7):
        grown.add(np.arange(start, min(start + 7, 200)), vectors[start : start + 7])
    assert len(grown) == 200
    assert grown.capacity >= 200
    assert all(grown.search(vectors[i], 1)[0][0] == i for i in range(0, 200, 13))


def test_readding_a_label_replaces_its_vector(index: VectorIndex, vectors: np.ndarray) -> None:
    """Adding an existing label again updates it in place: the count stays, search follows."""
    index.add([1000], vectors[150:151])
    assert len(index) == 200
    assert {label for label, _ in index.search(vectors[150], 2)} == {1000, 1150}


def test_repeated_label_in_one_batch_keeps_the_last_vector(vectors: np.ndarray) -> None:
    """Within one add call the last vector of a repeated label wins."""
    built = VectorIndex(DIM, "hashing", SMALL)
    built.add([1, 2, 1], vectors[:3])
    assert len(built) == 2
    [(label, similarity)] = built.search(vectors[2], 1)
    assert label == 1
    assert similarity == pytest.approx(1.0, abs=1e-5)


def test_dimension_mismatch_is_refused_and_adds_nothing(index: VectorIndex) -> None:
    """Vectors of another width raise DimensionMismatchError on add and on search."""
    with pytest.raises(DimensionMismatchError, match="dimension 16"):
        index.add([1], np.ones((1, DIM + 1), dtype=np.float32))
    with pytest.raises(DimensionMismatchError):
        index.search(np.ones(DIM - 1), 3)
    assert len(index) == 200


@pytest.mark.parametrize(
    ("labels", "rows", "message"),
    [([-1], np.ones((1, DIM)), "labels must be integers"),
     ([1, 2], np.ones((1, DIM)), "2 labels for 1 vectors"),
     ([1], np.full((1, DIM), np.nan), "NaN")],
)  # fmt: skip
def test_bad_batches_are_refused(labels: list[int], rows: np.ndarray, message: str) -> None:
    """Negative labels, a length mismatch and NaN values raise VectorIndexError."""
    built = VectorIndex(DIM, "hashing", SMALL)
    with pytest.raises(VectorIndexError, match=message):
        built.add(labels, rows)
    assert len(built) == 0


def test_filter_restricts_candidates(index: VectorIndex, vectors: np.ndarray) -> None:
    """Only labels the filter accepts come back, even when far fewer than k exist."""
    even = index.search(vectors[5], 10, filter=lambda label: label % 2 == 0)
    assert len(even) == 10
    assert all(label % 2 == 0 for label, _ in even)
    few = index.search(vectors[5], 10, filter=lambda label: label in {1003, 1005, 1190})
    assert few[0][0] == 1005
    assert sorted(label for label, _ in few) == [1003, 1005, 1190]


def test_save_load_round_trip_gives_same_neighbours(
    tmp_path: Path, index: VectorIndex, vectors: np.ndarray
) -> None:
    """A loaded index has the watermark, extra, count, config ef and the same neighbours."""
    before = [index.search(v, 5) for v in vectors[:20]]
    index.save(tmp_path / "idx", watermark=42, extra_meta={"source": "test"})
    loaded = VectorIndex.load(tmp_path / "idx", "hashing", DIM, IndexConfig(ef=77))
    assert loaded.watermark == 42
    assert loaded.metadata.extra == {"source": "test"}
    assert loaded.metadata.count == len(loaded.index) == 200
    assert (loaded.index.config.m, loaded.index.config.ef) == (SMALL.m, 77)
    assert loaded.index._hnsw.ef == 77  # ef is not in hnswlib's file: load sets it again
    after = [loaded.index.search(v, 5) for v in vectors[:20]]
    assert [[label for label, _ in hits] for hits in after] == [
        [label for label, _ in hits] for hits in before
    ]
    loaded.index.add([5000], vectors[:1])  # a loaded index keeps growing
    assert len(loaded.index) == 201


def test_load_refuses_another_embedder_or_dimension(tmp_path: Path, index: VectorIndex) -> None:
    """Opening with a different embedder name or dimension raises IndexMismatchError."""
    index.save(tmp_path, watermark=1)
    with pytest.raises(IndexMismatchError, match="'hashing' with dimension 16"):
        VectorIndex.load(tmp_path, "minilm", DIM)
    with pytest.raises(IndexMismatchError, match="reindex"):
        VectorIndex.load(tmp_path, "hashing", 384)


def test_load_of_nothing_raises_file_not_found(tmp_path: Path) -> None:
    """A directory where nothing was committed raises FileNotFoundError (start from scratch)."""
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path, "hashing", DIM)


def test_torn_save_is_detected(tmp_path: Path, index: VectorIndex) -> None:
    """Metadata naming a missing, truncated or altered index file raises IndexCorruptError."""
    meta = index.save(tmp_path, watermark=3)
    index_file = tmp_path / meta.index_file
    content = index_file.read_bytes()
    index_file.write_bytes(content[: len(content) // 2])
    with pytest.raises(IndexCorruptError, match="torn save"):
        VectorIndex.load(tmp_path, "hashing", DIM)
    index_file.write_bytes(content[:-1] + bytes([content[-1] ^ 0xFF]))
    with pytest.raises(IndexCorruptError, match="blake2b"):
        VectorIndex.load(tmp_path, "hashing", DIM)
    index_file.unlink()
    with pytest.raises(IndexCorruptError, match="missing"):
        VectorIndex.load(tmp_path, "hashing", DIM)


def test_crash_before_metadata_commit_keeps_previous_save(
    tmp_path: Path, index: VectorIndex, vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If a save dies before its metadata rename, loading gives the previous save intact."""
    index.save(tmp_path, watermark=10)
    index.add(np.arange(5000, 5050), unit(np.random.default_rng(9), 50))

    def crash(target: Path, payload: dict[str, object]) -> None:
        raise OSError("simulated crash before the metadata rename")

    monkeypatch.setattr(persistence, "write_json_atomic", crash)
    with pytest.raises(OSError, match="simulated crash"):
        index.save(tmp_path, watermark=20)
    monkeypatch.undo()
    loaded = VectorIndex.load(tmp_path, "hashing", DIM)
    assert (loaded.watermark, len(loaded.index)) == (10, 200)
    index.save(tmp_path, watermark=20)  # the next save cleans the orphaned index file
    assert len(list(tmp_path.glob("*.hnsw"))) == 1
    assert VectorIndex.load(tmp_path, "hashing", DIM).watermark == 20


def test_extra_meta_must_be_json(tmp_path: Path, index: VectorIndex) -> None:
    """Non-JSON extra metadata is refused before anything is written."""
    with pytest.raises(VectorIndexError, match="JSON"):
        index.save(tmp_path / "x", watermark=1, extra_meta={"when": object()})
    assert not (tmp_path / "x").exists()


def test_concurrent_adds_and_searches_are_serialised(vectors: np.ndarray) -> None:
    """Searches running while another thread adds (and resizes) see no error and no loss."""
    shared = VectorIndex(DIM, "hashing", SMALL)
    shared.add([0], vectors[:1])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                assert shared.search(vectors[0], 5)[0][0] == 0
            except BaseException as exc:  # any failure in a thread fails the test
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    for start in range(1, 200, 3):
        shared.add(np.arange(start, min(start + 3, 200)), vectors[start : start + 3])
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(shared) == 200


def test_index_set_save_load_round_trip(tmp_path: Path, vectors: np.ndarray) -> None:
    """An index set comes back with its watermark, its keys and the same hits."""
    indexes = IndexSet("hashing", DIM, SMALL)
    indexes.add("team/a", "tasks", np.arange(0, 50), vectors[:50])
    indexes.add("team/a", "decisions", np.arange(50, 80), vectors[50:80])
    indexes.add("..", "tasks", np.arange(80, 100), vectors[80:100])
    before = indexes.search(vectors[60], 5, namespace="team/a")
    indexes.save(tmp_path, watermark=99)
    loaded, watermark = IndexSet.load(tmp_path, "hashing", DIM, SMALL)
    assert watermark == 99
    assert loaded.keys() == [("..", "tasks"), ("team/a", "decisions"), ("team/a", "tasks")]
    assert loaded.search(vectors[60], 5, namespace="team/a") == before
    assert before[0].collection == "decisions"
    assert {p.parent.parent.name for p in tmp_path.glob("*/*/index.json")} == {"%2E%2E", "team%2Fa"}


def test_index_set_saves_only_changed_indexes(tmp_path: Path, vectors: np.ndarray) -> None:
    """A second save rewrites the index that changed and leaves the untouched one's file."""
    indexes = IndexSet("hashing", DIM, SMALL)
    indexes.add("a", "tasks", [1], vectors[:1])
    indexes.add("b", "tasks", [2], vectors[1:2])
    indexes.save(tmp_path, watermark=1)
    files = {p.parent.parent.name: p.name for p in tmp_path.glob("*/*/*.hnsw")}
    indexes.add("a", "tasks", [3], vectors[2:3])
    indexes.save(tmp_path, watermark=2)
    after = {p.parent.parent.name: p.name for p in tmp_path.glob("*/*/*.hnsw")}
    assert after["b"] == files["b"]
    assert after["a"] != files["a"]
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["watermark"] == 2


def test_index_set_crash_mid_save_resumes_from_last_manifest(
    tmp_path: Path, vectors: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the manifest is not replaced, load returns the old watermark; replaying is a no-op."""
    indexes = IndexSet("hashing", DIM, SMALL)
    indexes.add("a", "tasks", [1, 2], vectors[:2])
    indexes.save(tmp_path, watermark=5)
    indexes.add("a", "tasks", [3], vectors[2:3])  # event 6
    real_write = persistence.write_json_atomic

    def crash_on_manifest(target: Path, payload: dict[str, object]) -> None:
        if target.name == MANIFEST_NAME:
            raise OSError("simulated crash before the manifest rename")
        real_write(target, payload)

    monkeypatch.setattr(persistence, "write_json_atomic", crash_on_manifest)
    with pytest.raises(OSError, match="simulated crash"):
        indexes.save(tmp_path, watermark=6)
    monkeypatch.undo()
    loaded, watermark = IndexSet.load(tmp_path, "hashing", DIM, SMALL)
    assert watermark == 5
    loaded.add("a", "tasks", [3], vectors[2:3])  # replay of event 6 after the resume point
    index = loaded.get("a", "tasks")
    assert index is not None
    assert len(index) == 3


def test_index_set_refuses_another_embedder(tmp_path: Path, vectors: np.ndarray) -> None:
    """A saved set built by another embedder or dimension raises IndexMismatchError."""
    indexes = IndexSet("hashing", DIM, SMALL)
    indexes.add("a", "tasks", [1], vectors[:1])
    indexes.save(tmp_path, watermark=1)
    with pytest.raises(IndexMismatchError):
        IndexSet.load(tmp_path, "minilm", DIM)
    with pytest.raises(IndexMismatchError):
        IndexSet.load(tmp_path, "hashing", 384)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    owners=st.lists(
        st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["tasks", "decisions"])),
        min_size=1,
        max_size=60,
    ),
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 80),
    collections=st.sampled_from([None, ["tasks"], ["decisions"], ["tasks", "decisions"]]),
)
def test_namespace_a_query_never_returns_b_labels(
    owners: list[tuple[str, str]], seed: int, k: int, collections: list[str] | None
) -> None:
    """Whatever is stored where, a query scoped to A only returns A's labels, even B's own."""
    rng = np.random.default_rng(seed)
    data = unit(rng, len(owners))
    indexes = IndexSet("hashing", DIM, SMALL)
    for label, (namespace, collection) in enumerate(owners):
        indexes.add(namespace, collection, [label], data[label : label + 1])
    a_labels = {i for i, (ns, _) in enumerate(owners) if ns == "A"}
    queries = [*data, *unit(rng, 3)]  # every stored vector, B's included, and fresh ones
    for query in queries:
        hits = indexes.search(query, k, namespace="A", collections=collections)
        assert {hit.label for hit in hits} <= a_labels
        wanted = {i for i in a_labels if collections is None or owners[i][1] in collections}
        assert len(hits) == min(k, len(wanted))


def test_rebuild_from_the_same_batches_gives_the_same_neighbours(vectors: np.ndarray) -> None:
    """Single-threaded builds from the same batches are identical: a replay matches the live."""
    config = IndexConfig(m=16, ef_construction=100, ef=64, initial_capacity=8, num_threads=1)
    live, replayed = VectorIndex(DIM, "hashing", config), VectorIndex(DIM, "hashing", config)
    for built in (live, replayed):
        for start in range(0, 200, 25):
            built.add(np.arange(start, start + 25), vectors[start : start + 25])
    queries = unit(np.random.default_rng(11), 30)
    assert [live.search(q, 10) for q in queries] == [replayed.search(q, 10) for q in queries]
