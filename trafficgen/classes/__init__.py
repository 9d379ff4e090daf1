"""Flow classes: the Python side of each model (parameters in, epoch schedules out).

A model is built per scenario and class as ``Model(scenario, cls, layout_base)`` and offers:
``warmup_ns`` (how long before the capture its sessions may start), ``templates`` (a
``tls.Templates``-like table of write-prefix bytes, or an empty one; its layouts are shifted by
``layout_base`` in the engine's combined table) and ``window(t0, t1) -> EpochSchedule`` (every
flow, request and packet of the sessions that start in [t0, t1), local ids from 0).

May import: ``config`` (the validated parameters), ``wire`` (TLS and HTTP templates),
``kernels``, ``schema``, ``errors``. Never the engine, sinks, API or CLI.
"""
from __future__ import annotations


def model_types() -> dict:
    """Class name -> its model types (imported here, late: the models import the config). A
    class may have several models (e.g. a class's request sessions and its media sessions);
    each must draw from keys of its own."""
    from .chain import ChainModel
    from .chat import ChatModel
    from .kv_transfer import KVTransferModel
    from .media import MediaModel
    return {"chat": (ChatModel,), "coding": (ChatModel,), "reasoning": (ChatModel,),
            "multimodal": (ChatModel, MediaModel), "agentic": (ChainModel,), "rag": (ChainModel,),
            "kv_transfer": (KVTransferModel,)}


def make_models(scenario, layouts_per_model: int) -> list:
    """Every model of the scenario's classes, in generation order; model ``k``'s template
    layouts start at ``layouts_per_model * k`` in the engine's combined table."""
    if getattr(scenario, "trace", None) is not None:  # trace-driven: the trace's classes only
        from .trace import trace_models
        return trace_models(scenario, layouts_per_model)
    types = model_types()
    pairs = [(cls, t) for cls in scenario.classes for t in types[cls]]
    return [t(scenario, cls, layouts_per_model * k) for k, (cls, t) in enumerate(pairs)]
