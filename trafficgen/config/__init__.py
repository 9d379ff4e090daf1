"""Scenarios: TOML files or dicts, validated into frozen config objects. All checking is here.

Owns: the scenario keys, each declared once (``keys``: the machinery; ``sections``, ``topology``,
``network``, ``media``: the declarations), scenario loading (``scenario``), units, distributions,
arrival processes, KV-cache sizes.
May import: ``errors``, ``schema``, ``wire.profiles`` (client profile names), ``kernels`` (samplers
check their own tables). Never the engine, classes, sinks, API or CLI.
"""
