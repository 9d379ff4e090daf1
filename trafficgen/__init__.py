"""trafficgen: packet-level traffic of AI-inference services, from statistical models to pcap,
Parquet and network interfaces."""
__version__ = "0.1.0"

from .api import Batch, batches, generate, load_scenario  # noqa: E402
from .config import Scenario  # noqa: E402
from .errors import ConfigError, TrafficgenError  # noqa: E402
from .rate import Rate  # noqa: E402
from .replayer import Replay, replay  # noqa: E402
from .sinks.parquet import ParquetSink  # noqa: E402
from .sinks.pcap import PcapSink  # noqa: E402
from .sinks.pcapng import PcapngSink  # noqa: E402

__all__ = ["__version__", "Batch", "batches", "generate", "load_scenario", "Scenario",
           "ConfigError", "TrafficgenError", "PcapSink", "PcapngSink", "ParquetSink", "Rate",
           "Replay", "replay"]
