"""Scenarios: TOML files or dicts, validated into frozen config objects. All checking is here.

Owns: scenario loading and keys (``scenario``), units, distributions, arrival processes, the
``[network]`` section, media (voice and video) parameters, KV-cache sizes.
May import: ``errors``, ``schema``, ``wire.profiles`` (client profile names), ``kernels`` (samplers
check their own tables). Never the engine, classes, sinks, API or CLI.
"""
