"""Fuzzing image references: bad input never gives a traceback, always a named error.

The bugs the fuzzers found are pinned at the end, one test each.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, example, given, note
from hypothesis import strategies as st

from testbed.fuzzing import (
    ASCII_TAG,
    LINEAR_BUDGET,
    LOWER_ALNUM,
    RefParts,
    _domain_like,
    fuzz,
    path_components,
    reference_ish,
    reference_parts,
    repeat,
    sha256_digests,
    timed,
)
from updater.errors import ConfigError
from updater.models import reference


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
        with pytest.raises(ConfigError, match="255|image ID"):
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
        short = ref.path.count("/") == 1
        assert ref.familiar_repository == (ref.path.removeprefix("library/") if short else ref.path)
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
    # 64 hex digits alone are an image ID to Docker, not a name (the grammar test covers it).
    assume(suffix or not re.fullmatch(r"[0-9a-f]{64}", name))
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


@pytest.mark.parametrize("text", ["app:é", "app:٣", "ghcr.io/acme/app:ｐｒｏｄ"])
def test_bug_reference_accepts_non_ascii_tag(text: str) -> None:
    with pytest.raises(ConfigError):
        reference.parse(text)


def test_bug_reference_length_checked_before_normalising() -> None:
    text = "a" * 250  # 250 accepted; library/ + 250 = 258 over the path limit
    try:
        ref = reference.parse(text)
    except ConfigError:
        return  # rejected, as Docker does
    assert reference.parse(str(ref)) == ref
