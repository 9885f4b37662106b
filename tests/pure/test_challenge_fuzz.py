"""Fuzzing WWW-Authenticate challenges: bad input never gives a traceback, always a named error.

The bugs the fuzzers found are pinned at the end, one test each.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import example, given, note
from hypothesis import strategies as st

from testbed.fuzzing import (
    LINEAR_BUDGET,
    TOKEN_CHARS,
    challenges,
    fuzz,
    ows,
    repeat,
    timed,
)
from updater.systems.registry import challenge

# --- WWW-Authenticate ---------------------------------------------------------------------------

latin1_text = st.text(st.characters(max_codepoint=0xFF))
challenge_ish = st.one_of(
    st.text(),
    latin1_text,
    st.text('Bearer realm="\\=, \t\r\nab', max_size=60),
    st.text(TOKEN_CHARS[:20] + '"\\=, ', max_size=60),
)


def check_challenges(found: Any) -> None:
    assert isinstance(found, list)
    for c in found:
        assert isinstance(c, challenge.Challenge)
        assert c.scheme and re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", c.scheme), c
        for name, value in c.params.items():
            assert re.fullmatch(r"[!#$%&'*+.^_`|~0-9a-z-]+", name) and isinstance(value, str), c


@fuzz(1000)
@given(header=challenge_ish)
def test_challenge_parse_never_raises(header: str) -> None:
    check_challenges(challenge.parse(header))


@fuzz(30)
@given(
    pattern=st.text('Bearer realm="\\=, \tab', min_size=1, max_size=12) | challenge_ish.filter(bool)
)
def test_challenge_parse_is_linear_on_100kb(pattern: str) -> None:
    header = repeat(pattern)
    found, seconds = timed(challenge.parse, header)
    check_challenges(found)
    assert seconds < LINEAR_BUDGET, f"{seconds:.2f} s for {pattern!r} repeated to 100 KB"


@fuzz(200)
@given(
    parts=st.lists(challenges(), min_size=1, max_size=3),
    lead=ows,
    trail=ows,
    sep=st.lists(ows, min_size=6, max_size=6),
)
@example(
    parts=[
        (
            'Bearer realm="https://a/t,x=\\"y\\"",service=registry.io',
            challenge.Challenge("bearer", {"realm": 'https://a/t,x="y"', "service": "registry.io"}),
        )
    ],
    lead="",
    trail="",
    sep=[""] * 6,
)
def test_challenge_well_formed_params_recovered_exactly(
    parts: list[tuple[str, challenge.Challenge]], lead: str, trail: str, sep: list[str]
) -> None:
    header = (
        lead + ",".join(sep[i] + text + sep[i + 3] for i, (text, _) in enumerate(parts)) + trail
    )
    note(repr(header))
    assert challenge.parse(header) == [expected for _, expected in parts]


def test_bug_challenge_empty_list_elements() -> None:
    found = challenge.parse('Bearer realm="https://a/t",,service="r", ,scope="s"')
    assert found == [
        challenge.Challenge("bearer", {"realm": "https://a/t", "service": "r", "scope": "s"})
    ]
