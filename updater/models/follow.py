"""Tag policies: which of a repository's tags a unit follows.

`semver:RANGE` reads tags as semantic versions 2.0.0, with an optional leading `v`, and also
the partial versions `1.2` and `1`, read as 1.2.0 and 1.0.0. RANGE is npm's, with npm's meaning
(`updater.models.semver` reads it as node-semver does): `^1.2.3`, `~1.2.3`, x-ranges (`1.x`,
`1.2.*`, a bare `1.2`), comparators and their AND (`>=1.2 <2`), `||` alternatives, hyphen ranges
(`1.2 - 2.3`) and pre-release floors (`^1.2.3-rc.0`). A pre-release is allowed only where the
range names a pre-release of the same major.minor.patch, unless pre-releases are asked for
(npm's `includePrerelease`). An empty range is refused rather than read as `*`.

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

from updater.models.semver import Range, Version, natural, parse_range, satisfies, version

MAX_TAG = 128  # Docker's limit; longer text is no tag, and int() may refuse it
_POLICIES = '"semver:^1.2", "semver:~1" or "regex:PATTERN"'
_RANGES = 'npm\'s, such as "^1.2.3", "~1.2", "1.2.x", ">=1.2 <2", "1.2 - 2.3" or "^1 || ^2"'


@dataclass(frozen=True)
class Follow:
    """A tag policy: a semver range, read without and with pre-releases, or a `pattern`."""

    text: str
    releases: Range | None = None  # the range as npm reads it; None for a pattern
    prereleases: Range | None = None  # as npm reads it with includePrerelease
    pattern: re.Pattern[str] | None = None

    def newest(self, tags: Iterable[str], prereleases: bool = False) -> str | None:
        """The newest tag this policy accepts, or None when no tag matches."""
        tags = (tag for tag in tags if len(tag) <= MAX_TAG)
        if self.pattern is None:
            alternatives = self.prereleases if prereleases else self.releases
            assert alternatives is not None  # a policy is a range or a pattern
            read = ((tag, version(tag)) for tag in tags)
            return _newest(read, lambda v: satisfies(alternatives, v, prereleases))
        matches = [(tag, m) for tag in tags if (m := self.pattern.fullmatch(tag))]
        if "version" in self.pattern.groupindex:
            read_group = [(tag, version(m["version"] or "")) for tag, m in matches]
        else:
            read_group = [(tag, version(tag)) for tag, _ in matches]
            if any(found is None for _, found in read_group):
                return max((tag for tag, _ in matches), key=lambda t: (natural(t), t))
        return _newest(read_group, lambda v: prereleases or v.pre is None)

    def __str__(self) -> str:
        return self.text


def _newest(
    read: Iterable[tuple[str, Version | None]], holds: Callable[[Version], bool]
) -> str | None:
    """The tag of the highest-ranked version `holds` accepts, in one pass."""
    best: tuple[Any, ...] | None = None
    for tag, found in read:
        if found is None or not holds(found):
            continue
        rank = found.rank(tag)
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
    if not spec.strip():  # npm reads it as `*`; here it is more likely a value left out
        raise ValueError(f'{spec!r} is not a semver range: empty (write "*" for any version)')
    try:
        return Follow(text, parse_range(spec, False), parse_range(spec, True))
    except ValueError as err:
        raise ValueError(f"{spec!r} is not a semver range ({err}): {_RANGES}") from err
