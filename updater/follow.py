"""Tag policies: which of a repository's tags a unit follows.

`semver:RANGE` reads tags as semantic versions 2.0.0, with an optional leading `v`, and also
the partial versions `1.2` and `1`, read as 1.2.0 and 1.0.0. RANGE is npm's and Cargo's:
`^1.2.3` (>=1.2.3 <2.0.0; `^0.2.3` <0.3.0, `^0.0.3` <0.0.4), `~1.2.3` (>=1.2.3 <1.3.0;
`~1` <2.0.0), a bare `1.2.3` (exactly), a bare `1.2` or `1` (as `~1.2`, `~1`), or `*`. Each
takes one to three numbers. Pre-releases count only when asked for, and never the bound's own
(`^1` never gives `2.0.0-rc.1`).

Among the tags a range accepts, the newest is the highest semver precedence (build metadata
aside); at equal precedence the tag with more numbers written wins (`1.2.0` over `1.2` over `1`),
then the tag in natural order (`1.2.3+b10` over `1.2.3+b9`), then as a string (`v1.2.3` over
`1.2.3`). Tags that are not versions (`latest`, `1.2.3.4`, `01.2.3`) are ignored.

`regex:PATTERN` follows the tags PATTERN matches as a whole (Python's `re`). If it has a group
named `version`, the newest is by semver order of that group's text (tags whose group is not a
version are ignored); otherwise, if every matching tag is a version, by semver order of the tag;
otherwise by natural order, digit runs compared as numbers (`build-10` over `build-9`), ties by
the string. `prereleases` matters only in the semver orders: natural order counts every match.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

MAX_TAG = 128  # Docker's limit; longer text is no tag (nor a range), and int() may refuse it
_NUM = r"(?:0|[1-9][0-9]*)"
_IDENT = rf"(?:{_NUM}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_VERSION = re.compile(
    rf"v?({_NUM})(?:\.({_NUM})(?:\.({_NUM})(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+{_BUILD})?)?)?"
)
_RANGE = re.compile(rf"([\^~]?)v?({_NUM})(?:\.({_NUM})(?:\.({_NUM}))?)?")
_POLICIES = '"semver:^1.2", "semver:~1" or "regex:PATTERN"'
_RANGES = '"^1.2.3", "~1.2.3", "1.2.3" (exactly), "1.2" (as ~1.2) or "*"; 1 to 3 numbers, v allowed'

Numbers = tuple[int, int, int]


@dataclass(frozen=True)
class _Version:
    """A tag read as a semantic version."""

    numbers: Numbers
    pre: tuple[tuple[int, int | str], ...] | None  # None for a release
    written: int  # how many numbers the tag writes: 3, or 2 or 1 for a partial version

    def rank(self, tag: str) -> tuple[Any, ...]:
        """What `newest` compares: precedence, then the tie-breaks."""
        pre = (1,) if self.pre is None else (0, *self.pre)  # a release above its pre-releases
        return (self.numbers, pre, self.written, _natural(tag), tag)


def _version(text: str) -> _Version | None:
    """The version `text` spells, or None when it is not one."""
    found = _VERSION.fullmatch(text)
    if found is None:
        return None
    major, minor, patch, pre = found.groups()
    given = [int(n) for n in (major, minor, patch) if n is not None]
    if pre is None:
        return _Version(_three(given), None, len(given))
    # Semver: numeric identifiers below alphanumeric ones, and compared as numbers.
    idents = tuple((0, int(i)) if i.isdigit() else (1, i) for i in pre.split("."))
    return _Version(_three(given), idents, len(given))


def _three(given: list[int]) -> Numbers:
    """`given` (one to three numbers) padded with zeros."""
    major, minor, patch = (*given, 0, 0)[:3]
    return (major, minor, patch)


def _natural(tag: str) -> tuple[str | int, ...]:
    """`tag` with its digit runs as numbers (`re.split` puts them at the odd places)."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"([0-9]+)", tag)))


@dataclass(frozen=True)
class Follow:
    """A tag policy: a semver range (`lower`, `upper`) or a `pattern`."""

    text: str
    lower: Numbers | None = None  # inclusive; None for any
    upper: Numbers | None = None  # exclusive, pre-releases of it too; None for any
    pattern: re.Pattern[str] | None = None

    def newest(self, tags: Iterable[str], prereleases: bool = False) -> str | None:
        """The newest tag this policy accepts, or None when no tag matches."""
        tags = (tag for tag in tags if len(tag) <= MAX_TAG)
        if self.pattern is None:
            return _newest(((tag, _version(tag)) for tag in tags), self._holds, prereleases)
        matches = [(tag, m) for tag in tags if (m := self.pattern.fullmatch(tag))]
        if "version" in self.pattern.groupindex:
            read = [(tag, _version(m["version"] or "")) for tag, m in matches]
        else:
            read = [(tag, _version(tag)) for tag, _ in matches]
            if any(version is None for _, version in read):
                return max((tag for tag, _ in matches), key=lambda t: (_natural(t), t))
        return _newest(read, lambda _: True, prereleases)

    def _holds(self, version: _Version) -> bool:
        """Whether the range holds `version` (a pre-release of `lower` is below it)."""
        if self.lower is not None and (
            version.numbers < self.lower or (version.numbers == self.lower and version.pre)
        ):
            return False
        return self.upper is None or version.numbers < self.upper

    def __str__(self) -> str:
        return self.text


def _newest(
    read: Iterable[tuple[str, _Version | None]], holds: Callable[[_Version], bool], pre: bool
) -> str | None:
    """The tag of the highest-ranked version `holds` accepts, in one pass."""
    best: tuple[Any, ...] | None = None
    for tag, version in read:
        if version is None or (version.pre and not pre) or not holds(version):
            continue
        rank = version.rank(tag)
        if best is None or rank > best:
            best = rank
    return None if best is None else best[-1]


def parse(text: str) -> Follow:
    """The policy `text` configures; ValueError saying what is wrong and what is accepted."""
    kind, colon, rest = text.partition(":")
    if colon and kind == "semver":
        return _semver(text, rest)
    if colon and kind == "regex":
        if not rest:
            raise ValueError(f'{text!r} has no pattern: "regex:PATTERN", e.g. "regex:prod-[0-9]+"')
        try:
            return Follow(text, pattern=re.compile(rest))
        except re.error as err:
            raise ValueError(f"{rest!r} is not a regular expression: {err}") from err
    raise ValueError(f"{text!r} is not a tag policy: {_POLICIES}")


def _semver(text: str, spec: str) -> Follow:
    """The policy for the range `spec` (`text` is the whole policy)."""
    if spec == "*":
        return Follow(text)
    found = _RANGE.fullmatch(spec) if len(spec) <= MAX_TAG else None
    if found is None:
        raise ValueError(f"{spec!r} is not a semver range: {_RANGES}")
    op, *written = found.groups()
    given = [int(n) for n in written if n is not None]
    # The upper bound is one up at `at`: the numbers before it may not change.
    if op == "^":  # the leftmost non-zero number, or the last one written if all are zero
        at = next((i for i, n in enumerate(given) if n), len(given) - 1)
    elif op == "~" or len(given) < 3:  # the minor if written, else the major
        at = min(len(given) - 1, 1)
    else:  # exactly this version
        at = 2
    return Follow(text, lower=_three(given), upper=_three([*given[:at], given[at] + 1]))
