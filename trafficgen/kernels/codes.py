"""Codes the kernels write and the tables share: direction and phase labels, TCP flag bits and
IP protocol numbers. ``trafficgen.schema`` re-exports them beside their vocabularies (the
position of a name in ``schema.PHASES`` is its code here)."""

# direction labels (schema.DIRECTIONS)
DIR_UP, DIR_DOWN = 0, 1
# phase labels (schema.PHASES); append only, never reorder
PH_HANDSHAKE, PH_REQUEST, PH_PREFILL_WAIT, PH_STREAM, PH_TOOL, PH_TRANSFER, PH_TEARDOWN, \
    PH_THINKING, PH_RESPONSE, PH_SILENCE = range(10)

# TCP flag bits, as on the wire.
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# IP protocol numbers
PROTO_TCP, PROTO_UDP = 6, 17
