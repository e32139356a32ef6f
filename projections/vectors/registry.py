"""The memory records of the vector projection and how a new memory joins them (pure).

Three ways a memory can meet an older one, decided here in stream order (so the same events give
the same records whatever the batching):

- **The same text** (``normalised_text``: case, Unicode form and whitespace aside) in the same
  namespace and collection as a live memory: it is not a new memory. The live one's
  ``occurrences`` grows, it takes the newcomer's envelope id (``merged_ids``: a search or a
  ``memory.recalled`` naming either id finds it, and a hit shows the latest), key, task_id and
  outcome when it has them (a retried task that now succeeded is a success, shown with the
  retry's id and task_id). Nothing new is indexed, so copies never
  crowd the top k.
- **The same key** (a decision_id or knowledge_id logged again with another text): the new
  version supersedes the old one, which keeps its record (and its vectors) but is hidden from
  searches once no live key names it; ``reused_count`` and ``success`` carry over.
- Otherwise it is a new memory, indexed under its label.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from engine.events import DecisionOutcome, MemoryRecalled
from projections.records import SequencedEvent
from projections.vectors.memories import Memory, normalised_text

__all__ = ["MemoryRegistry"]

_Scope = tuple[str, str, str]  # namespace, collection, key or normalised text


class MemoryRegistry:
    """Memories by label, with the id, key and text lookups that new events need."""

    def __init__(self) -> None:
        self.memories: dict[int, Memory] = {}
        self._by_id: dict[str, int] = {}
        self._by_key: dict[_Scope, int] = {}
        self._by_text: dict[_Scope, int] = {}  # live memories only
        self._superseded: dict[str, int] = {}  # namespace -> superseded memories in it

    def __len__(self) -> int:
        return len(self.memories)

    def __iter__(self) -> Iterator[Memory]:
        return iter(self.memories.values())

    def get(self, label: int) -> Memory | None:
        return self.memories.get(label)

    def superseded_in(self, namespace: str) -> int:
        """How many memories of ``namespace`` are superseded (hidden from searches)."""
        return self._superseded.get(namespace, 0)

    def by_id(self, memory_id: str) -> Memory | None:
        """The memory an envelope id created or was merged into (None: no such memory)."""
        label = self._by_id.get(memory_id)
        return None if label is None else self.memories[label]

    def register(self, memory: Memory) -> bool:
        """Add ``memory`` (see the module); True when it is a new memory to index, False when
        it merged into a live memory of the same text."""
        ns, collection = memory.namespace, memory.collection
        text_scope = (ns, collection, normalised_text(memory.text))
        same_key = None if memory.key is None else self._by_key.get((ns, collection, memory.key))
        same_text = self._by_text.get(text_scope)
        if same_key is not None and same_key != same_text:
            older = self.memories[same_key]
            self._release(older, memory.key)
            if same_text is None:  # a new version: it inherits what the old one gathered
                memory.reused_count, memory.success = older.reused_count, older.success
        if same_text is not None:
            self._merge(self.memories[same_text], memory)
            return False
        self.memories[memory.sequence] = memory
        self._by_id[memory.id] = memory.sequence
        for key in memory.keys:
            self._by_key[(ns, collection, key)] = memory.sequence
        self._by_text[text_scope] = memory.sequence
        return True

    def _merge(self, live: Memory, memory: Memory) -> None:
        live.occurrences += 1
        live.merged_ids.append(memory.id)
        self._by_id[memory.id] = live.sequence
        if memory.success is not None:
            live.success = memory.success
        if memory.task_id is not None:
            live.task_id = memory.task_id
        for key in memory.keys:
            if key not in live.keys:
                live.keys.append(key)
            self._by_key[(live.namespace, live.collection, key)] = live.sequence

    def _release(self, memory: Memory, key: str | None) -> None:
        if key in memory.keys:
            memory.keys.remove(key)
        if not memory.keys and not memory.superseded:
            memory.superseded = True
            self._superseded[memory.namespace] = self.superseded_in(memory.namespace) + 1
            scope = (memory.namespace, memory.collection, normalised_text(memory.text))
            if self._by_text.get(scope) == memory.sequence:
                del self._by_text[scope]

    def update(self, item: SequencedEvent) -> None:
        """What a non-memory event changes: reuse counts (memory.recalled) and decision
        outcomes (decision.outcome)."""
        data, namespace = item.event.data, item.event.namespace
        if isinstance(data, MemoryRecalled):
            for memory_id in data.memory_ids:
                label = self._by_id.get(memory_id)
                if label is not None and self.memories[label].namespace == namespace:
                    self.memories[label].reused_count += 1
        elif isinstance(data, DecisionOutcome):
            label = self._by_key.get((namespace, "decisions", data.decision_id))
            if label is not None:
                self.memories[label].success = data.success

    def forget(self, namespace: str) -> int:
        """Drop every memory of ``namespace`` and every lookup that leads to one (a purged
        tenant); returns how many memories went. The other namespaces' memories are untouched:
        no lookup ever crosses namespaces."""
        gone = {label for label, memory in self.memories.items() if memory.namespace == namespace}
        for label in gone:
            del self.memories[label]
        self._by_id = {i: label for i, label in self._by_id.items() if label not in gone}
        for scope in [s for s in self._by_key if s[0] == namespace]:
            del self._by_key[scope]
        for scope in [s for s in self._by_text if s[0] == namespace]:
            del self._by_text[scope]
        self._superseded.pop(namespace, None)
        return len(gone)

    @classmethod
    def restore(cls, memories: Iterable[Memory]) -> MemoryRegistry:
        """The registry of saved records (in label order, as they were written)."""
        registry = cls()
        for memory in sorted(memories, key=lambda m: m.sequence):
            label = memory.sequence
            registry.memories[label] = memory
            registry._by_id[memory.id] = label
            for merged in memory.merged_ids:
                registry._by_id[merged] = label
            for key in memory.keys:
                registry._by_key[(memory.namespace, memory.collection, key)] = label
            if memory.superseded:
                namespace = memory.namespace
                registry._superseded[namespace] = registry.superseded_in(namespace) + 1
            else:
                scope = (memory.namespace, memory.collection, normalised_text(memory.text))
                registry._by_text[scope] = label
        return registry
