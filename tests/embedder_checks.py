"""Checks shared by the tests of the torch-free MiniLM embedders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from projections.embedders.base import Embedder

__all__ = ["PARAPHRASES", "assert_paraphrase_nearer", "embed_in_fresh_process"]

ROOT = Path(__file__).resolve().parent.parent

PARAPHRASES = (
    "The login page times out for users of the auth service",
    "Sign-in requests to the authentication service hang until they expire",
    "Quarterly revenue rose in the analytics report",
)
"""An anchor, a paraphrase of it with few shared words, and an unrelated sentence."""


def embed_in_fresh_process(
    embedder: str, texts: list[str], blocked: Iterable[str], hash_seed: str
) -> tuple[str, list[str]]:
    """Embed ``texts`` with ``embedder`` in a new interpreter where the ``blocked`` top-level
    packages cannot be imported; returns the vectors' bytes (hex) and the heavy modules
    (torch, transformers) that were imported anyway."""
    script = (
        "import sys, json\n"
        f"BLOCKED = {sorted(blocked)!r}\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from projections.embedders import get_embedder\n"
        f"vectors = get_embedder({embedder!r}).embed(json.loads(sys.stdin.read()))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers'})\n"
        "sys.stdout.write('\\n' + json.dumps([vectors.tobytes().hex(), heavy]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    there, heavy = json.loads(result.stdout.splitlines()[-1])  # after structlog's lines
    return str(there), list(heavy)


def assert_paraphrase_nearer(embedder: Embedder) -> None:
    """The vectors carry meaning: a paraphrase is nearer than an unrelated sentence."""
    anchor, paraphrase, unrelated = embedder.embed(list(PARAPHRASES))
    assert float(anchor @ paraphrase) > float(anchor @ unrelated) + 0.2
