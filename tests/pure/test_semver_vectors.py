"""`follow = "semver:..."` against the test vectors of node-semver and Masterminds/semver.

tests/data/vectors/semver-*.json hold the upstream vectors as transcribed (repository, path and
commit in each). Every vector either agrees with what `updater.models.follow` does, or is listed in
semver-differences.json under a reason docs/semver.md explains, or has no counterpart here (an
option we do not have, a value that is not a string, an internal function): the test says which.
A listed difference that starts to agree fails too, so that the list stays true.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from updater.models.follow import Follow, parse

pytestmark = pytest.mark.pure

DATA = Path(__file__).parents[1] / "data" / "vectors"
DOCS = Path(__file__).parents[2] / "docs" / "semver.md"
LISTED: dict[str, str] = json.loads((DATA / "semver-differences.json").read_text())["differences"]
INTERNAL = {"TestRewriteRange", "TestIsX"}  # Masterminds' internal helpers, not its ranges

Verdict = tuple[str, str, Any, bool | str]  # family, id, the vector, agrees (or why no counterpart)


def policy(range_: str) -> Follow | None:
    """The product's reading of `range_`, or None when it refuses it."""
    try:
        return parse(f"semver:{range_}")
    except ValueError:
        return None


def follows(range_: str, tag: str, prereleases: bool) -> bool | None:
    """Whether a unit following `range_` may deploy `tag`; None when the range is refused."""
    read = policy(range_)
    return None if read is None else read.newest([tag], prereleases) == tag


def same_meaning(range_: str, canonical: str, prereleases: bool) -> bool:
    """Whether both read, to the same alternatives of comparators."""
    read, other = policy(range_), policy(canonical)
    if read is None or other is None:
        return False
    return (read.prereleases if prereleases else read.releases) == other.releases


def node_options(raw: Any) -> tuple[bool, bool]:
    """(loose, includePrerelease) as node-semver's parseOptions reads the transcribed value."""
    if not raw or raw == {"undefined": True}:
        return False, False
    if not isinstance(raw, dict):
        return True, False  # `true`, or any other value that is not an object: loose
    given = raw.get("object", {})  # a regular expression is an object with neither
    options = {k: v for k, v in given.items() if v != {"undefined": True}}
    return bool(options.get("loose")), bool(options.get("includePrerelease"))


def node_verdicts() -> Iterator[Verdict]:
    verdict: bool | str
    for name in ["range-include", "range-exclude", "range-parse", "comparisons"]:
        for i, vector in enumerate(load(f"semver-node-{name}")["vectors"]):
            first, second, *rest = vector
            loose, pre = node_options(rest[0] if rest else None)
            verdict = "loose" if loose else "not a string"
            if not loose and isinstance(first, str) and isinstance(second, str | None):
                verdict = node_agrees(name, first, second, pre)
            yield "node-semver", f"node:{name}:{i}", vector, verdict
    for i, vector in enumerate(load("semver-node-invalid-versions")["vectors"]):
        value, _, *rest = vector
        loose, _ = node_options(rest[0] if rest else None)
        verdict = "not a string" if not isinstance(value, str) else "loose"
        if isinstance(value, str) and not loose:
            verdict = parse("semver:*").newest([value], prereleases=True) is None
        yield "node-semver", f"node:invalid-versions:{i}", vector, verdict


def node_agrees(name: str, first: str, second: Any, pre: bool) -> bool:
    if name == "range-include":
        return follows(first, second, pre) is True
    if name == "range-exclude":
        return follows(first, second, pre) is False
    if name == "range-parse":
        return policy(first) is None if second is None else same_meaning(first, second, pre)
    star = parse("semver:*")  # comparisons: the first ranks above the second, read either way
    return all(star.newest(order, True) == first for order in ([first, second], [second, first]))


def masterminds_verdicts() -> Iterator[Verdict]:
    for table in load("semver-masterminds-constraints")["tables"]:
        test, pre = table["test"], "IncludePrerelease" in table["test"]
        for i, row in enumerate(table["rows"]):
            where = f"masterminds:{test}.{table['table']}:{i}"
            if test in INTERNAL:
                yield "Masterminds/semver", where, row, "internal function"
            else:
                yield "Masterminds/semver", where, row, masterminds_agrees(row, pre)


def masterminds_agrees(row: dict[str, Any], pre: bool) -> bool:
    if "err" in row:  # TestParseConstraint, TestNewConstraint: whether it reads at all
        return (policy(row.get("in", row.get("input")) or "") is None) == row["err"]
    if "check" in row:
        return follows(row["constraint"], row["version"], pre) is row["check"]
    if "msg" in row:  # Validate's refusals: the message has no counterpart, the refusal has
        return follows(row["constraint"], row["version"], pre) is False
    canonical: str = (
        row["st"] if "st" in row else row["want"]
    )  # String(), MarshalText, UnmarshalText
    return same_meaning(row["constraint"], canonical, False)


def load(name: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text())
    return found


VERDICTS = [*node_verdicts(), *masterminds_verdicts()]


@pytest.mark.parametrize("family", ["node-semver", "Masterminds/semver"])
def test_every_vector_agrees_or_is_a_documented_difference(family: str) -> None:
    wrong = []
    for fam, where, vector, verdict in VERDICTS:
        if fam != family or isinstance(verdict, str):
            continue
        if verdict == (where in LISTED):
            wrong.append(f"{where} {vector}: " + ("listed, but agrees" if verdict else "differs"))
    assert not wrong, "\n".join(wrong)


def test_each_listed_difference_is_a_vector_with_a_documented_reason() -> None:
    ids = {where for _, where, _, verdict in VERDICTS if not isinstance(verdict, str)}
    assert set(LISTED) <= ids
    documented = DOCS.read_text()
    for reason in set(LISTED.values()):
        assert f"`{reason}`" in documented, reason


def test_the_counts_docs_give_are_the_counts() -> None:
    """docs/semver.md states, per family: total / agree / documented difference / no counterpart."""
    counts: Counter[tuple[str, str]] = Counter()
    for family, where, _, verdict in VERDICTS:
        kind = "none" if isinstance(verdict, str) else "differ" if where in LISTED else "agree"
        counts[family, kind] += 1
        counts[family, "total"] += 1
    documented = DOCS.read_text()
    for family in ["node-semver", "Masterminds/semver"]:
        row = " | ".join(str(counts[family, k]) for k in ["total", "agree", "differ", "none"])
        assert f"| {family} | {row} |" in documented
