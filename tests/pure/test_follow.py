"""Tag policies: which tag a semver range or a regex picks among a repository's tags."""

from __future__ import annotations

import itertools
import time

import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from testbed.fuzzing import LINEAR_BUDGET, fuzz
from updater.models.follow import parse

pytestmark = pytest.mark.pure

TAGS = [
    "latest", "prod", "sha-abc", "1.2.3.4", "01.2.3", "v",
    "0.0.3", "0.0.4", "0.2.3", "0.2.9", "0.3.0",
    "1.2", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.9.9", "1.10.0-rc.1",
    "2.0.0-rc.1", "2.0.0", "2.1.0",
]  # fmt: skip


@pytest.mark.parametrize(
    ("range_", "newest"),
    [
        ("^1.2.3", "1.9.9"),
        ("^1.2", "1.9.9"),
        ("^1", "1.9.9"),
        ("^0.2.3", "0.2.9"),
        ("^0.0.3", "0.0.3"),
        ("^0", "0.3.0"),
        ("^0.0", "0.0.4"),
        ("^0.0.0", None),
        ("~1.2.3", "1.2.9"),
        ("~1.2", "1.2.9"),
        ("~1", "1.9.9"),
        ("1.2.3", "1.2.3"),
        ("1.2", "1.2.9"),
        ("1", "1.9.9"),
        ("*", "2.1.0"),
        ("v1.2.3", "1.2.3"),
        ("^v1", "1.9.9"),
        ("^3", None),
        ("1.2.4", None),
        # x-ranges
        ("1.x", "1.9.9"),
        ("1.2.x", "1.2.9"),
        ("1.2.*", "1.2.9"),
        ("0.2.X", "0.2.9"),
        ("x", "2.1.0"),
        # comparators and their AND
        (">=1.2 <2", "1.9.9"),
        (">=1.0.0", "2.1.0"),
        ("<2.0.0-0", "1.9.9"),
        ("<1.2.3", "1.2.0"),
        (">1.2.3 <=1.3.0", "1.3.0"),
        (">1.2", "2.1.0"),  # >=1.3.0
        ("<=1.2", "1.2.9"),  # <1.3.0-0
        ("=1.2.3", "1.2.3"),
        (">= 1.2.3 < 1.3", "1.2.9"),
        (">=1.2.3 <1.2.3", None),
        # alternatives
        ("^0.2 || ^1.2.3 <1.3", "1.2.9"),
        ("0.0.x || 0.2.x", "0.2.9"),
        ("^4 || ~0.0.3", "0.0.4"),
        # hyphen ranges
        ("1.2 - 1.3", "1.3.0"),  # <1.4.0-0
        ("0.0.3 - 0.2.3", "0.2.3"),
        ("1.2.3 - 2", "2.1.0"),  # <3.0.0-0
        # a pre-release floor, build metadata, ~>
        ("^1.2.3-rc.0", "1.9.9"),
        ("^1.2.3+build", "1.9.9"),
        ("~>1.2", "1.2.9"),
    ],
)
def test_each_range_form_picks_the_newest_release_it_allows(
    range_: str, newest: str | None
) -> None:
    assert parse(f"semver:{range_}").newest(TAGS) == newest


@pytest.mark.parametrize(
    ("tags", "newest"),
    [
        (["1.2", "1.2.0"], "1.2.0"),  # the full version over the partial one
        (["1.2.0", "1.2"], "1.2.0"),
        (["1", "1.0", "1.0.0"], "1.0.0"),
        (["1", "1.0"], "1.0"),
        (["v1", "1.0"], "1.0"),  # more numbers written before the v tie-break
        (["1.2", "1.1.9"], "1.2"),  # 1.2 reads as 1.2.0
        (["1.2", "1.2.1"], "1.2.1"),
        (["1.2.3", "v1.2.3"], "v1.2.3"),  # equal otherwise: the greater string
        (["1.2.3+b9", "1.2.3+b10", "1.2.3"], "1.2.3+b10"),  # build metadata in natural order
        (["v1.3.0", "1.2.9"], "v1.3.0"),
        (["latest", "prod", "sha-abc", "1.2.3.4", "01.2.3", "1.02", "V1.2.3", "1.2.3-01"], None),
        (["1.2.3", "1.2." + "9" * 5000], "1.2.3"),  # longer than a tag may be
        ([], None),
    ],
)
def test_partial_tags_v_prefix_and_tie_breaks(tags: list[str], newest: str | None) -> None:
    assert parse("semver:^1").newest(tags) == newest


def test_partial_tags_count_only_within_the_range() -> None:
    assert parse("semver:^1.2.3").newest(["1.2", "1"]) is None
    assert parse("semver:~1.2").newest(["1.2", "1.3"]) == "1.2"


def test_prereleases_count_only_when_asked() -> None:
    policy = parse("semver:^1")
    tags = ["1.2.0", "1.3.0-rc.1"]
    assert policy.newest(tags) == "1.2.0"
    assert policy.newest(tags, prereleases=True) == "1.3.0-rc.1"
    assert policy.newest(["1.3.0-rc.1", "1.3.0"], prereleases=True) == "1.3.0"
    assert policy.newest(["1.3.0-rc.1"]) is None


def test_a_prerelease_counts_where_the_range_names_one_of_its_numbers() -> None:
    """npm's rule: without `prereleases`, 1.2.3-rc.1 only where a comparator names a 1.2.3-x."""
    policy = parse("semver:^1.2.3-rc.0")
    assert policy.newest(["1.2.2", "1.2.3-rc.1"]) == "1.2.3-rc.1"
    assert policy.newest(["1.2.3-rc.1", "1.2.3"]) == "1.2.3"
    assert policy.newest(["1.2.4-rc.1", "1.2.3-alpha"]) is None  # another patch; below rc.0
    assert policy.newest(["1.2.4-rc.1"], prereleases=True) == "1.2.4-rc.1"
    assert parse("semver:>=1.2.3-rc.0 <1.2.3 || ^2").newest(["1.2.3-rc.2", "2.1.0-rc.1"]) == (
        "1.2.3-rc.2"
    )


def test_prereleases_reads_the_range_as_includeprerelease_does() -> None:
    """A partial lower bound takes its own pre-releases then (`^1.2` is >=1.2.0-0), a full one
    not (`^1.2.3` is >=1.2.3)."""
    assert parse("semver:^1.2").newest(["1.2.0-rc.1"], prereleases=True) == "1.2.0-rc.1"
    assert parse("semver:1.2.x").newest(["1.2.0-rc.1"], prereleases=True) == "1.2.0-rc.1"
    assert parse("semver:^1.2.3").newest(["1.2.3-rc.1"], prereleases=True) is None
    assert parse("semver:^0.2.3").newest(["0.2.3-rc.1"], prereleases=True) is None
    assert parse("semver:~1.2.3").newest(["1.2.3-rc.1"], prereleases=True) is None
    assert parse("semver:1.2 - 1.3").newest(["1.4.0-rc.1", "1.2.0-0"], prereleases=True) == (
        "1.2.0-0"
    )
    assert parse("semver:^1.2").newest(["1.2.0-rc.1"]) is None


@pytest.mark.parametrize(
    "order",
    [
        # Semver 2.0.0's own example of precedence, lowest first.
        ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
         "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0"],
        ["1.0.0-1", "1.0.0-2", "1.0.0-10", "1.0.0-a"],
        ["1.0.0-rc.1", "1.0.0-rc.1.1"],
        ["1.0.0-a.b.1", "1.0.0-a.b1"],  # where natural order would disagree
    ],
)  # fmt: skip
def test_prereleases_rank_by_semver_precedence(order: list[str]) -> None:
    policy = parse("semver:*")
    for count in range(1, len(order) + 1):
        shown = order[:count]
        assert policy.newest(reversed(shown), prereleases=True) == shown[-1]
        assert policy.newest(shown, prereleases=True) == shown[-1]


@pytest.mark.parametrize(
    ("range_", "tags"),
    [
        ("^1", ["2.0.0-rc.1", "2.0.0-0", "2.0.0", "v2", "3.0.0-alpha"]),
        ("^0.2.3", ["0.3.0-rc.1", "0.3.0", "1.0.0"]),
        ("~1.2", ["1.3.0-rc.1", "1.3", "2.0.0"]),
        ("1.2.3", ["1.2.3-rc.1", "1.2.4-rc.1", "1.2.4"]),  # below the bound, or the bound
        ("^1.2.3", ["1.2.3-rc.1", "1.2.2", "1.2", "0.9.9"]),
    ],
)
def test_never_outside_the_range_even_with_prereleases(range_: str, tags: list[str]) -> None:
    assert parse(f"semver:{range_}").newest(tags, prereleases=True) is None


def test_regex_without_a_version_group_ranks_in_natural_order() -> None:
    policy = parse("regex:build-[0-9]+")
    assert policy.newest(["build-9", "build-10", "build-2", "build-x", "xbuild-99"]) == "build-10"
    assert policy.newest(["build-010", "build-10", "build-9"]) == "build-10"  # ties by string
    assert policy.newest(["latest"]) is None
    assert policy.newest([]) is None


def test_regex_matches_the_whole_tag() -> None:
    assert parse("regex:prod").newest(["prod-1", "preprod", "prod"]) == "prod"
    assert parse("regex:prod-[0-9]+").newest(["prod-1-rc", "prod-2"]) == "prod-2"


def test_regex_mixing_versions_and_words_ranks_in_natural_order() -> None:
    policy = parse("regex:.*")
    assert policy.newest(["1.2.0-rc.1", "1.10.0", "stable"]) == "stable"
    tags = ["1.2.0-rc.9", "1.2.0-rc.10", "1.2"]
    assert policy.newest(tags, prereleases=True) == "1.2"  # all versions: by semver
    # Natural order: pre-releases are just tags, asked for or not.
    assert policy.newest([*tags, "1.1_x"]) == "1.2.0-rc.10"


def test_regex_of_versions_only_ranks_by_semver() -> None:
    policy = parse(r"regex:v?[0-9.]+(-rc\.[0-9]+)?")
    tags = ["1.9.0", "1.10.0", "1.10", "1.11.0-rc.1"]
    assert policy.newest(tags) == "1.10.0"
    assert policy.newest(["1.2.0", "1.2.0-rc.1"], prereleases=True) == "1.2.0"  # not natural
    assert policy.newest(tags, prereleases=True) == "1.11.0-rc.1"
    assert policy.newest(["1.11.0-rc.1"]) is None
    assert policy.newest(["1.2.10", "1.10.2"]) == "1.10.2"


def test_regex_version_group_ranks_by_its_semver() -> None:
    policy = parse(r"regex:app-(?P<version>[^-]+(-rc\.[0-9]+)?)-(alpine|debian)")
    tags = [
        "app-1.9.0-alpine",
        "app-1.10.0-debian",
        "app-1.10.0-alpine",
        "app-2.0.0-rc.1-alpine",
        "app-next-alpine",  # its group is no version
        "1.99.0",
    ]
    assert policy.newest(tags) == "app-1.10.0-debian"  # a tie, broken by the whole tag
    assert policy.newest(tags, prereleases=True) == "app-2.0.0-rc.1-alpine"
    assert policy.newest(["app-next-alpine"]) is None


def test_regex_version_group_that_does_not_take_part_is_no_version() -> None:
    policy = parse(r"regex:(?:(?P<version>[0-9.]+)|edge)")
    assert policy.newest(["edge", "1.2.3", "1.2"]) == "1.2.3"
    assert policy.newest(["edge"]) is None


def test_text_is_kept_as_configured() -> None:
    for text in ["semver:^1.2", "semver:*", "regex:^prod-[0-9]+$"]:
        assert str(parse(text)) == text
        assert parse(text).text == text
    assert parse("semver:^1.2") == parse("semver:^1.2")


POLICY_MESSAGE = """'{}' is not a tag policy: "semver:^1.2", "semver:~1" or "regex:PATTERN\""""
EMPTY_REGEX_MESSAGE = """'regex:' has no pattern: "regex:PATTERN", e.g. "regex:prod-[0-9]+\""""
RANGE_MESSAGE = """'{}' is not a semver range ({}): npm's, such as "^1.2.3", "~1.2", "1.2.x", ">=1.2 <2", "1.2 - 2.3" or "^1 || ^2\""""


@pytest.mark.parametrize(
    "text", ["", "^1.2", "latest", "semver", "regex", "Semver:^1", "sem:^1", " semver:^1", "tag:x"]
)
def test_not_a_policy_names_the_forms(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(text)
    assert str(caught.value) == POLICY_MESSAGE.format(text)


@pytest.mark.parametrize(
    ("range_", "comparator"),
    [
        ("^a", "^a"), ("^1.2.3.4", "^1.2.3.4"), ("1 .2", ".2"), ("^", "^"), ("~", "~"), ("v", "v"),
        ("^1.", "^1."), ("1..2", "1..2"), ("^01", "^01"), ("**", "*"), ("^1,^2", "^1,^2"),
        ("V1", "V1"), ("latest", "latest"), (">", ">"), (">=a", ">=a"), ("x.1", "x.1"),
        ("1.x.5", "1.x.5"), ("1.2 -", "-"), ("1.2.3 - 2 - 3", "-"), ("^1.2.3-", "^1.2.3-"),
        (">=1.2.3 <", "<"), ("1.2 || ^a", "^a"), ("=1.2.3 - 2", ">==1.2.3"),
    ],
)  # fmt: skip
def test_bad_range_names_the_comparator_and_the_forms(range_: str, comparator: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(f"semver:{range_}")
    detail = f"{comparator!r} is not a comparator"
    assert str(caught.value) == RANGE_MESSAGE.format(range_, detail)


def test_range_too_long_or_empty_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        parse("semver:" + "1" * 5000)  # more digits than int() reads
    assert str(caught.value) == RANGE_MESSAGE.format("1" * 5000, "longer than 1024 characters")
    for empty in ["", " ", "\t"]:  # npm reads these as *: here more likely a value left out
        with pytest.raises(ValueError) as caught:
            parse(f"semver:{empty}")
        assert (
            str(caught.value)
            == f"""{empty!r} is not a semver range: empty (write "*" for any version)"""
        )


def test_bad_regex_gives_re_message() -> None:
    with pytest.raises(ValueError) as caught:
        parse("regex:prod-(")
    assert str(caught.value) == (
        "'prod-(' is not a regular expression: missing ), unterminated subpattern at position 5"
    )


def test_empty_regex_is_refused() -> None:
    with pytest.raises(ValueError) as caught:
        parse("regex:")
    assert str(caught.value) == EMPTY_REGEX_MESSAGE


def test_thousands_of_tags_take_one_linear_pass() -> None:
    tags = [f"{a}.{b}.{c}" for a in range(10) for b in range(50) for c in range(40)]
    tags += [f"build-{n}" for n in range(20_000)] + ["x" * 100_000]
    for text in ["semver:^5", "regex:build-[0-9]+", "regex:.*"]:
        policy = parse(text)
        start = time.perf_counter()
        policy.newest(tags, prereleases=True)
        assert time.perf_counter() - start < LINEAR_BUDGET, text
    assert parse("semver:^5").newest(tags) == "5.49.39"
    assert parse("regex:build-[0-9]+").newest(tags) == "build-19999"


# --- the property: newest() is an accepted input that no accepted input ranks above ----------

IDENTS = st.sampled_from(["0", "1", "10", "rc", "0a", "a-b"])
JUNK = ["latest", "prod", "sha-abc", "1.2.3.4", "01.2.3", "1.", "1.2.3-", "v"]
Numbers = tuple[int, int, int]
Parts = tuple[tuple[int, ...], tuple[str, ...]]  # numbers written, pre-release identifiers
Case = tuple[str, str, list[int], list[tuple[str, Parts | None]]]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """A range (its text, operator and numbers) and tags with what they are made of, numbered
    at and next to the range's numbers, so that they fall on its bounds and tie with each other."""
    op = draw(st.sampled_from(["^", "~", "", "*"]))
    given = draw(st.lists(st.integers(0, 1), min_size=1, max_size=3))
    v = draw(st.sampled_from(["", "v"]))
    text = "semver:*" if op == "*" else f"semver:{op}{v}{'.'.join(map(str, given))}"
    near = st.tuples(*(st.integers(max(0, n - 1), n + 1) for n in three(tuple(given))))
    tags: list[tuple[str, Parts | None]] = []
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 9)) == 0:
            tags.append((draw(st.sampled_from(JUNK)), None))
            continue
        numbers = draw(near)[: draw(st.integers(1, 3))]
        pre = tuple(draw(st.lists(IDENTS, max_size=2))) if len(numbers) == 3 else ()
        build = draw(st.sampled_from(["", "+b1", "+b2", "+b10"])) if len(numbers) == 3 else ""
        tag = ".".join(map(str, numbers)) + ("-" + ".".join(pre) if pre else "") + build
        tags.append((draw(st.sampled_from(["", "v"])) + tag, (numbers, pre)))
    return text, op, given, tags


def allowed(op: str, given: list[int], numbers: Numbers, pre: bool, prereleases: bool) -> bool:
    """npm's meaning, said another way: the kept numbers are equal, and not below the range; with
    includePrerelease a partial bound takes its own pre-releases."""
    if op == "*":
        return True
    own_pre = prereleases and len(given) < 3
    if op == "^":
        keep = next((i for i, n in enumerate(given) if n), len(given) - 1) + 1
    elif op == "~" or len(given) < 3:
        keep = min(len(given), 2)
    else:
        keep = 3
    lower = three(tuple(given))
    return list(numbers[:keep]) == given[:keep] and (
        numbers > lower or (numbers == lower and (not pre or own_pre))
    )


def three(numbers: tuple[int, ...]) -> Numbers:
    major, minor, patch = (*numbers, 0, 0)[:3]
    return (major, minor, patch)


def rank(parts: Parts) -> tuple[Numbers, tuple[object, ...], int]:
    """Semver precedence, then more numbers written; build metadata and spelling aside."""
    numbers, pre = parts
    idents = tuple((0, int(i)) if i.isdigit() else (1, i) for i in pre)
    return (three(numbers), (0, *idents) if pre else (1,), len(numbers))


@fuzz(300)
@given(case=cases(), prereleases=st.booleans())
def test_newest_is_an_accepted_tag_none_ranks_above(case: Case, prereleases: bool) -> None:
    text, op, given, items = case
    note(text)
    policy = parse(text)
    accepted = {
        tag: rank(parts)
        for tag, parts in items
        if parts is not None
        and (prereleases or not parts[1])
        and allowed(op, given, three(parts[0]), bool(parts[1]), prereleases)
    }
    # Each tag alone, and each pair that semver ranks apart, so that a wrong judgement shows
    # even when the tag it concerns is not the newest.
    for tag, _ in items:
        assert (policy.newest([tag], prereleases) == tag) == (tag in accepted), tag
    for one, other in itertools.combinations(accepted, 2):
        if accepted[one] != accepted[other]:
            higher = max(one, other, key=accepted.__getitem__)
            assert policy.newest([one, other], prereleases) == higher
    tags = [tag for tag, _ in items]
    newest = policy.newest(tags, prereleases)
    assert newest == policy.newest(reversed(tags), prereleases)
    if newest is None:
        assert not accepted
        return
    assert newest in accepted
    assert accepted[newest] == max(accepted.values())
