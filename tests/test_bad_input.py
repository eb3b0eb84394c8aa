"""Bad input is refused with a message naming the field and the limit, and with 0 Redis writes.

Property-based (hypothesis) invalid payloads, plus a corpus of the classic ways JSON goes wrong.
"""
from __future__ import annotations

import math
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner import Client, InvalidPayload, Settings

FIELDS = {"duration_s": (0, 3600), "steps": (1, 50), "fail_first": (0, 100)}

CORPUS = [
    (b"{" + b'"output": "' + b"x" * (10 * 1024 * 1024) + b'"}', "is 10,485,774 bytes; the limit is 1,000,000"),
    ('{"output": ' + "[" * 1000 + "]" * 1000 + "}", "nests deeper than 32 levels at output[0][0]"),
    ('{"output": ' + "[" * 5000 + "]" * 5000 + "}", "not valid JSON: depth limit exceeded"),
    ({"output": "x", "nested": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["a"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
     "nests deeper than 32 levels at nested[0]"),
    ({"surprise": 1}, "surprise: Extra inputs are not permitted"),
    ({"steps": "many"}, "steps: Input should be a valid integer"),
    ({"fail_always": "perhaps"}, "fail_always: Input should be a valid boolean"),
    ({"duration_s": math.nan}, "duration_s: NaN and infinity are not allowed"),
    ({"duration_s": math.inf}, "duration_s: NaN and infinity are not allowed"),
    ('{"duration_s": NaN}', "not valid JSON"),
    ('{"output": "a\u0000b"}', "not valid JSON"),
    (b'{"output": "\xff\xfe"}', "not valid JSON"),
    ({"output": "x" * 10_001}, "output: String should have at most 10000 characters"),
    ({"steps": 51}, "steps: Input should be less than or equal to 50"),
    ("null", "must be a JSON object, not NoneType"),
    ('"a string"', "must be a JSON object, not str"),
]


@pytest.fixture(scope="module")
def client(redis_url: str):
    with Client() as c:
        yield c


def assert_refused_without_writes(client: Client, r, payload: object) -> str:
    r.config_resetstat()
    with pytest.raises(InvalidPayload) as refused:
        client.submit("DEMO", payload)
    assert {k.split("|")[0] for k in r.info("commandstats")} <= {"cmdstat_config", "cmdstat_info"}
    assert r.dbsize() == 0
    return str(refused.value)


@pytest.mark.parametrize(("payload", "message"), CORPUS, ids=range(len(CORPUS)))
def test_corpus_is_refused_with_a_clear_message(client: Client, r, payload: object, message: str) -> None:
    text = assert_refused_without_writes(client, r, payload)
    assert message in text
    assert len(text) < 600 and "Traceback" not in text


def test_limits_are_settings(redis_url: str, r) -> None:
    with (Client(Settings(max_payload_depth=3)) as strict,
          pytest.raises(InvalidPayload, match="nests deeper than 3 levels")):
        strict.submit("DEMO", {"a": {"b": {"c": 1}}})
    assert r.dbsize() == 0


out_of_range = st.one_of(
    *[st.tuples(st.just(name), st.one_of(st.integers(max_value=low - 1), st.integers(min_value=high + 1)))
      for name, (low, high) in FIELDS.items()],
    st.tuples(st.sampled_from(list(FIELDS)), st.one_of(st.text(alphabet=string.ascii_letters, max_size=5),
                                                       st.lists(st.integers(), max_size=2))),
    st.tuples(st.text(min_size=1, max_size=10).filter(lambda k: k not in {*FIELDS, "fail_always", "output"}),
              st.integers()),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=out_of_range)
def test_invalid_payloads_always_name_their_field(client: Client, r, field: tuple[str, object]) -> None:
    name, value = field
    text = assert_refused_without_writes(client, r, {name: value})
    assert name in text
    if name in FIELDS and isinstance(value, int):
        low, high = FIELDS[name]
        assert f"{low}" in text if value < low else f"{high}" in text
