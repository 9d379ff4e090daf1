"""Header layouts, declared once: byte offsets of the fields the frame kernels write, from the
start of their header, and the headers' lengths. Module-level ints, so numba folds them into
the code as constants (``out[ip + IP4_TTL]`` compiles to what ``out[ip + 8]`` did)."""

# pcap record header (libpcap): little-endian, ns timestamps in the nanosecond format
PCAP_TS_SEC, PCAP_TS_FRAC, PCAP_INCL_LEN, PCAP_ORIG_LEN = 0, 4, 8, 12
PCAP_REC = 16

# pcapng Enhanced Packet Block (before its packet data and options)
EPB_TYPE, EPB_LEN, EPB_IFACE, EPB_TS_HIGH, EPB_TS_LOW, EPB_CAP_LEN, EPB_ORIG_LEN = 0, 4, 8, 12, 16, 20, 24
EPB_DATA = 28
EPB_BLOCK_TYPE = 6
OPT_COMMENT, OPT_ENDOFOPT = 1, 0

# Ethernet II
ETH_DST, ETH_SRC, ETH_TYPE = 0, 6, 12
ETH_HLEN = 14
ETHERTYPE_IP4, ETHERTYPE_IP6, ETHERTYPE_VLAN, ETHERTYPE_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
ETHERTYPE_MPLS, ETHERTYPE_MACSEC = 0x8847, 0x88E5
# 802.1Q tag (after its TPID): priority, DEI and VLAN id
VLAN_TCI = 2
VLAN_TAG = 4

# IPv4 (RFC 791), no options
IP4_VER_IHL, IP4_TOS, IP4_LEN, IP4_ID, IP4_FRAG, IP4_TTL, IP4_PROTO, IP4_CSUM, IP4_SRC, \
    IP4_DST = 0, 1, 2, 4, 6, 8, 9, 10, 12, 16
IP4_HLEN = 20
IP4_VER_IHL_20 = 0x45  # version 4, 5 words
IP4_DF = 0x40  # the Don't Fragment bit, in the flags byte
IP4_ADDRS = IP4_SRC  # source and destination: the pseudo-header's 8 address bytes

# IPv6 (RFC 8200)
IP6_VTC, IP6_TC_FLOW, IP6_FLOW, IP6_PLEN, IP6_NEXT, IP6_HOPS, IP6_SRC, IP6_DST = 0, 1, 2, 4, 6, 7, 8, 24
IP6_HLEN = 40
IP6_ADDRS = IP6_SRC  # source and destination: the pseudo-header's 32 address bytes

# TCP (RFC 9293)
TCP_SPORT, TCP_DPORT, TCP_SEQ, TCP_ACK, TCP_OFF, TCP_FLAGS, TCP_WIN, TCP_CSUM, TCP_URG, \
    TCP_OPTS = 0, 2, 4, 8, 12, 13, 14, 16, 18, 20
TCP_HLEN = 20
TCP_SYN_HLEN = 32  # with the SYN options: MSS, NOP, window scale, NOP, NOP, SACK permitted

# UDP (RFC 768)
UDP_SPORT, UDP_DPORT, UDP_LEN, UDP_CSUM = 0, 2, 4, 6
UDP_HLEN = 8
