"""The ground-truth labels: what the codes in the label columns mean.

Seven columns of the tables are labels: ``class`` (flows, requests, packets), ``kind``
and ``status`` (requests), ``direction`` and ``phase`` (packets), ``client_os`` and ``server_os`` (flows). In
the Parquet files and in a batch's Arrow or pandas tables (``Batch.to_arrow``,
``Batch.to_pandas``) they are dictionary-encoded strings; in the raw numpy rows
(``Batch.packets``, ``Batch.flows``, ``Batch.requests``) they are ``uint8`` codes, and a
code is the position of its name in the column's vocabulary:

    >>> import trafficgen as tg
    >>> tg.LABELS["phase"][3]
    'stream'
    >>> tg.LABEL_CODES["direction"]["down"]
    1
    >>> import numpy as np                   # the names of raw codes, vectorised:
    >>> np.asarray(tg.LABELS["phase"])[np.array([0, 3, 3])]
    array(['handshake', 'stream', 'stream'], dtype='<U12')

Codes are stable: a new name is appended, never inserted, so a code keeps its meaning from one
version to the next. This module is plain Python (it loads neither numpy nor pyarrow); the
``trafficgen.schema`` module re-exports its names beside the table schemas.

Attributes
----------
CLASSES : tuple of str
    Flow classes: ``chat``, ``coding``, ``multimodal``, ``reasoning``, ``agentic``, ``rag``,
    ``kv_transfer``.
KINDS : tuple of str
    What a request asks: ``llm`` (a model call), ``tool``, ``embed``, ``search``, ``rerank``,
    ``kv_transfer`` (a KV-cache transfer), ``media`` (a realtime media exchange).
DIRECTIONS : tuple of str
    ``up`` (client to server) and ``down`` (server to client).
PHASES : tuple of str
    What a packet is part of: ``handshake``, ``request``, ``prefill_wait``, ``stream``,
    ``tool``, ``transfer``, ``teardown``, ``thinking``, ``response``, ``silence``.
OSES : tuple of str
    The operating system whose TCP/IP stack an end of a flow runs (``client_os``,
    ``server_os``): ``linux``, ``android``, ``windows``, ``macos``, ``ios``.
STATUSES : tuple of str
    How a request ended (``status``): ``completed``, ``cancelled`` (by the user, mid-answer),
    ``timeout`` (the client gave up), ``rate_limited`` (answered HTTP 429), ``error`` (answered
    503, or reset by the server).
LABELS : dict of str to tuple of str
    Each label column's vocabulary, by column name (``class``, ``kind``, ``direction``,
    ``phase``, ``client_os``, ``server_os``, ``status``).
CLASS_CODE, KIND_CODE, DIRECTION_CODE, PHASE_CODE, OS_CODE, STATUS_CODE : dict of str to int
    Each vocabulary's code of a name.
LABEL_CODES : dict of str to dict of str to int
    The code maps, by column name.
"""
from __future__ import annotations

# The position of a name is its code; append only, never reorder (kernels/codes.py writes the
# direction and phase codes by number: DIR_*, PH_*).
CLASSES = ("chat", "coding", "multimodal", "reasoning", "agentic", "rag", "kv_transfer")
KINDS = ("llm", "tool", "embed", "search", "rerank", "kv_transfer", "media")
DIRECTIONS = ("up", "down")
PHASES = ("handshake", "request", "prefill_wait", "stream", "tool", "transfer", "teardown",
          "thinking", "response", "silence")
OSES = ("linux", "android", "windows", "macos", "ios")  # kernels/stacks.py: OS_NAMES, OS_*
STATUSES = ("completed", "cancelled", "timeout", "rate_limited", "error")  # kernels/failures.py: ST_*

LABELS = {"class": CLASSES, "kind": KINDS, "direction": DIRECTIONS, "phase": PHASES,
          "client_os": OSES, "server_os": OSES, "status": STATUSES}

CLASS_CODE = {name: i for i, name in enumerate(CLASSES)}
KIND_CODE = {name: i for i, name in enumerate(KINDS)}
DIRECTION_CODE = {name: i for i, name in enumerate(DIRECTIONS)}
PHASE_CODE = {name: i for i, name in enumerate(PHASES)}
OS_CODE = {name: i for i, name in enumerate(OSES)}
STATUS_CODE = {name: i for i, name in enumerate(STATUSES)}

LABEL_CODES = {"class": CLASS_CODE, "kind": KIND_CODE, "direction": DIRECTION_CODE,
               "phase": PHASE_CODE, "client_os": OS_CODE, "server_os": OS_CODE,
               "status": STATUS_CODE}

