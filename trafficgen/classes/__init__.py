"""Flow classes: the Python side of each model (parameters in, epoch schedules out).

Owns: one model per flow class (``chat``: ChatModel, also coding, reasoning and multimodal's
image requests; ``media``; ``chain``: agentic and rag; ``kv_transfer``; ``trace``: trace-driven
runs), their shared transport step (``common``), TLS and plaintext connections (``tlsplan``),
UDP tables (``udp``), retrieval fan-out, the chain classes' connection pools across arrival
blocks (``pooled``).
May import: ``config``, ``wire``, ``schema``, ``kernels``. Never the engine, sinks, API or CLI.

A model is built per scenario and class as ``Model(scenario, cls, layout_base)`` and offers:
``warmup_ns`` (how long before the capture its sessions may start), ``templates`` (a
``tls.Templates``-like table of write-prefix bytes, or an empty one; its layouts are shifted by
``layout_base`` in the engine's combined table) and ``window(t0, t1) -> EpochSchedule`` (every
flow, request and packet of the sessions that start in [t0, t1), local ids from 0; a
schedule may name sessions of earlier blocks, ``EpochSchedule.foreign``, and start up to the
model's ``early_ns`` before t0, default 0). A model's
module (and its kernels) is imported only by a scenario that has its class.
"""
from __future__ import annotations

from importlib import import_module

# class -> its model types as (module of this package, name); a class may have several models
# (e.g. a class's request sessions and its media sessions); each must draw from keys of its own
MODELS = {"chat": (("chat", "ChatModel"),), "coding": (("chat", "ChatModel"),),
          "reasoning": (("chat", "ChatModel"),),
          "multimodal": (("chat", "ChatModel"), ("media", "MediaModel")),
          "agentic": (("chain", "ChainModel"),), "rag": (("chain", "ChainModel"),),
          "kv_transfer": (("kv_transfer", "KVTransferModel"),)}


def model_types(classes=None) -> dict:
    """Class name -> its model types, for ``classes`` (default: every class), importing only
    their modules (late: the models import the config)."""
    return {c: tuple(getattr(import_module(f"{__name__}.{m}"), name) for m, name in MODELS[c])
            for c in (MODELS if classes is None else classes)}


def make_models(scenario, layouts_per_model: int) -> list:
    """Every model of the scenario's classes, in generation order; model ``k``'s template
    layouts start at ``layouts_per_model * k`` in the engine's combined table."""
    if getattr(scenario, "trace", None) is not None:  # trace-driven: the trace's classes only
        from .trace import trace_models
        return trace_models(scenario, layouts_per_model)
    types = model_types(scenario.classes)
    pairs = [(cls, t) for cls in scenario.classes for t in types[cls]]
    return [t(scenario, cls, layouts_per_model * k) for k, (cls, t) in enumerate(pairs)]
