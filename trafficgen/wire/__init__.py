"""Byte templates of what goes on the wire above TCP/UDP: TLS client profiles (ClientHello,
JA4), server flights and tickets, QUIC Initials, plaintext HTTP/1.1.

May import: ``errors``, ``kernels`` (byte fills, QUIC headers). Never config, engine, API or CLI.
"""
