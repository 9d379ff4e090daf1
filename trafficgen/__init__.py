"""trafficgen: packet-level traffic of AI-inference services, from statistical models to pcap,
Parquet and network interfaces.

The public API. Its names are imported on first use, so ``import trafficgen`` (and the CLI's
``--help``, ``--version`` and ``models``) loads no numba, LLVM or pyarrow.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .version import __version__

# public name -> the module that defines it
_PUBLIC = {
    "Batch": "trafficgen.engine.batch",
    "batches": "trafficgen.api",
    "generate": "trafficgen.api",
    "load_scenario": "trafficgen.api",
    "Scenario": "trafficgen.config.scenario",
    "ConfigError": "trafficgen.errors",
    "ArgumentError": "trafficgen.errors",
    "TrafficgenError": "trafficgen.errors",
    "Rate": "trafficgen.playback.rate",
    "Replay": "trafficgen.playback.replayer",
    "replay": "trafficgen.playback.replayer",
    "ParquetSink": "trafficgen.sinks.parquet",
    "PcapSink": "trafficgen.sinks.pcap",
    "PcapngSink": "trafficgen.sinks.pcapng",
    "LABELS": "trafficgen.labels",
    "LABEL_CODES": "trafficgen.labels",
}
__all__ = ["__version__", "Batch", "batches", "generate", "load_scenario", "Scenario", "ConfigError",
           "ArgumentError", "TrafficgenError", "Rate", "Replay", "replay", "ParquetSink", "PcapSink",
           "PcapngSink", "LABELS", "LABEL_CODES"]

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from .api import batches, generate, load_scenario
    from .config.scenario import Scenario
    from .engine.batch import Batch
    from .errors import ArgumentError, ConfigError, TrafficgenError
    from .labels import LABEL_CODES, LABELS
    from .playback.rate import Rate
    from .playback.replayer import Replay, replay
    from .sinks.parquet import ParquetSink
    from .sinks.pcap import PcapSink
    from .sinks.pcapng import PcapngSink


def __getattr__(name: str):
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'trafficgen' has no attribute {name!r}") from None
    value = getattr(import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__():
    return sorted(__all__)
