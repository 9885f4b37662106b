"""What the fuzz properties share: their budget, the timing of linear-time checks, and the
strategies that more than one module's properties draw from.

Budget: each property runs a moderate number of examples in CI; `python3 tests/fuzz_long.py
--examples 20000` runs the same properties much longer.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import string
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from updater.models import reference
from updater.systems.registry import challenge

# --- budget -------------------------------------------------------------------------------------

LONG = int(os.environ.get("UPDATER_FUZZ_EXAMPLES") or 0)  # set by tests/fuzz_long.py


def fuzz(examples: int, *, slow: bool = False) -> settings:
    """`examples` in CI and by hand; the long run scales every property up (slow ones less)."""
    more: dict[str, Any] = {}
    if LONG:
        examples = max(examples, LONG // 10 if slow else LONG)
        more["derandomize"] = False  # a fresh seed each long run, even where CI is detected
    return settings(
        **more,
        max_examples=examples,
        deadline=None,  # timing is asserted explicitly where it matters
        database=None,  # nothing written into the checkout; failures print their blob
        print_blob=True,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.function_scoped_fixture,
        ],
    )


# A parser given 100 KB must answer in well under this (a quadratic regex takes minutes).
LINEAR_BUDGET = 2.0

# --- shared strategies --------------------------------------------------------------------------

LOWER_ALNUM = string.ascii_lowercase + string.digits
TOKEN_CHARS = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters  # RFC 7230 tchar
ASCII_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
SHA256 = re.compile(r"sha256:[a-f0-9]{64}")

hex64 = st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())
sha256_digests = hex64.map(lambda h: f"sha256:{h}")
sha512_digests = st.binary(max_size=8).map(lambda b: "sha512:" + hashlib.sha512(b).hexdigest())


def repeat(pattern: str, size: int = 100_000) -> str:
    """`pattern` repeated to `size` characters: the shape that makes regexes backtrack (long
    runs of what almost matches), which hypothesis alone never grows to. The tests draw the short
    pattern and repeat it themselves, so that a failure prints the pattern, not 100 KB."""
    return (pattern * (size // len(pattern) + 1))[:size]


def timed(function: Any, text: str) -> tuple[Any, float]:
    """`function(text)` and the best of up to three timings: a machine busy with other work
    slows one call down, catastrophic backtracking slows all three."""
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        try:
            result = function(text)
        except Exception as err:  # the caller decides which errors are allowed
            result = err
        best = min(best, time.perf_counter() - start)
        if best < LINEAR_BUDGET:
            break
    return result, best


# --- image references ---------------------------------------------------------------------------

separators = st.sampled_from([".", "_", "__", "-", "--", "---"])
alnum_runs = st.one_of(
    st.text(LOWER_ALNUM, min_size=1, max_size=8),
    st.integers(1, 260).map(lambda n: "a" * n),  # reaches the 255-character limit
)


short_alnum_runs = st.text(LOWER_ALNUM, min_size=1, max_size=8)


@st.composite
def path_components(draw: st.DrawFn, runs: st.SearchStrategy[str] = alnum_runs) -> str:
    parts = [draw(runs)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(separators), draw(runs)]
    return "".join(parts)


domain_labels = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
ports = st.one_of(st.integers(0, 65535).map(str), st.from_regex(r"[0-9]{1,7}", fullmatch=True))


@st.composite
def domains(draw: st.DrawFn) -> str:
    """A host Docker recognises as a registry: with a dot, a port, `localhost`, or IPv6."""
    kind = draw(st.sampled_from(["dotted", "dotted", "plain+port", "localhost", "ipv6", "hub"]))
    if kind == "hub":
        return draw(st.sampled_from(["docker.io", "index.docker.io"]))
    if kind == "ipv6":
        # Docker's grammar takes any hex digits and colons in brackets, addresses or not.
        host = draw(
            st.sampled_from(["[::1]", "[fe80::1]", "[2001:db8::42]", "[::]"])
            | st.from_regex(r"\[[0-9a-fA-F]{0,4}:[0-9a-fA-F:]{0,10}\]", fullmatch=True)
        )
    elif kind == "localhost":
        host = "localhost"
    elif kind == "plain+port":
        host = draw(domain_labels)
    else:
        labels = draw(st.lists(domain_labels, min_size=2, max_size=4))
        host = ".".join(labels)
    port = draw(ports) if kind == "plain+port" else draw(st.none() | ports)
    return f"{host}:{port}" if port is not None else host


@dataclass(frozen=True)
class RefParts:
    """A reference built from Docker's grammar, and what parsing it must give."""

    domain: str | None
    components: tuple[str, ...]
    tag: str | None
    digest: str | None

    @property
    def text(self) -> str:
        text = "/".join(self.components)
        if self.domain is not None:
            text = f"{self.domain}/{text}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    @property
    def registry(self) -> str:
        hub = self.domain in (None, "docker.io", "index.docker.io")
        return reference.DOCKER_HUB if hub else str(self.domain)

    @property
    def path(self) -> str:
        path = "/".join(self.components)
        if self.registry == reference.DOCKER_HUB and len(self.components) == 1:
            path = f"library/{path}"
        return path

    @property
    def valid_for_docker(self) -> bool:
        """Docker limits the *normalised* path (`library/x`, no registry) to 255 characters,
        and reads 64 hex digits alone as an image ID."""
        return len(self.path) <= 255 and not re.fullmatch(r"[a-f0-9]{64}", self.text)


tags = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True) | st.integers(1, 128).map(
    lambda n: "t" * n
)


def _domain_like(component: str) -> bool:
    """Docker reads a first component with a dot (or `localhost`) as the registry."""
    return "." in component or component == "localhost"


reference_parts = st.builds(
    RefParts,
    domain=st.none() | domains(),
    components=st.lists(path_components(), min_size=1, max_size=4).map(tuple),
    tag=st.none() | tags,
    digest=st.none() | sha256_digests | sha512_digests,
).filter(lambda p: p.domain or len(p.components) == 1 or not _domain_like(p.components[0]))

# Text that often almost parses: the reference alphabet, digests and registries.
reference_ish = st.one_of(
    st.text(),
    st.text(LOWER_ALNUM + "ABZ._-/:@[]", max_size=40),
    st.builds(
        lambda a, b, c: a + b + c,
        st.sampled_from(
            ["", "docker.io/", "index.docker.io/", "localhost:5000/", "[::1]/", "a.b/"]
        ),
        st.text(LOWER_ALNUM + "._-/", min_size=1, max_size=30),
        st.sampled_from(["", ":", ":latest", ":-x", ":é", "@"]) | sha256_digests.map("@".__add__),
    ),
    reference_parts.map(lambda p: p.text),
)


ows = st.sampled_from(["", " ", "  ", "\t"])
qdtext_chars = st.one_of(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    st.sampled_from(['"', "\\", ",", "=", "\t", " "]),
    st.characters(min_codepoint=0x80, max_codepoint=0xFF),  # obs-text
)


@st.composite
def quoted_strings(draw: st.DrawFn) -> tuple[str, str]:
    """(wire form, value): escaped quotes and backslashes, and any char may be quoted-pair."""
    value = draw(st.text(qdtext_chars, max_size=30))
    extra = draw(st.lists(st.booleans(), min_size=len(value), max_size=len(value)))
    wire = "".join("\\" + c if c in '"\\' or e else c for c, e in zip(value, extra, strict=True))
    return f'"{wire}"', value


@st.composite
def challenges(draw: st.DrawFn) -> tuple[str, challenge.Challenge]:
    scheme = draw(
        st.sampled_from(["Bearer", "Basic", "bearer", "BASIC", "Digest"])
        | st.text(TOKEN_CHARS, min_size=1, max_size=10)
    )
    names = draw(
        st.lists(
            st.text(TOKEN_CHARS, min_size=1, max_size=10)
            | st.sampled_from(["realm", "service", "scope", "error"]),
            max_size=5,
            unique_by=str.lower,
        )
    )
    params, wire = {}, []
    for name in names:
        if draw(st.booleans()):
            text, value = draw(quoted_strings())
        else:
            text = value = draw(st.text(TOKEN_CHARS, min_size=1, max_size=20))
        params[name.lower()] = value
        wire.append(f"{name}{draw(ows)}={draw(ows)}{text}")
    body = "".join(f"{draw(ows)},{draw(ows)}{w}" for w in wire[1:])
    body = wire[0] + body if wire else ""
    if not wire and draw(st.booleans()):
        token68 = draw(st.from_regex(r"[A-Za-z0-9._~+/-]{1,20}={0,2}", fullmatch=True))
        return f"{scheme} {token68}", challenge.Challenge(scheme.lower(), {})
    text = f"{scheme}{draw(st.sampled_from([' ', '  ']))}{body}" if body else scheme
    return text, challenge.Challenge(scheme.lower(), params)
