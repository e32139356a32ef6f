"""A BERT encoder in numpy (the forward pass of all-MiniLM-L6-v2), read from a safetensors file.

Inference only, float32, CPU. What it computes is what ``transformers.BertModel`` computes in
eval mode: token + position + type embeddings and LayerNorm; per layer, multi-head
self-attention (scaled dot product, masked by nothing since every sequence is run at its own
length), a residual and LayerNorm, a GELU (the erf form) feed-forward layer, a residual and
LayerNorm. Sentence-transformers' mean pooling over the tokens follows.

Sequences are never padded and never stacked: each text runs alone at its own length, so its
vector does not depend on which texts share its batch (not even in the last bit).

The safetensors reader is a few lines over the documented format (8-byte little-endian header
length, a JSON header of ``dtype``/``shape``/``data_offsets``, the raw tensors): no torch, no
safetensors package.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.errors import EmbedderError

__all__ = ["BertConfig", "BertEncoder", "read_safetensors"]

F32 = npt.NDArray[np.float32]
_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}
_MAX_HEADER = 100 * 1024 * 1024


def read_safetensors(path: Path) -> dict[str, npt.NDArray[np.generic]]:
    """Every tensor of a safetensors file as a numpy array (copied, native byte order).

    Raises EmbedderError when the file is truncated, its header is not the documented JSON or a
    tensor's offsets do not fit its dtype and shape.
    """
    data = path.read_bytes()
    try:
        return _parse_safetensors(data)
    except (KeyError, ValueError, TypeError, struct.error) as exc:
        raise EmbedderError(f"{path} is not a readable safetensors file: {exc}") from exc


def _parse_safetensors(data: bytes) -> dict[str, npt.NDArray[np.generic]]:
    (header_len,) = struct.unpack_from("<Q", data, 0)
    if header_len > min(_MAX_HEADER, len(data) - 8):
        raise ValueError(f"header length {header_len} exceeds the file")
    header = json.loads(data[8 : 8 + header_len])
    base = 8 + header_len
    tensors: dict[str, npt.NDArray[np.generic]] = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_DTYPES[spec["dtype"]]).newbyteorder("<")
        shape = tuple(int(n) for n in spec["shape"])
        start, end = (int(n) for n in spec["data_offsets"])
        if end - start != dtype.itemsize * math.prod(shape) or base + end > len(data):
            raise ValueError(f"tensor {name!r}: offsets {start}..{end} do not fit {shape}")
        array = np.frombuffer(data, dtype=dtype, count=math.prod(shape), offset=base + start)
        tensors[name] = array.reshape(shape).astype(dtype.newbyteorder("="))
    return tensors


@dataclass(frozen=True)
class BertConfig:
    """The few numbers of a BERT ``config.json`` the forward pass needs."""

    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_file(cls, path: Path) -> BertConfig:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("hidden_act", "gelu") != "gelu" or raw.get("model_type") != "bert":
            raise EmbedderError(f"{path}: only BERT models with the erf GELU are supported")
        return cls(
            hidden_size=int(raw["hidden_size"]),
            num_hidden_layers=int(raw["num_hidden_layers"]),
            num_attention_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            max_position_embeddings=int(raw["max_position_embeddings"]),
            layer_norm_eps=float(raw["layer_norm_eps"]),
        )


# Abramowitz and Stegun 7.1.26: erf(z) = 1 - (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z),
# for z >= 0, absolute error below 1.5e-7 (float32's own rounding near 1 is 6e-8).
_AS_P = np.float32(0.3275911)
_AS_A = tuple(np.float32(a) for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736))
_AS_A1 = np.float32(0.254829592)


def _gelu(x: F32) -> F32:
    """GELU in its exact (erf) form, as BERT uses; in place over ``x``'s copy, numpy has no erf."""
    z = np.abs(x) * np.float32(1 / math.sqrt(2))
    t = z * _AS_P
    t += 1.0
    np.reciprocal(t, out=t)
    poly = t * _AS_A[0]
    for a in _AS_A[1:]:
        poly += a
        poly *= t
    poly += _AS_A1
    poly *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    poly *= z  # 2 e, where e = 0.5 erfc(|x| / sqrt 2)
    # GELU(x) = x (1 - e) for x >= 0 and x e for x < 0, that is x (0.5 + sign(x) (0.5 - e));
    # copysign instead of np.where, which is slower than all the rest together here.
    np.subtract(1.0, poly, out=poly)
    poly *= 0.5
    np.copysign(poly, x, out=poly)
    poly += 0.5
    poly *= x
    out: F32 = poly
    return out


def _layer_norm(x: F32, weight: F32, bias: F32, eps: float) -> F32:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    var = (centred * centred).mean(axis=-1, keepdims=True)
    out: F32 = centred / np.sqrt(var + np.float32(eps)) * weight + bias
    return out


@dataclass(frozen=True)
class _Layer:
    qkv_t: F32  # (hidden, 3 * hidden): query, key and value weights side by side, transposed
    qkv_b: F32
    out_t: F32
    out_b: F32
    ln1_w: F32
    ln1_b: F32
    up_t: F32
    up_b: F32
    down_t: F32
    down_b: F32
    ln2_w: F32
    ln2_b: F32


class BertEncoder:
    """BERT forward pass plus mean pooling: token ids in, one (unnormalised) vector per text out."""

    def __init__(self, config: BertConfig, tensors: Mapping[str, npt.NDArray[np.generic]]) -> None:
        def get(name: str) -> F32:
            try:
                return np.ascontiguousarray(tensors[name], dtype=np.float32)
            except KeyError:
                raise EmbedderError(f"the weights lack the tensor {name!r}") from None

        def t(name: str) -> F32:
            return np.ascontiguousarray(get(name).T)

        self.config = config
        self._word = get("embeddings.word_embeddings.weight")
        self._position = get("embeddings.position_embeddings.weight")
        self._type0 = get("embeddings.token_type_embeddings.weight")[0]
        self._ln_w = get("embeddings.LayerNorm.weight")
        self._ln_b = get("embeddings.LayerNorm.bias")
        self._layers: list[_Layer] = []
        for i in range(config.num_hidden_layers):
            p = f"encoder.layer.{i}."
            qkv = [f"{p}attention.self.{part}" for part in ("query", "key", "value")]
            self._layers.append(
                _Layer(
                    qkv_t=np.ascontiguousarray(np.concatenate([t(f"{n}.weight") for n in qkv], 1)),
                    qkv_b=np.concatenate([get(f"{n}.bias") for n in qkv]),
                    out_t=t(f"{p}attention.output.dense.weight"),
                    out_b=get(f"{p}attention.output.dense.bias"),
                    ln1_w=get(f"{p}attention.output.LayerNorm.weight"),
                    ln1_b=get(f"{p}attention.output.LayerNorm.bias"),
                    up_t=t(f"{p}intermediate.dense.weight"),
                    up_b=get(f"{p}intermediate.dense.bias"),
                    down_t=t(f"{p}output.dense.weight"),
                    down_b=get(f"{p}output.dense.bias"),
                    ln2_w=get(f"{p}output.LayerNorm.weight"),
                    ln2_b=get(f"{p}output.LayerNorm.bias"),
                )
            )
        hidden = config.hidden_size
        if self._word.shape[1] != hidden or hidden % config.num_attention_heads:
            raise EmbedderError(f"weights of width {self._word.shape[1]} do not fit {config}")

    @property
    def vocab_size(self) -> int:
        return int(self._word.shape[0])

    def mean_pooled(self, sequences: Sequence[Sequence[int]]) -> F32:
        """Mean of the last hidden states of each id sequence; rows in the order given.

        Each sequence runs alone: BLAS rounds a row of a matrix product differently depending
        on how many rows the product has, so stacking texts would make a text's vector depend
        (in the last bits) on its batch. Alone, it is the same in every batch and on replay.
        """
        out = np.zeros((len(sequences), self.config.hidden_size), dtype=np.float32)
        for row, ids in enumerate(sequences):
            states = self._encode(np.asarray(ids, dtype=np.int64)[np.newaxis])
            out[row] = states[0].mean(axis=0)
        return out

    def _encode(self, ids: npt.NDArray[np.int64]) -> F32:
        cfg = self.config
        batch, length = ids.shape
        if length > cfg.max_position_embeddings or length == 0:
            raise EmbedderError(f"sequence length {length} is outside 1..512")
        if ids.min() < 0 or ids.max() >= self.vocab_size:
            raise EmbedderError("a token id is outside the vocabulary")
        heads, width = cfg.num_attention_heads, cfg.hidden_size // cfg.num_attention_heads
        scale = np.float32(1 / math.sqrt(width))
        x = self._word[ids] + self._position[:length] + self._type0
        x = _layer_norm(x, self._ln_w, self._ln_b, cfg.layer_norm_eps).reshape(-1, cfg.hidden_size)
        for layer in self._layers:
            qkv = (x @ layer.qkv_t + layer.qkv_b).reshape(batch, length, 3, heads, width)
            q, k, v = (qkv[:, :, j].transpose(0, 2, 1, 3) for j in range(3))
            scores = (q @ k.transpose(0, 1, 3, 2)) * scale
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=-1, keepdims=True)
            context = (scores @ v).transpose(0, 2, 1, 3).reshape(-1, cfg.hidden_size)
            x = _layer_norm(
                context @ layer.out_t + layer.out_b + x,
                layer.ln1_w,
                layer.ln1_b,
                cfg.layer_norm_eps,
            )
            up = _gelu(x @ layer.up_t + layer.up_b)
            x = _layer_norm(
                up @ layer.down_t + layer.down_b + x, layer.ln2_w, layer.ln2_b, cfg.layer_norm_eps
            )
        states: F32 = x.reshape(batch, length, cfg.hidden_size)
        return states
