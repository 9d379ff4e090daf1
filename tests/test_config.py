"""Scenario loading: by name, path and dict; overrides; every refusal is one line that names
the source, the key and what is allowed. Property tests: lossless round trips, and junk never
escapes as anything but ConfigError."""
from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import trafficgen as tg
from trafficgen.config.scenario import CLASS_SECTIONS, SECTIONS, Scenario, builtin_dir, builtin_names, load_scenario
from trafficgen.errors import ConfigError

CHAT_TOML = (builtin_dir() / "chat.toml").read_text()


def test_builtin_by_name_and_by_path_agree(tmp_path):
    assert "chat" in builtin_names()
    by_name = load_scenario("chat")
    path = tmp_path / "copy.toml"
    path.write_text(CHAT_TOML)
    by_path = load_scenario(path)
    assert by_name == by_path
    assert by_name.chat.rate == 20.0 and by_name.topology.server_port == 443
    assert by_name.duration_ns == 60 * 10**9


def test_dict_and_list_overrides_agree():
    a = load_scenario("chat", {"chat.rate": "40/s", "topology.capture": "server"})
    b = load_scenario("chat", ["chat.rate=40/s", "topology.capture=server"])
    assert a == b and a.chat.rate == 40.0 and a.topology.capture == "server"
    c = load_scenario("chat", ["topology.rtt={median=\"5ms\", p90=\"20ms\"}"])
    assert c.topology.rtt.quantile(0.5) == pytest.approx(5e6)


def test_duration_and_seed_shorthands():
    sc = load_scenario("chat", duration="90s", seed=11)
    assert sc.duration_ns == 90 * 10**9 and sc.seed == 11


def test_base_inheritance(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('[scenario]\nbase = "chat"\nname = "mine"\n[chat]\nrate = "5/s"\n')
    sc = load_scenario(p)
    assert sc.name == "mine" and sc.chat.rate == 5.0
    assert sc.chat.turns == load_scenario("chat").chat.turns  # inherited


def refusal(src, overrides=None, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load_scenario(src, overrides, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return e.value


@pytest.mark.parametrize("override,key,words", [
    ("chat.rate=-1/s", "chat.rate", "rate like"),
    ("chat.rate=fast", "chat.rate", "rate like"),
    ("chat.turns=0.5", "chat.turns", "1"),
    ("chat.nonsense=1", "chat.nonsense", "unknown key (allowed:"),
    ("network.mtu=100", "network.mtu", "576"),
    ("topology.mtu=9000", "topology.mtu", "network.mtu"),
    ("topology.clients=10.0.0.0/33", "topology.clients", ""),
    ("topology.servers=[\"300.1.1.1\"]", "topology.servers", ""),
    ("topology.gateway_mac=zz:zz", "topology.gateway_mac", ""),
    ("topology.capture=middle", "topology.capture", "client"),
    ("topology.rtt={median=\"50ms\", p90=\"10ms\"}", "topology.rtt", "p90"),
    ("scenario.duration=0s", "scenario.duration", ""),
    ("scenario.seed=-4", "scenario.seed", ""),
    ("chat.stall_prob=2", "chat.stall_prob", "1"),
])
def test_bad_override_names_the_override_key_and_what_is_allowed(override, key, words):
    e = refusal("chat", [override])
    assert e.where == "-t" and e.key == key, str(e)
    assert str(e).startswith(f"-t: {key}: ")
    assert words in e.problem


def test_bad_dict_override_is_reported_as_an_override():
    e = refusal("chat", {"chat.rate": "-3/s"})
    assert e.where == "<overrides>" and e.key == "chat.rate"


@pytest.mark.parametrize("text,key,words", [
    ("[scenario]\nbase='chat'\n[chat]\nrate='1/s'\nbogus=1\n", "chat.bogus", "unknown key"),
    ("[scenario]\nbase='chat'\n[nonsense]\nx=1\n", "nonsense", "unknown section"),
    ("[scenario]\nbase='chat'\n[chat]\nturns='three'\n", "chat.turns", ""),
    ("[scenario]\nbase='chat'\n[topology]\nclient_count=70000\nclients='10.0.0.0/24'\n",
     "topology.client_count", "do not fit"),
    ("[scenario\nname=1", "", "not valid TOML"),
    ("[scenario]\nname='x'\n", "", ""),
])
def test_bad_files_name_the_file_and_key(tmp_path, text, key, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    e = refusal(p)
    assert e.where == str(p), str(e)
    assert e.key == key or (not key and e.key in ("", "topology", "chat", "scenario.duration",
                                                  "scenario.seed", "topology")), str(e)
    assert words in str(e)


def test_missing_file_and_unknown_name_list_the_builtins(tmp_path):
    for src in ("no-such-scenario", str(tmp_path / "nope.toml")):
        e = refusal(src)
        assert "chat" in e.problem


def test_circular_base(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(f'[scenario]\nbase = "{b}"\n')
    b.write_text(f'[scenario]\nbase = "{a}"\n')
    assert "circular" in refusal(a).problem


def test_scenario_files_are_data(tmp_path):
    """Nothing in a scenario is evaluated: an expression is just a bad value."""
    e = refusal("chat", ["chat.rate=__import__('os').system('false')"])
    assert e.key == "chat.rate"


def test_cli_refusal_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "x.pcap"
    done = subprocess.run([sys.executable, "-m", "trafficgen", "generate", "chat", "-t",
                           "chat.rate=-1/s", "-o", str(out)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: -t: chat.rate: ")
    assert "Traceback" not in done.stderr and not out.exists()
    assert list(tmp_path.iterdir()) == []


# --- properties ----------------------------------------------------------------------------

durations = st.builds(lambda n, u: f"{n}{u}", st.integers(1, 500), st.sampled_from(["ms", "s"]))
valid_overrides = st.fixed_dictionaries({}, optional={
    "chat.rate": st.builds(lambda r: f"{r}/s", st.integers(1, 500)),
    "chat.turns": st.floats(1.0, 50.0, allow_nan=False),
    "chat.keepalive": durations,
    "chat.stall_prob": st.floats(0.0, 1.0, allow_nan=False),
    "chat.bytes_per_token": st.floats(0.5, 64.0, allow_nan=False),
    "network.mtu": st.integers(576, 9216),
    "topology.capture": st.sampled_from(["client", "server"]),
    "topology.server_port": st.integers(1, 65535),
    "topology.client_count": st.integers(1, 256),
    "topology.rtt": st.builds(lambda m, k: {"median": f"{m}ms", "p90": f"{m * k}ms"},
                              st.integers(1, 100), st.integers(2, 5)),
    "scenario.seed": st.integers(0, 2**63 - 1),
    "scenario.duration": durations,
})


@settings(max_examples=60, deadline=None)
@given(valid_overrides)
def test_round_trip_is_lossless(over):
    sc = load_scenario("chat", over)
    again = Scenario.from_dict(sc.to_dict())
    assert again == sc
    assert load_scenario(sc.to_dict()) == sc
    assert tg.load_scenario(sc) == sc


junk = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                 st.text(max_size=20), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=5), st.integers(), max_size=3))
known_keys = st.sampled_from([f"{s}.{k}" for s, keys in SECTIONS.items() for k in keys
                              if k != "base"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(known_keys, junk)
def test_junk_values_are_config_errors_or_accepted(key, value):
    try:
        sc = load_scenario("chat", {key: value})
    except ConfigError as e:
        assert "\n" not in str(e)
        assert (e.key.startswith(key) or key.startswith(e.key) or e.key in ("topology.client_count",)
                or e.key.split(".")[0] == key.split(".")[0] in CLASS_SECTIONS)
    else:
        assert isinstance(sc, Scenario)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(SECTIONS)), st.from_regex(r"[a-z_]{1,12}", fullmatch=True))
def test_unknown_keys_are_refused_by_name(section, name):
    if name in SECTIONS[section]:
        return
    e = refusal("chat", {f"{section}.{name}": 1})
    assert e.key == f"{section}.{name}" and "unknown key" in e.problem
