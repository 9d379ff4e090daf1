"""[network.impair]: hypothesis draws valid sections (they round-trip and mean what they say per
class) and junk (a one-line ConfigError naming the key); the section absent is no impairment."""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trafficgen.config.impair import NO_IMPAIR, impair_for
from trafficgen.config.scenario import Scenario, load_scenario
from trafficgen.errors import ConfigError
from trafficgen.schema import CLASSES

classes = st.sampled_from(["default", *CLASSES])


def per_class(values):
    return values | st.dictionaries(classes, values, min_size=1, max_size=3)


prob = st.floats(0, 0.5)
share = st.floats(0, 1)
impair = st.fixed_dictionaries({}, optional={
    "loss": per_class(prob), "burst": per_class(st.floats(1, 50)),
    "before_tap": per_class(share), "ecn": per_class(share),
    "jitter": per_class(st.sampled_from([0, "0ms", "1ms", {"dist": "uniform", "min": 0, "max": 0},
                                         {"median": "1ms", "p90": "3ms"}])),
    "reorder": per_class(prob), "duplicate": per_class(prob),
})
DEFAULTS = {"loss": 0.0, "burst": 1.0, "before_tap": 0.0, "ecn": 0.0, "reorder": 0.0, "duplicate": 0.0}


@settings(max_examples=60, deadline=None)
@given(impair)
def test_valid_sections_round_trip_and_mean_what_they_say(section):
    sc = load_scenario("chat", {f"network.impair.{k}": v for k, v in section.items()})
    assert Scenario.from_dict(sc.to_dict()) == sc
    for cls in CLASSES:
        got = impair_for(sc, cls)
        for key, default in DEFAULTS.items():
            v = section.get(key, default)
            if isinstance(v, dict):
                v = v.get(cls, v.get("default", default))
            assert getattr(got, key) == v, (key, cls)


junk = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40), st.floats(),
                 st.text(max_size=12), st.lists(st.integers(-5, 70000), max_size=4),
                 st.dictionaries(st.text(max_size=6), st.integers(-5, 70000), max_size=3))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["loss", "burst", "before_tap", "ecn", "jitter", "reorder", "duplicate",
                        "colour"]), junk)
def test_junk_is_a_one_line_config_error_naming_the_key(key, value):
    try:
        sc = load_scenario("chat", {f"network.impair.{key}": value})
    except ConfigError as e:
        assert "\n" not in str(e) and e.key.startswith("network.impair"), str(e)
    else:
        assert key != "colour" and getattr(impair_for(sc, "chat"), key) is not None


def test_one_jitter_duration_is_uniform_up_to_it():
    """``jitter = "2ms"`` adds 0 to 2 ms (uniform); a distribution is taken as written."""
    sc = load_scenario("chat", {"network.impair.jitter": {"default": "2ms", "rag": {"median": "1ms",
                                                                                     "p90": "3ms"}}})
    j = impair_for(sc, "chat").jitter
    assert (j.quantile(0.0), j.quantile(0.5), j.quantile(1.0)) == (0.0, 1e6, 2e6)
    assert impair_for(sc, "rag").jitter.quantile(0.5) == pytest.approx(1e6)
    assert sc.network.impair.any and not NO_IMPAIR.any
    with pytest.raises(ConfigError, match="jitter must stay within 1s"):
        load_scenario("chat", {"network.impair.jitter": "2s"})


def test_absent_section_is_no_impairment():
    sc = load_scenario("chat")
    assert sc.network.impair == NO_IMPAIR and not NO_IMPAIR.any
    assert "impair" not in sc.source.get("network", {})
    assert impair_for(sc, "kv_transfer").loss == 0 and impair_for(sc, "chat").burst == 1


def test_a_site_takes_its_own_impairments():
    """``impair`` in a site of ``[[topology.sites]]``: one value per key, over the class's."""
    from trafficgen.config.impair import site_impair
    site = {"name": "hq", "clients": "10.20.0.0/24", "client_count": 100, "rtt": "20ms",
            "impair": {"loss": 0.02, "jitter": "1ms", "duplicate": 0.001}}
    sc = load_scenario("chat", {"topology.sites": [site], "network.impair.reorder": 0.01})
    (values,) = sc.topology_of("chat").site_impairs()
    got = site_impair(impair_for(sc, "chat"), values)
    assert (got.loss, got.duplicate, got.reorder, got.jitter.quantile(1.0)) == (0.02, 0.001, 0.01, 1e6)
    for bad, word in (({"ecn": 0.1}, "unknown key 'ecn'"), ({"loss": {"chat": 0.1}}, "one value"),
                      ({"loss": 0.9}, "loss"), ("lossy", "expected a table")):
        with pytest.raises(ConfigError, match=word) as e:
            load_scenario("chat", {"topology.sites": [{**site, "impair": bad}]})
        assert "\n" not in str(e.value)
