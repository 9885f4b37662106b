"""Fuzzing the configuration loader, the CLI's exit 2, `add` and `remove`: bad input never gives a traceback, always a named error.

The bugs the fuzzers found are pinned at the end, one test each.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import datetime
import io
import json
import math
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import assume, event, given
from hypothesis import strategies as st

from testbed.fuzzing import (
    RefParts,
    domains,
    fuzz,
    path_components,
    reference_ish,
    reference_parts,
    repeat,
    sha256_digests,
    short_alnum_runs,
    tags,
)
from updater import config
from updater.cli import main
from updater.errors import ConfigError
from updater.models import reference

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
    expected_hosts = [  # each registry under its one spelling
        reference.canonical_registry(h) for doc in docs for h in doc.get("registries", {})
    ]
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
