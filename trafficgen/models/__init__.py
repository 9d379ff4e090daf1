"""Flow classes: the Python side of each model (parameters in, epoch schedules out).

A model is built per scenario and class as ``Model(scenario, cls, layout_base)`` and offers:
``warmup_ns`` (how long before the capture its sessions may start), ``templates`` (a
``tls.Templates``-like table of write-prefix bytes, or an empty one; its layouts are shifted by
``layout_base`` in the engine's combined table) and ``window(t0, t1) -> EpochSchedule`` (every
flow, request and packet of the sessions that start in [t0, t1), local ids from 0).
"""
from __future__ import annotations


def model_types() -> dict:
    """Class name -> model type (imported here, late: the models import the config)."""
    from .chain import ChainModel
    from .chat import ChatModel
    from .kv_transfer import KVTransferModel
    return {"chat": ChatModel, "coding": ChatModel, "reasoning": ChatModel, "multimodal": ChatModel,
            "agentic": ChainModel, "rag": ChainModel, "kv_transfer": KVTransferModel}


def make_model(scenario, cls: str, layout_base: int):
    """The model of flow class ``cls`` for ``scenario``."""
    return model_types()[cls](scenario, cls, layout_base)
