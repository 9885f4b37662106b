"""Fuzzing (issue 6): bad input never gives a traceback, always a named error.

Targets: the configuration loader (and the CLI's exit 2; `add`/`remove`), image references,
WWW-Authenticate challenges, token answers, and the manifest (digest) path against a real
loopback HTTP server that answers with generated status lines, headers and bodies.

Budget: each property runs a moderate number of examples (the whole file takes well under 40 s);
`python3 tests/fuzz_long.py --examples 20000` runs the same properties much longer. The bugs
the fuzzers found are pinned, one test each, at the end of the file.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import dataclasses
import datetime
import hashlib
import io
import json
import math
import os
import re
import socket
import string
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, assume, event, example, given, note, settings
from hypothesis import strategies as st

from updater import challenge, config, reference, registry
from updater.cli import main
from updater.config import RegistrySettings
from updater.credentials import DockerConfig
from updater.errors import ConfigError, RegistryError

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
        """Docker limits the *normalised* name (`docker.io/library/x`) to 255 characters."""
        return len(self.registry) + 1 + len(self.path) <= 255


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


@fuzz(300)
@given(text=reference_ish)
@example(text="docker.io/library/" + "a" * 237)
def test_reference_parse_returns_a_reference_or_a_config_error(text: str) -> None:
    try:
        ref = reference.parse(text)
    except ConfigError as err:
        assert str(err)
        return
    assert isinstance(ref, reference.Reference)
    # What it accepted is Docker's grammar, and its text parses back to the same reference.
    assert ref.tag is None or ASCII_TAG.fullmatch(ref.tag)
    assert ref.digest is None or re.fullmatch(
        r"[a-z0-9]+([+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+", ref.digest
    )
    assert ref.tag is not None or ref.digest is not None
    assert reference.parse(str(ref)) == ref


@fuzz(300)
@given(parts=reference_parts)
def test_reference_grammar_parses_normalised_and_round_trips(parts: RefParts) -> None:
    note(parts.text)
    if not parts.valid_for_docker:
        with pytest.raises(ConfigError, match="255"):
            reference.parse(parts.text)
        return
    ref = reference.parse(parts.text)
    assert ref.registry == parts.registry
    assert ref.path == parts.path
    assert ref.digest == parts.digest
    assert ref.tag == (parts.tag if parts.tag or parts.digest else "latest")
    assert ref.pinned == (parts.digest is not None)
    assert reference.parse(str(ref)) == ref
    assert str(reference.parse(str(ref))) == str(ref)
    if ref.registry == reference.DOCKER_HUB:
        assert ref.api_host == reference.DOCKER_HUB_API
        assert ref.familiar_repository == ref.path.removeprefix("library/")
    else:
        assert ref.api_host == ref.registry
        assert ref.familiar_repository == ref.repository


@fuzz(150)
@given(
    components=st.lists(path_components(), min_size=1, max_size=3),
    suffix=st.sampled_from(["", ":latest", ":1.2"]) | sha256_digests.map("@".__add__),
)
def test_reference_docker_hub_spellings_normalise_alike(components: list[str], suffix: str) -> None:
    name = "/".join(components)
    assume(len("docker.io/library/" + name) <= 255)
    spellings = [f"docker.io/{name}", f"index.docker.io/{name}"]
    if len(components) == 1 or not _domain_like(components[0]):
        spellings.append(name)
    if len(components) == 1:
        spellings += [f"library/{name}", f"docker.io/library/{name}"]
    refs = {reference.parse(text + suffix) for text in spellings}
    assert len(refs) == 1, refs
    [ref] = refs
    assert ref.registry == "docker.io"
    assert ref.path == (f"library/{name}" if len(components) == 1 else name)
    if not suffix:
        assert ref.tag == "latest"


@fuzz(30)
@given(pattern=st.text(LOWER_ALNUM[:3] + "._-/:@[]", min_size=1, max_size=12))
def test_reference_parse_is_linear_on_100kb(pattern: str) -> None:
    text = repeat(pattern)
    result, seconds = timed(reference.parse, text)
    assert isinstance(result, reference.Reference | ConfigError), result
    assert seconds < LINEAR_BUDGET, f"{seconds:.2f} s for {pattern!r} repeated to 100 KB"


# --- configuration ------------------------------------------------------------------------------

POLICY_KEYS = ("health_timeout", "settle", "rollback", "keep_images")
POLICY_DEFAULTS = dataclasses.asdict(config.Policy())

huge_ints = st.integers(1, 4000).map(lambda k: 10**k - 1)  # tomllib's own limit is 4300 digits
ints = st.one_of(
    st.integers(),
    st.integers(-5, 200),
    huge_ints,
    huge_ints.map(lambda n: -n),
    st.sampled_from([2**63 - 1, -(2**63), 2**64, 86400, 86401]),
)
floats = st.one_of(
    st.floats(),  # NaN and infinities included
    st.floats(-1, 100_000),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1e308, 86400.0, 86400.5]),
)
strings = st.one_of(
    st.text(),
    st.just(""),
    st.text(st.characters(codec="utf-8"), max_size=20),
    st.integers(1_000, 100_000).map(lambda n: "é" * n),  # very long
    st.sampled_from(["true", "60", "nginx", "/etc/hostname", "ca.pem", "\u202e", "\x00"]),
)
scalars = st.one_of(
    ints,
    floats,
    st.booleans(),
    strings,
    st.dates(),
    st.times(),
    st.datetimes(),
    st.datetimes(timezones=st.just(datetime.UTC)),
)
table_keys = st.one_of(
    st.sampled_from([*POLICY_KEYS, "image", "container", "insecure", "ca_file", "units"]),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(table_keys, inner, max_size=3),
    max_leaves=8,
)
policy_values = {
    "health_timeout": st.one_of(st.integers(-2, 90_000), floats, st.booleans(), strings, ints),
    "settle": st.one_of(st.integers(-2, 90_000), floats, st.booleans(), strings, ints),
    "rollback": st.one_of(st.booleans(), st.integers(0, 1), strings),
    "keep_images": st.one_of(st.integers(-2, 120), floats, st.booleans(), ints),
}
unit_names = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,15}(@[a-z0-9]{0,5})?\.service", fullmatch=True),
    st.sampled_from(
        ["app.service", "web", "a@.service", "..service", "x/y.service", "", "é.service"]
    ),
    st.text(max_size=15).map(lambda s: s + ".service"),
    st.text(max_size=15),
)
images = st.one_of(reference_parts.map(lambda p: p.text), reference_ish, values)
containers = st.one_of(
    st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}", fullmatch=True),
    st.sampled_from(["-x", ".x", "", "a b", "é"]),
    values,
)
hosts = st.one_of(
    domains(),
    st.sampled_from(["ghcr.io", "reg.example.com:5000", "[::1]:5000", "a b", "", "http://x"]),
    st.text(max_size=15),
)


valid_policy_values = {
    "health_timeout": st.one_of(st.integers(1, 86400), st.floats(0.001, 86400)),
    "settle": st.one_of(st.integers(0, 86400), st.floats(0, 86400)),
    "rollback": st.booleans(),
    "keep_images": st.integers(0, 100),
}


@st.composite
def policy_tables(draw: st.DrawFn, extra: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """A table of policy keys (and `extra`), each with a valid or any value; sometimes more."""
    table: dict[str, Any] = {}
    for key, valid in {**valid_policy_values, **extra}.items():
        if draw(st.booleans()):
            table[key] = draw(st.one_of(valid, policy_values.get(key, values)))
    if draw(st.integers(0, 4)) == 4:
        table[draw(table_keys)] = draw(values)
    return table


valid_images = st.builds(
    RefParts,
    domain=st.none() | domains(),
    components=st.lists(path_components(short_alnum_runs), min_size=1, max_size=3).map(tuple),
    tag=st.none() | tags,
    digest=st.none() | sha256_digests,
).map(lambda p: p.text)
valid_containers = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,20}", fullmatch=True)
valid_unit_names = st.one_of(
    st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,15}(@[a-z0-9]{1,5})?\.service", fullmatch=True),
    st.sampled_from(["app.service", "web.service", "db@1.service"]),  # collide across files
)
valid_hosts = st.one_of(
    st.from_regex(r"[a-z0-9.-]{1,20}(:[0-9]{1,5})?", fullmatch=True),
    st.sampled_from(["ghcr.io", "127.0.0.1:5000", "[::1]:5000", "registry.example.com:443"]),
)


def valid_documents(ca: Path) -> st.SearchStrategy[dict[str, Any]]:
    """Documents config.load accepts, unless two files define the same unit or registry."""
    unit_tables = st.fixed_dictionaries(
        {"image": valid_images},
        optional={"container": valid_containers, **valid_policy_values},
    )
    registry_tables = st.fixed_dictionaries(
        {}, optional={"insecure": st.booleans(), "ca_file": st.just(str(ca))}
    )
    return st.fixed_dictionaries(
        {},
        optional={
            "defaults": st.fixed_dictionaries({}, optional=valid_policy_values),
            "units": st.dictionaries(valid_unit_names, unit_tables, min_size=1, max_size=3),
            "registries": st.dictionaries(valid_hosts, registry_tables, max_size=2),
        },
    )


@st.composite
def mutated(draw: st.DrawFn, doc: dict[str, Any]) -> dict[str, Any]:
    """`doc` with one key set to anything, added, or deleted, anywhere in it."""
    doc = copy.deepcopy(doc)
    tables = [doc]
    for value in list(doc.values()):
        if isinstance(value, dict):
            tables.append(value)
            tables += [t for t in value.values() if isinstance(t, dict)]
    target = draw(st.sampled_from(tables))
    action = draw(st.sampled_from(["set", "add", "delete"]))
    if action != "add" and target:
        key = draw(st.sampled_from(sorted(target)))
        if action == "delete":
            del target[key]
            return doc
    else:
        key = draw(table_keys | unit_names | hosts)
    target[key] = draw(values | images | containers | hosts)
    return doc


def wild_documents(ca_files: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Anything in every place: random keys, types, nesting."""
    unit_tables = policy_tables({"container": containers, "image": images})
    registry_tables = st.fixed_dictionaries(
        {}, optional={"insecure": values, "ca_file": ca_files | values}
    ) | st.dictionaries(table_keys, values, max_size=2)
    return st.fixed_dictionaries(
        {},
        optional={
            "defaults": policy_tables({}) | values,
            "units": st.dictionaries(unit_names, unit_tables | values, max_size=3) | values,
            "registries": st.dictionaries(hosts, registry_tables | values, max_size=2) | values,
            "": values,
        },
    )


def documents(ca: Path, valid: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Valid documents, valid ones with one thing wrong, and wild ones."""
    near = valid_documents(ca).flatmap(mutated)
    wild = wild_documents(ca_file_values(ca))
    return st.one_of(valid_documents(ca), near, wild) if valid else st.one_of(near, wild)


class ConfigDir:
    """A temporary /etc/updater: config.toml plus config.d/NN.toml."""

    def __init__(self, root: Path) -> None:
        self.main = root / "etc" / "config.toml"
        self.main.parent.mkdir(parents=True)
        self.ca = root / "ca.pem"  # an existing, readable CA file for `ca_file`
        self.ca.write_text("not really PEM\n")
        self.state_dir = root / "state"
        self.paths: list[Path] = []

    def write(self, contents: list[bytes]) -> list[Path]:
        paths = [self.main] + [config.config_d(self.main) / f"{i:02}.toml" for i in range(1, 9)]
        for path, data in zip(paths, contents, strict=False):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return paths[: len(contents)]


@contextlib.contextmanager
def config_dir() -> Iterator[ConfigDir]:
    with tempfile.TemporaryDirectory(prefix="fuzz-config-") as tmp:
        yield ConfigDir(Path(tmp))


def ca_file_values(ca: Path) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.just(str(ca)),
        st.sampled_from(["/nonexistent/ca.pem", "ca.pem", "", "/", "/etc/shadow", "//"]),
        strings,
    )


def load_or_reject(directory: ConfigDir, contents: list[bytes]) -> config.Config | ConfigError:
    """config.load's answer: a Config, or the ConfigError (anything else fails the test)."""
    directory.paths = paths = directory.write(contents)
    try:
        loaded = config.load(directory.main)
    except ConfigError as err:
        event("config: ConfigError")
        message = str(err)
        assert message and "Traceback" not in message
        assert any(str(path) in message for path in paths), f"names no file: {message[:300]}"
        return err
    assert isinstance(loaded, config.Config)
    event(f"config: loaded, {min(len(loaded.units), 2)}+ units")
    return loaded


def check_loaded(loaded: config.Config, docs: list[dict[str, Any]], paths: list[Path]) -> None:
    """A configuration that loads is exactly what the documents say."""
    defaults = dict(POLICY_DEFAULTS)
    for doc in docs:
        defaults.update(doc.get("defaults", {}))
    expected_units = [
        (name, table, path)
        for doc, path in zip(docs, paths, strict=True)
        for name, table in doc.get("units", {}).items()
    ]
    assert [u.name for u in loaded.units] == [name for name, _, _ in expected_units]
    for unit, (name, table, path) in zip(loaded.units, expected_units, strict=True):
        assert unit.source == path
        assert unit.image == reference.parse(table["image"])
        assert unit.container == table.get("container", name.removesuffix(".service"))
        policy = {**defaults, **{k: table[k] for k in POLICY_KEYS if k in table}}
        assert dataclasses.asdict(unit.policy) == policy
        assert 0 < unit.policy.health_timeout <= 86400 and 0 <= unit.policy.settle <= 86400
        assert type(unit.policy.rollback) is bool and 0 <= unit.policy.keep_images <= 100
    expected_hosts = [h for doc in docs for h in doc.get("registries", {})]
    assert list(loaded.registries) == expected_hosts
    for doc in docs:
        for host, table in doc.get("registries", {}).items():
            assert loaded.registry(host).insecure == table.get("insecure", False)
            ca_file = table.get("ca_file")
            assert loaded.registry(host).ca_file == (Path(ca_file) if ca_file else None)


@fuzz(80)
@given(data=st.data())
def test_config_documents_load_or_raise_config_error(data: st.DataObject) -> None:
    """Structured documents (tomli_w): random keys, types, nesting, unicode, huge and NaN."""
    with config_dir() as directory:
        docs = data.draw(st.lists(documents(directory.ca), min_size=1, max_size=3))
        try:
            contents = [tomli_w.dumps(doc).encode() for doc in docs]
        except (TypeError, ValueError):
            assume(False)  # not representable in TOML (tomli_w refuses it)
        result = load_or_reject(directory, contents)
        if isinstance(result, config.Config):
            check_loaded(result, [tomllib.loads(c.decode()) for c in contents], directory.paths)


toml_values = st.one_of(
    st.sampled_from(
        [
            "1",
            "-1",
            "0",
            "86400",
            "86401",
            "1e400",
            "-inf",
            "nan",
            "+nan",
            "0x10",
            "1_000",
            "true",
            "false",
            '""',
            '"nginx"',
            '"ghcr.io/acme/app:prod"',
            '"\\u00e9"',
            "'lit'",
            '"""multi\nline"""',
            "[]",
            "[1, 'a']",
            "{}",
            "{ a = 1 }",
            "1979-05-27T07:32:00Z",
            "07:32:00",
            "1979-05-27",
            '"/etc/hostname"',
            '"relative.pem"',
            "9" * 300,
            "[[[[1]]]]",
        ]
    ),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(max_size=20).map(json.dumps),  # a basic string with JSON-style escapes
)
toml_keys = st.one_of(
    st.sampled_from([*POLICY_KEYS, "image", "container", "insecure", "ca_file", "x"]),
    st.text(max_size=10).map(json.dumps),
)
toml_lines = st.one_of(
    st.sampled_from(
        [
            "[defaults]",
            '[units."app.service"]',
            '[units."web.service"]',
            "[units.web]",
            '[registries."localhost:5000"]',
            "[registries.ghcr]",
            "[[units]]",
            "[units]",
            "[registries]",
            'image = "nginx"',
            'image = "127.0.0.1:5000/acme/app:prod"',
            "settle = 5",
            "defaults = 1",
            'units = "x"',
            "[defaults.nested]",
            '[units."app.service".extra]',
            "",
            "# comment",
            "[",
            "=",
        ]
    ),
    st.builds(lambda k, v: f"{k} = {v}", toml_keys, toml_values),
    st.text(max_size=30),
)
toml_texts = st.one_of(
    st.lists(toml_lines, max_size=12).map("\n".join),
    st.text(),
    st.text("[]{}=\"'a.\n, ", min_size=1, max_size=6).map(lambda p: repeat(p, 20_000)),
)


@fuzz(200)
@given(texts=st.lists(toml_texts, min_size=1, max_size=3))
def test_config_text_loads_or_raises_config_error(texts: list[str]) -> None:
    """TOML-ish and arbitrary text, in the main file and config.d."""
    with config_dir() as directory:
        load_or_reject(directory, [t.encode() for t in texts])


@fuzz(60)
@given(
    texts=st.lists(toml_texts, min_size=1, max_size=2), command=st.sampled_from(["check", "run"])
)
def test_cli_rejected_configuration_exits_2_touching_nothing(
    texts: list[str], command: str
) -> None:
    """The real CLI: a configuration load() rejects is exit 2, no report, no state directory."""
    with config_dir() as directory:
        result = load_or_reject(directory, [t.encode() for t in texts])
        assume(isinstance(result, ConfigError))  # a valid one would talk to a docker engine
        out = io.StringIO()
        argv = ["--config", str(directory.main), "--state-dir", str(directory.state_dir)]
        code = main([*argv, command, "--json"], stdout=out)
        assert code == 2
        assert out.getvalue() == ""
        assert not directory.state_dir.exists()


@fuzz(40)
@given(data=st.data(), command=st.sampled_from(["check", "run"]))
def test_cli_rejected_structured_configuration_exits_2(data: st.DataObject, command: str) -> None:
    with config_dir() as directory:
        docs = data.draw(st.lists(documents(directory.ca, valid=False), min_size=1, max_size=2))
        try:
            contents = [tomli_w.dumps(doc).encode() for doc in docs]
        except (TypeError, ValueError):
            assume(False)
        assume(isinstance(load_or_reject(directory, contents), ConfigError))
        out = io.StringIO()
        argv = ["--config", str(directory.main), "--state-dir", str(directory.state_dir)]
        assert main([*argv, command, "--json"], stdout=out) == 2
        assert out.getvalue() == "" and not directory.state_dir.exists()


def _files_outside(root: Path, inside: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and inside not in p.parents}


cli_unit_names = st.one_of(
    valid_unit_names,
    unit_names,
    st.sampled_from(["../config", "../../victim", "/tmp/x", "a/../../config", "..", ".", "-x"]),
)


@fuzz(60)
@given(
    name=cli_unit_names,
    image=valid_images | reference_ish,
    container=st.none() | valid_containers | st.text(max_size=10),
)
def test_cli_add_then_remove_stays_in_config_d(
    name: str, image: str, container: str | None
) -> None:
    """`updater add` then `updater remove`: exit 0 or 2, and only config.d/NAME.toml changes."""
    with config_dir() as directory:
        directory.main.write_text("[defaults]\nsettle = 1\n")
        (directory.main.parent.parent / "victim.toml").write_text("x = 1\n")
        units_dir = config.config_d(directory.main)
        units_dir.mkdir()
        root = directory.main.parent.parent
        before = _files_outside(root, units_dir)
        argv = ["--config", str(directory.main), "--state-dir", str(directory.state_dir)]
        extra = ["--container", container] if container is not None else []
        added = main([*argv, "add", name, "--image", image, *extra], stdout=io.StringIO())
        assert added in (0, 2)
        event(f"add: exit {added}")
        assert _files_outside(root, units_dir) == before
        if added == 0:
            assert list(units_dir.iterdir()) == [units_dir / f"{name}.toml"]
            [unit] = config.load(directory.main).units
            assert (unit.name, unit.image) == (name, reference.parse(image))
            assert unit.container == (container or name.removesuffix(".service"))
        else:
            assert list(units_dir.iterdir()) == []
        if "/" in name:
            return  # test_bug_cli_remove_deletes_outside_config_d
        removed = main([*argv, "remove", name], stdout=io.StringIO())
        assert removed == (0 if added == 0 else 2)
        assert _files_outside(root, units_dir) == before
        assert list(units_dir.iterdir()) == []
        assert not directory.state_dir.exists()


def test_cli_missing_or_unreadable_configuration_exits_2(tmp_path: Path) -> None:
    for path in (tmp_path / "nope.toml", tmp_path):  # missing; a directory
        out = io.StringIO()
        argv = ["--config", str(path), "--state-dir", str(tmp_path / "state")]
        assert main([*argv, "check", "--json"], stdout=out) == 2
        assert out.getvalue() == ""


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


# --- token answers ------------------------------------------------------------------------------

WHAT = "checking fuzz"

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**300), 10**300),
    st.floats(),  # NaN and infinities: Python's json writes and reads them
    st.text(),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["token", "access_token", "expires_in", "issued_at"])
            | st.text(max_size=8),
            inner,
            max_size=4,
        )
    ),
    max_leaves=10,
)
header_safe_tokens = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60
)
token_values = st.one_of(
    header_safe_tokens, st.text(), st.just(""), st.none(), st.integers(), json_values
)
expires_values = st.one_of(
    st.integers(-(10**6), 10**6),
    st.integers(1, 10**300),  # huge, but a float can hold it
    st.integers(10**309, 10**1000),  # more than a float can hold
    st.floats(),
    st.sampled_from(
        [0, -1, 1, 59, 60, 86400, 86401, True, False, None, "60", "", [], {}, 1e-300, 5e-324]
    ),
    st.text(max_size=10),
)


@st.composite
def token_bodies(draw: st.DrawFn) -> bytes:
    shape = draw(st.sampled_from(["object", "object", "json", "bytes", "literal"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "json":
        return json.dumps(draw(json_values)).encode()
    if shape == "literal":  # number spellings json.dumps never writes
        spelled = draw(
            st.sampled_from(
                [
                    "1e400",
                    "-1e400",
                    "NaN",
                    "Infinity",
                    "-Infinity",
                    "1E2",
                    "-0",
                    "0.5e1",
                    "1" * 300,
                    "00",
                    "1.",
                    ".5",
                    "+1",
                ]
            )
        )
        return b'{"token": "t", "expires_in": ' + spelled.encode() + b"}"
    data: dict[str, Any] = {}
    for key in draw(
        st.lists(
            st.sampled_from(["token", "access_token", "expires_in", "issued_at", "x"]), unique=True
        )
    ):
        data[key] = draw(expires_values if key == "expires_in" else token_values)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-16", "utf-32"]))
    return json.dumps(data, ensure_ascii=draw(st.booleans())).encode(encoding)


@fuzz(300)
@given(body=token_bodies())
@example(body=b'{"token": "t", "expires_in": NaN}')
@example(body=b'{"token": "t", "expires_in": 1e400}')
@example(body=b'{"access_token": "t", "expires_in": true}')
@example(body=b'{"token": "t", "expires_in": 1' + b"0" * 400 + b"}")  # float() overflows
@example(body=b"[" * 100_000 + b"]" * 100_000)  # json.loads: RecursionError
def test_token_answer_gives_a_token_or_a_registry_error(body: bytes) -> None:
    before = time.time()
    try:
        token = registry.parse_token(body, WHAT)
    except RegistryError as err:
        assert str(err).startswith(WHAT)
        event("token: RegistryError")
        return
    event("token: Token")
    after = time.time()
    assert isinstance(token, registry.Token)
    assert isinstance(token.value, str) and token.value
    assert math.isfinite(token.expires), token
    assert before <= token.expires <= after + 86400, token.expires - before
    data = json.loads(body)
    assert token.value == (data.get("token") or data.get("access_token"))
    expires_in = data.get("expires_in", 60)
    usable = type(expires_in) in (int, float) and 0 < expires_in < math.inf
    lifetime = float(min(max(expires_in, 60), 86400)) if usable else 60.0
    assert before + lifetime - 0.01 <= token.expires <= after + lifetime + 0.01


# --- the manifest (digest) path against a loopback server ---------------------------------------


@dataclass
class Reply:
    """One generated HTTP answer, written raw to the socket."""

    status_line: bytes
    headers: list[tuple[str, str]]
    body: bytes
    framing: str  # length, close, chunked, short, long, garbage-length, bad-chunked
    raw_lines: list[bytes] = field(default_factory=list)  # header lines that are not headers

    @property
    def code(self) -> int | None:
        match = re.fullmatch(rb"HTTP/1\.[01] ([0-9]{3})( [^\r\n]*)?\r\n", self.status_line)
        return int(match.group(1)) if match else None

    @property
    def clean(self) -> bool:
        """Well-formed, so that the test can predict what the client makes of it."""
        code = self.code
        names = [n.lower() for n, _ in self.headers]
        framing_headers = {"content-length", "transfer-encoding", "content-encoding"}
        return (
            code is not None
            and code >= 200
            and self.framing in ("length", "close", "chunked")
            and not self.raw_lines
            and not framing_headers & set(names)
        )

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n.lower() == name.lower()), None)

    def wire(self) -> bytes:
        head = self.status_line
        for name, value in self.headers:
            head += f"{name}: {value}\r\n".encode("latin-1")
        head += b"".join(self.raw_lines)
        body = self.body
        if self.framing in ("length", "short", "long"):
            length = {"length": len(body), "short": len(body) + 10, "long": max(0, len(body) - 3)}
            head += b"Content-Length: %d\r\n" % length[self.framing]
        elif self.framing == "garbage-length":
            head += b"Content-Length: 12abc\r\n"
        elif self.framing in ("chunked", "bad-chunked"):
            head += b"Transfer-Encoding: chunked\r\n"
            if self.framing == "chunked":
                body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        return head + b"\r\n" + body


@dataclass
class Script:
    """What the server answers, in order; the last answer of each kind repeats."""

    head: list[Reply]
    get: list[Reply]
    token: list[Reply]
    seen: list[tuple[str, str]] = field(default_factory=list)

    def answer(self, method: str, path: str) -> bytes:
        self.seen.append((method, path))
        if "/manifests/" in path:
            replies = self.head if method == "HEAD" else self.get
            done = sum(1 for m, p in self.seen[:-1] if m == method and "/manifests/" in p)
        else:
            replies = self.token
            done = sum(1 for _, p in self.seen[:-1] if "/manifests/" not in p)
        return replies[min(done, len(replies) - 1)].wire()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def handle(self) -> None:
        try:
            first = self.request.recv(1, socket.MSG_PEEK)
        except OSError:
            return
        if first == b"\x16":  # a TLS ClientHello: answer as a plain-HTTP server does
            with contextlib.suppress(OSError):
                self.request.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
            return
        super().handle()

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.authorizations.append(self.headers.get("Authorization"))
        data = self.server.script.answer(self.command, self.path)
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.wfile.write(data)
            self.wfile.flush()

    do_HEAD = do_GET = do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    script: Script
    authorizations: list[str | None]

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client hanging up early (a body over the cap) is expected


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server(("127.0.0.1", 0), _Handler)
    srv.authorizations = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def docker_configs(tmp_path: Path, server: _Server) -> dict[str, str]:
    """Two DOCKER_CONFIG directories: empty, and one with a password for the loopback server."""
    empty = tmp_path / "empty"
    empty.mkdir()
    login = tmp_path / "login"
    login.mkdir()
    auth = base64.b64encode(f"alice:{SECRET}".encode()).decode()
    host = f"127.0.0.1:{server.server_address[1]}"
    (login / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return {"empty": str(empty), "login": str(login)}


SECRET = "s3cret-fuzz-pw"
header_text = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"), max_size=60
)
reasons = st.one_of(
    st.sampled_from(["OK", "Unauthorized", "Not Found", "", "x" * 300]), header_text
)


def codes(first: int) -> st.SearchStrategy[int]:
    """Status codes, `first` (200 or 401) most often."""
    other = 401 if first == 200 else 200
    common = st.sampled_from([404, 429, 500, 503, 301, 307, 204, 304, 418, 100, 101, 103])
    return st.integers(0, 19).flatmap(
        lambda i: (
            st.just(first)
            if i < 8
            else st.just(other)
            if i < 12
            else common
            if i < 17
            else st.integers(100, 999)
        )
    )


@st.composite
def status_lines(draw: st.DrawFn, first: int = 200) -> bytes:
    if draw(st.integers(0, 9)) < 9:  # the simplest draw is a well-formed line
        version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0"]))
        reason = draw(reasons).encode("latin-1")
        return version + b" %d " % draw(codes(first)) + reason + b"\r\n"
    return draw(
        st.sampled_from(
            [
                b"",
                b"\r\n",
                b"HTTP/1.1\r\n",
                b"HTTP/1.1 2OO OK\r\n",
                b"HTTP/9.9 200 OK\r\n",
                b"HTTP/1.1 -1 x\r\n",
                b"garbage\r\n",
                b"HTTP/1.0 200 OK\n",
                b"\x16\x03\x01\r\n",
            ]
        )
        | st.binary(max_size=40).map(lambda b: b + b"\r\n")
    )


def realms(port: int) -> st.SearchStrategy[str]:
    ours = f"http://127.0.0.1:{port}"
    return st.one_of(
        st.just(f"{ours}/token"),
        st.builds(
            lambda p, q: f"{ours}/{p}{q}",
            st.text(string.ascii_letters + "/-._~%", max_size=20),
            st.sampled_from(["", "?a=1", "?", "#frag"]),
        ),
        st.sampled_from(
            [
                f"https://127.0.0.1:{port}/token",  # TLS to a plain server
                "http://127.0.0.1:1/token",  # refused
                f"http://127.0.0.1:{port}/a b",
                "http://127.0.0.1:x/t",
                "ftp://127.0.0.1/t",
                "",
                "/token",
                "http://",
                "http:///token",
                "token",
            ]
        ),
    )


@st.composite
def www_authenticate(draw: st.DrawFn, port: int) -> str:
    kind = draw(st.sampled_from(["bearer", "bearer", "bearer", "basic", "garbage", "generated"]))
    if kind == "bearer":
        realm = draw(realms(port)).replace("\\", "\\\\").replace('"', '\\"')
        service = draw(st.text(TOKEN_CHARS, max_size=12))
        extra = draw(st.sampled_from(["", ',scope="repository:x:pull"', ",error=invalid_token"]))
        return f'Bearer realm="{realm}",service="{service}"{extra}'
    if kind == "basic":
        return draw(
            st.sampled_from(['Basic realm="Registry Realm"', "Basic", "basic realm=x, Bearer"])
        )
    if kind == "generated":
        return draw(challenges())[0]
    return draw(header_text)


@st.composite
def replies(draw: st.DrawFn, port: int, kind: str) -> Reply:
    status_line = draw(status_lines(401 if kind == "head" and draw(st.booleans()) else 200))
    code = Reply(status_line, [], b"", "").code
    headers: list[tuple[str, str]] = []
    if kind == "head" and code == 200 and draw(st.integers(0, 3)) < 3:
        headers.append(("Docker-Content-Digest", draw(sha256_digests)))
    if (code == 401 and draw(st.integers(0, 3)) < 3) or draw(st.integers(0, 5)) == 5:
        headers.append(("WWW-Authenticate", draw(www_authenticate(port))))
    for _ in range(draw(st.integers(0, 4))):
        choice = draw(st.sampled_from(["digest", "digest", "auth", "retry", "other", "connection"]))
        if choice == "digest":
            value = draw(
                st.one_of(
                    sha256_digests,
                    sha256_digests,
                    sha256_digests.map(str.upper),
                    sha256_digests.map(lambda d: f" {d}  "),
                    sha512_digests,
                    header_text,
                    st.just("sha256:"),
                    hex64,
                )
            )
            headers.append(("Docker-Content-Digest", value))
        elif choice == "auth":
            headers.append(("WWW-Authenticate", draw(www_authenticate(port))))
        elif choice == "retry":
            headers.append(
                ("Retry-After", draw(st.one_of(st.integers(-5, 10**30).map(str), header_text)))
            )
        elif choice == "connection":
            headers.append(
                (
                    "Connection",
                    draw(st.sampled_from(["close", "keep-alive", "Keep-Alive, Upgrade"])),
                )
            )
        else:
            name = draw(
                st.sampled_from(
                    ["Content-Type", "Content-Encoding", "Location", "X-Junk", "Transfer-Encoding"]
                )
                | st.text(TOKEN_CHARS, min_size=1, max_size=12)
            )
            headers.append((name, draw(header_text)))
    if kind == "token" and not draw(st.booleans()):
        body = json.dumps(
            {"token": draw(header_safe_tokens), "expires_in": draw(expires_values)}
        ).encode()
    elif kind == "token" and draw(st.integers(0, 3)) < 3:
        body = draw(token_bodies())
    elif kind == "get" and draw(st.integers(0, 30)) == 30:
        body = b"{" + b" " * registry.MANIFEST_CAP + b"}"  # over the cap
    else:
        body = draw(st.binary(max_size=300))
    raw_lines = (
        draw(
            st.lists(
                st.sampled_from(
                    [
                        b"no colon here\r\n",
                        b" folded: continuation\r\n",
                        b": empty name\r\n",
                        b"X-Bad\x00: nul\r\n",
                    ]
                ),
                max_size=1,
            )
        )
        if draw(st.integers(0, 9)) == 9
        else []
    )
    framing = draw(
        st.sampled_from(
            [
                "length",
                "length",
                "close",
                "chunked",
                "short",
                "long",
                "garbage-length",
                "bad-chunked",
            ]
        )
    )
    return Reply(status_line, headers, body, framing, raw_lines)


def _header_illegal(value: str) -> bool:
    """What http.client refuses to send as a header value (it raises, not a named error)."""
    return bool(re.search(r"[^\x00-\xff]|\n(?![ \t])|\r(?![ \t\n])", value))


@fuzz(60, slow=True)
@given(data=st.data())
def test_digest_returns_a_digest_or_a_registry_error(
    data: st.DataObject,
    server: _Server,
    docker_configs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = server.server_address[1]
    script = Script(
        head=data.draw(st.lists(replies(port, "head"), min_size=1, max_size=2), label="head"),
        get=data.draw(st.lists(replies(port, "get"), min_size=1, max_size=2), label="get"),
        token=data.draw(st.lists(replies(port, "token"), min_size=1, max_size=2), label="token"),
    )
    components = st.lists(path_components(short_alnum_runs), min_size=1, max_size=3)
    path = "/".join(data.draw(components, label="path"))
    tag = data.draw(tags, label="tag")
    ref = reference.parse(f"127.0.0.1:{port}/{path}:{tag}")
    monkeypatch.setenv(
        "DOCKER_CONFIG", docker_configs[data.draw(st.sampled_from(["empty", "login"]))]
    )
    server.script = script
    server.authorizations = []
    client = registry.Registries(lambda host: RegistrySettings(), DockerConfig())
    try:
        result: str | RegistryError = client.digest(ref)
    except RegistryError as err:
        result = err
    finally:
        client.close()
    note(f"result: {result!r}\nseen: {script.seen}")
    kind = re.sub(r"\d+|'.*|\(.*", "N", str(result).split(": ", 1)[-1])[:50]
    event(f"digest: {kind if isinstance(result, RegistryError) else 'a digest'}")
    event(f"requests: {len(script.seen)}")

    manifest = f"/v2/{path}/manifests/{tag}"
    assert all(p == manifest or "/manifests/" not in p for _, p in script.seen), (
        "a blob or another path"
    )
    assert all(p.startswith("/") for _, p in script.seen), script.seen
    assert len(script.seen) <= 6, script.seen  # HEAD, retry, GET, retry, tokens: never a loop
    if isinstance(result, RegistryError):
        message = str(result)
        assert message and "Traceback" not in message
        assert SECRET not in message
    else:
        assert SHA256.fullmatch(result), result

    first = script.head[0]
    if first.clean and first.code != 401:
        gets = [m for m, p in script.seen if m == "GET" and p == manifest]
        found = (first.header("Docker-Content-Digest") or "").strip()
        if first.code == 200 and SHA256.fullmatch(found):
            assert result == found and not gets, "the header's digest, without a GET"
        elif first.code != 200:
            assert isinstance(result, RegistryError) and f"answered {first.code}" in str(result)
            assert not gets
            if first.code == 404:
                assert "does the tag" in str(result)
            if first.code == 429:
                assert "rate limited" in str(result)
        elif (
            script.get[0].clean
            and script.get[0].code == 200
            and len(script.get[0].body) <= registry.MANIFEST_CAP
        ):
            assert result == "sha256:" + hashlib.sha256(script.get[0].body).hexdigest()
    # The configured password is the only Basic credential ever sent, and none without one.
    basic = "Basic " + base64.b64encode(f"alice:{SECRET}".encode()).decode()
    sent = [a for a in server.authorizations if a and a.startswith("Basic")]
    assert all(a == basic for a in sent), sent
    if os.environ["DOCKER_CONFIG"] == docker_configs["empty"]:
        assert not sent


# --- bugs the fuzzers found, fixed and pinned ------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'[units."a.service"]\nimage = "\xff"\n', id="invalid-utf8"),
        pytest.param(b'[registries."r.io"]\nca_file = "/a\\u0000b"\n', id="nul-in-ca_file"),
        pytest.param(b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", id="deep-nesting"),
        pytest.param(b"[defaults]\nsettle = " + b"9" * 4301 + b"\n", id="integer-over-4300-digits"),
    ],
)
def test_bug_config_traceback(raw: bytes, tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError):
        config.load(path)
    out = io.StringIO()
    argv = ["--config", str(path), "--state-dir", str(tmp_path / "state"), "check", "--json"]
    assert main(argv, stdout=out) == 2


@pytest.mark.parametrize("text", ["app:é", "app:٣", "ghcr.io/acme/app:ｐｒｏｄ"])
def test_bug_reference_accepts_non_ascii_tag(text: str) -> None:
    with pytest.raises(ConfigError):
        reference.parse(text)


def test_bug_reference_length_checked_before_normalising() -> None:
    text = "a" * 245  # docker.io/ + 245 = 255 accepted; docker.io/library/ + 245 = 263
    try:
        ref = reference.parse(text)
    except ConfigError:
        return  # rejected, as Docker does
    assert reference.parse(str(ref)) == ref


@pytest.mark.parametrize("name", ["../config", "../../victim"])
def test_bug_cli_remove_deletes_outside_config_d(name: str, tmp_path: Path) -> None:
    main_file = tmp_path / "etc" / "config.toml"
    config.config_d(main_file).mkdir(parents=True)
    main_file.write_text("[defaults]\nsettle = 1\n")
    victim = tmp_path / "victim.toml"
    victim.write_text("x = 1\n")
    argv = ["--config", str(main_file), "--state-dir", str(tmp_path / "state")]
    code = main([*argv, "remove", name], stdout=io.StringIO())
    assert main_file.exists() and victim.exists(), "deleted a file outside config.d"
    assert code == 2


def _single_answer_script(www_authenticate: str, token_body: bytes = b'{"token": "t"}') -> Script:
    challenge_reply = Reply(
        b"HTTP/1.1 401 Unauthorized\r\n", [("WWW-Authenticate", www_authenticate)], b"", "length"
    )
    ok = Reply(
        b"HTTP/1.1 200 OK\r\n", [("Docker-Content-Digest", "sha256:" + "a" * 64)], b"", "length"
    )
    token = Reply(
        b"HTTP/1.1 200 OK\r\n", [("Content-Type", "application/json")], token_body, "length"
    )
    return Script(head=[challenge_reply, ok], get=[ok], token=[token])


def _digest(
    server: _Server, text: str, script: Script, client: registry.Registries | None = None
) -> str:
    server.script = script
    server.authorizations = []
    own = client is None
    client = client or registry.Registries(lambda host: RegistrySettings(), DockerConfig())
    try:
        return client.digest(reference.parse(text))
    finally:
        if own:
            client.close()


@pytest.mark.parametrize(
    ("image", "www_authenticate", "token_body"),
    [
        pytest.param("{host}/app:é", None, None, id="tag-non-ascii"),
        pytest.param("[a:b]/app:1", None, None, id="host-bad-brackets"),
        pytest.param("{host}/app:1", 'Bearer realm="http://[::1"', None, id="realm-bad-brackets"),
        pytest.param(
            "{host}/app:1", 'Bearer realm="http://{host}/tök"', None, id="realm-non-ascii"
        ),
        pytest.param(
            "{host}/app:1",
            'Bearer realm="http://{host}/token"',
            b'{"token": "a\\nb"}',
            id="token-newline",
        ),
        pytest.param(
            "{host}/app:1",
            'Bearer realm="http://{host}/token"',
            b'{"token": "a\\u20acb"}',
            id="token-non-latin1",
        ),
    ],
)
def test_bug_digest_traceback(
    image: str,
    www_authenticate: str | None,
    token_body: bytes | None,
    server: _Server,
    docker_configs: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", docker_configs["empty"])
    host = f"127.0.0.1:{server.server_address[1]}"
    script = _single_answer_script(
        (www_authenticate or "Basic").replace("{host}", host), token_body or b'{"token": "t"}'
    )
    try:
        result = _digest(server, image.replace("{host}", host), script)
    except (ConfigError, RegistryError):
        return  # rejected by parse, or a named error: both fine
    assert SHA256.fullmatch(result)


def test_bug_token_request_target_without_path(
    server: _Server, docker_configs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", docker_configs["empty"])
    host = f"127.0.0.1:{server.server_address[1]}"
    script = _single_answer_script(f'Bearer realm="http://{host}",service="s"')
    _digest(server, f"{host}/app:1", script)
    token_requests = [p for m, p in script.seen if "/manifests/" not in p]
    assert token_requests and all(p.startswith("/") for p in token_requests), token_requests


def test_unreachable_realm_is_named(
    server: _Server, docker_configs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", docker_configs["empty"])
    host = f"127.0.0.1:{server.server_address[1]}"
    script = _single_answer_script('Bearer realm="http://127.0.0.1:1/token",service="s"')
    with pytest.raises(RegistryError) as err:
        _digest(server, f"{host}/app:1", script)
    assert re.search(r"127\.0\.0\.1:1(?!\d)", str(err.value)), str(err.value)


def test_bug_short_lived_token_is_fetched_once_per_run(
    server: _Server, docker_configs: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", docker_configs["empty"])
    host = f"127.0.0.1:{server.server_address[1]}"
    script = _single_answer_script(
        f'Bearer realm="http://{host}/token",service="s"', b'{"token": "t", "expires_in": 5}'
    )
    script.head = [script.head[0], script.head[1], script.head[1], script.head[1]]
    client = registry.Registries(lambda h: RegistrySettings(), DockerConfig())
    try:
        for _ in range(3):
            assert SHA256.fullmatch(_digest(server, f"{host}/app:1", script, client))
    finally:
        client.close()
    assert len([p for _, p in script.seen if p.startswith("/token")]) == 1, script.seen


def test_bug_challenge_empty_list_elements() -> None:
    found = challenge.parse('Bearer realm="https://a/t",,service="r", ,scope="s"')
    assert found == [
        challenge.Challenge("bearer", {"realm": "https://a/t", "service": "r", "scope": "s"})
    ]
