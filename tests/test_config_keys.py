"""The key declarations (config/keys.py, config/sections.py): one declaration per key gives the
checks, the defaults, the optional keys, the parameter types and the reference; the README's
key table agrees with them; scenarios stay typed, comparable and picklable."""
from __future__ import annotations

import dataclasses
import pickle
import re
from pathlib import Path

import pytest

from trafficgen.config.keys import OPTIONAL, REQUIRED, Key, int_in, params_class, parse_section, section, with_defaults
from trafficgen.config.media import MEDIA_KEYS, VIDEO_KEYS, VOICE_KEYS
from trafficgen.config.scenario import CLASS_SECTIONS, SECTIONS, Scenario, load_scenario
from trafficgen.config.sections import ENDPOINT_CLASSES, SUBTABLES, key_reference
from trafficgen.config.topology import ENDPOINT_KEYS
from trafficgen.errors import ConfigError

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_every_key_has_help_and_is_in_the_reference():
    reference = key_reference()
    for name, keys in {**SECTIONS, **SUBTABLES}.items():
        for key in (keys.values() if hasattr(keys, "values") else keys):
            assert key.help and "\n" not in key.help, f"{name}.{key.name}"
            assert f"| `{key.name}` |" in reference, f"{name}.{key.name}"


def test_params_types_have_a_field_per_key():
    endpoint = {k.name for k in ENDPOINT_KEYS}
    for cls, (ptype, _builtin) in CLASS_SECTIONS.items():
        own = [k for k in SECTIONS[cls] if not (cls in ENDPOINT_CLASSES and k in endpoint)]
        assert [f.name for f in dataclasses.fields(ptype)] == own, cls
    assert ENDPOINT_CLASSES == tuple(c for c in CLASS_SECTIONS if c != "kv_transfer")


def test_readme_media_table_lists_the_declared_keys():
    table = README[README.index("| `voice_rate`, `video_rate` |"):]
    table = table[:table.index("\n\n")]
    documented = {name for row in table.splitlines() for name in re.findall(r"`([a-z_.]+)`", row.split(" | ")[0])}
    declared = ({k.name for k in MEDIA_KEYS} - {"voice", "video"}
                | {f"voice.{k.name}" for k in VOICE_KEYS} | {f"video.{k.name}" for k in VIDEO_KEYS})
    assert documented == declared


def test_a_section_from_its_keys():
    keys = section((Key("a", int_in(0, 9)), Key("b", int_in(0, 9), 3), Key("c", int_in(0, 9), OPTIONAL)))
    data = {"s": {"a": 1}}
    assert parse_section(data, "s", keys, "f.toml") == {"a": 1, "b": 3}
    assert data == {"s": {"a": 1, "b": 3}}  # the default is written out, the optional key is not
    with pytest.raises(ConfigError, match=r"^f.toml: s.a: missing \(required\)$"):
        parse_section({"s": {}}, "s", keys, "f.toml")
    with pytest.raises(ConfigError, match=r"^f.toml: s.d: unknown key \(allowed: a, b, c\)$"):
        parse_section({"s": {"a": 1, "d": 0}}, "s", keys, "f.toml")
    with pytest.raises(ConfigError, match=r"^f.toml: s.b: must be from 0 to 9, got 10$"):
        parse_section({"s": {"a": 1, "b": 10}}, "s", keys, "f.toml")
    with pytest.raises(ValueError, match="declared twice"):
        section(keys.values(), (Key("a", int_in(0, 1)),))
    assert with_defaults(keys.values(), a=5)[0].default == 5 and keys["a"].default is REQUIRED
    with pytest.raises(ValueError, match="no key 'z'"):
        with_defaults(keys.values(), z=1)
    params = params_class("P", keys.values(), "A test section.", __name__)
    assert params(a=1, b=3) == params(**parse_section({"s": {"a": 1}}, "s", keys, "f.toml"))
    assert params(a=1, b=3).c is None and params(a=1, b=3, c=2).c == 2
    assert [f.type for f in dataclasses.fields(params)] == ["int", "int", "int | None"]


def test_class_sections_are_typed_attributes():
    sc = load_scenario("enterprise-mix")
    for cls, (ptype, _builtin) in CLASS_SECTIONS.items():
        assert isinstance(getattr(Scenario, cls), property)
        value = getattr(sc, cls)
        assert value is sc.params.get(cls) and (value is None or isinstance(value, ptype))
    with pytest.raises(AttributeError):
        sc.no_such_class  # noqa: B018


@pytest.mark.parametrize("name", ["chat", "multimodal", "agentic", "rag", "kv-transfer", "enterprise-mix"])
def test_scenarios_pickle_and_round_trip(name):
    sc = load_scenario(name)
    assert pickle.loads(pickle.dumps(sc)) == sc
    assert Scenario.from_dict(sc.to_dict()) == sc
