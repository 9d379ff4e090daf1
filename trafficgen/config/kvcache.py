"""KV-cache sizes of models, as scenario values of ``kv_transfer.model``::

    model = "llama-3-70b"                                   # a name from KV_MODELS
    model = { layers = 80, kv_heads = 8, head_dim = 128 }   # any GQA model (bytes_per_value = 2)

Bytes per token per layer are 2 (K and V) x kv_heads x head_dim x bytes per value (bf16: 2);
MLA models (DeepSeek-V3) cache one compressed latent of kv_lora_rank + rope dim values per layer
instead. Sources: the models' published configs (config.json); Mooncake (FAST'25) Table 1.
"""
from __future__ import annotations

from dataclasses import dataclass

# a layer group larger than this goes as several WRITE messages (the kernel's constant)
from trafficgen.kernels.kv import MAX_MESSAGE_BYTES  # noqa: F401


@dataclass(frozen=True)
class KVModel:
    """A model's KV-cache geometry: ``layers`` and ``layer_bytes`` per token per layer."""

    name: str
    layers: int
    layer_bytes: int

    @property
    def bytes_per_token(self) -> int:
        return self.layers * self.layer_bytes


def _gqa(name: str, layers: int, kv_heads: int, head_dim: int, value_bytes: int = 2) -> KVModel:
    return KVModel(name, layers, 2 * kv_heads * head_dim * value_bytes)


KV_MODELS = {
    "llama-3-8b": _gqa("llama-3-8b", 32, 8, 128),  # 128 KiB per token
    "llama-3-70b": _gqa("llama-3-70b", 80, 8, 128),  # 320 KiB
    "llama-3.1-405b": _gqa("llama-3.1-405b", 126, 8, 128),  # 504 KiB
    # MLA: 61 layers x (kv_lora_rank 512 + qk_rope_head_dim 64) x 2 B = 70,272 B (~69 KiB)
    "deepseek-v3": KVModel("deepseek-v3", 61, (512 + 64) * 2),
}


def parse_kv_model(value) -> KVModel:
    """Validate ``kv_transfer.model``; raise ValueError saying what is allowed."""
    if isinstance(value, str):
        if value not in KV_MODELS:
            raise ValueError(f"must be one of {', '.join(KV_MODELS)} or a table "
                             f"{{ layers = ..., kv_heads = ..., head_dim = ... }}, got {value!r}")
        return KV_MODELS[value]
    if not isinstance(value, dict):
        raise ValueError(f"expected a model name ({', '.join(KV_MODELS)}) or a table "
                         f"{{ layers = ..., kv_heads = ..., head_dim = ... }}, got {value!r}")
    allowed = {"layers": 1024, "kv_heads": 1024, "head_dim": 4096, "bytes_per_value": 8}
    extra = sorted(set(value) - set(allowed))
    if extra:
        raise ValueError(f"unknown key {extra[0]!r} (allowed: {', '.join(allowed)})")
    got = {}
    for key, hi in allowed.items():
        v = value.get(key, 2 if key == "bytes_per_value" else None)
        if v is None:
            raise ValueError("a model table needs layers, kv_heads and head_dim")
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ValueError(f"{key} must be a whole number from 1 to {hi}, got {v!r}")
        got[key] = v
    name = "custom-{layers}x{kv_heads}x{head_dim}".format(**got)
    return _gqa(name, got["layers"], got["kv_heads"], got["head_dim"], got["bytes_per_value"])

