"""Semantic versions as tags spell them, and npm's ranges over them, meaning what npm means.

A range is read as node-semver 7 reads it (`classes/range.js`), step by step and in its order,
because its meaning lives in that order: whitespace collapsed, `||` alternatives, build metadata
dropped, a hyphen range rewritten, operators joined to their versions, then each `^`, `~`,
x-range and `*` rewritten into plain comparators (`^1.2` is `>=1.2.0 <2.0.0-0`). A version
satisfies an alternative when it satisfies all its comparators and, if it is a pre-release and
pre-releases were not asked for, one of them names a pre-release of the same major.minor.patch.
Asking for pre-releases is npm's `includePrerelease`. What npm's `loose` mode reads is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

MAX_RANGE = 1024  # int() refuses numbers past 4300 digits; no range people write comes close
_NUM = r"(?:0|[1-9][0-9]*)"
_IDENT = rf"(?:{_NUM}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_BUILD = r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))"
_VERSION = re.compile(
    rf"v?({_NUM})(?:\.({_NUM})(?:\.({_NUM})(?:-({_IDENT}(?:\.{_IDENT})*))?{_BUILD}?)?)?"
)

# node-semver's own patterns (internal/re.js), in its names where they help to compare; left to
# re's cache to compile, as a range needs them (compiling them all costs a run milliseconds).
_PRE = rf"(?:-({_IDENT}(?:\.{_IDENT})*))"
_XID = rf"{_NUM}|x|X|\*"
_XPLAIN = rf"[v=\s]*({_XID})(?:\.({_XID})(?:\.({_XID})(?:{_PRE})?{_BUILD}?)?)?"
_GTLT = r"((?:<|>)?=?)"
_HYPHEN = rf"\s*({_XPLAIN})\s+-\s+({_XPLAIN})\s*"
_COMPARATOR_TRIM = rf"(\s*){_GTLT}\s*({_XPLAIN})"
_TILDE_TRIM = r"(\s*)(?:~>?)\s+"
_CARET_TRIM = r"(\s*)\^\s+"
_TILDE = rf"(?:~>?){_XPLAIN}"
_CARET = rf"\^{_XPLAIN}"
_XRANGE = rf"{_GTLT}\s*{_XPLAIN}"
_STAR = r"(<|>)?=?\s*\*"
_COMPARATOR = rf"{_GTLT}\s*(v?{_NUM}\.{_NUM}\.{_NUM}{_PRE}?{_BUILD}?)"

Numbers = tuple[int, int, int]


@dataclass(frozen=True)
class Version:
    """A tag read as a semantic version."""

    numbers: Numbers
    pre: tuple[tuple[int, int | str], ...] | None  # None for a release
    written: int  # how many numbers the tag writes: 3, or 2 or 1 for a partial version

    @cached_property
    def precedence(self) -> tuple[Any, ...]:
        """Semver precedence: a release above its pre-releases, build metadata aside."""
        return (self.numbers, (1,) if self.pre is None else (0, *self.pre))

    def rank(self, tag: str) -> tuple[Any, ...]:
        """What the newest tag is chosen by: precedence, then the tie-breaks."""
        return (*self.precedence, self.written, natural(tag), tag)


def version(text: str) -> Version | None:
    """The version `text` spells, or None when it is not one."""
    found = _VERSION.fullmatch(text)
    if found is None:
        return None
    major, minor, patch, pre, _ = found.groups()
    given = [int(n) for n in (major, minor, patch) if n is not None]
    numbers = (*given, 0, 0)[:3]
    if pre is None:
        return Version((numbers[0], numbers[1], numbers[2]), None, len(given))
    # Semver: numeric identifiers below alphanumeric ones, and compared as numbers.
    idents = tuple((0, int(i)) if i.isdigit() else (1, i) for i in pre.split("."))
    return Version((numbers[0], numbers[1], numbers[2]), idents, len(given))


def natural(tag: str) -> tuple[str | int, ...]:
    """`tag` with its digit runs as numbers (`re.split` puts them at the odd places)."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(re.split(r"([0-9]+)", tag)))


@dataclass(frozen=True)
class Comparator:
    """`op` (`<`, `<=`, `>`, `>=`, or "" for equal) and its version; None for any version."""

    op: str
    version: Version | None

    def test(self, candidate: Version) -> bool:
        """Whether `candidate` satisfies this comparator."""
        if self.version is None:
            return True
        return _COMPARE[self.op](self.version.precedence, candidate.precedence)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "": lambda v, c: c == v,
    "<": lambda v, c: c < v,
    "<=": lambda v, c: c <= v,
    ">": lambda v, c: c > v,
    ">=": lambda v, c: c >= v,
}
_NOTHING = Comparator("<", Version((0, 0, 0), ((0, 0),), 3))  # node's null set, <0.0.0-0
Range = tuple[tuple[Comparator, ...], ...]  # alternatives, each an AND of comparators


def satisfies(alternatives: Range, candidate: Version, prereleases: bool) -> bool:
    """Whether `candidate` satisfies one of the alternatives (node-semver's testSet)."""
    return any(_satisfies_all(c, candidate, prereleases) for c in alternatives)


def _satisfies_all(comparators: tuple[Comparator, ...], candidate: Version, pre: bool) -> bool:
    for comparator in comparators:
        if not comparator.test(candidate):
            return False
    if candidate.pre is None or pre:
        return True
    # A pre-release only where the range names one of the same major.minor.patch.
    named = (c.version for c in comparators if c.version is not None and c.version.pre)
    return any(v.numbers == candidate.numbers for v in named)


def parse_range(spec: str, prereleases: bool) -> Range:
    """The alternatives `spec` means; ValueError naming the comparator that is not one."""
    if len(spec) > MAX_RANGE:
        raise ValueError(f"longer than {MAX_RANGE} characters")
    raw = re.sub(r"\s+", " ", spec.strip())
    alternatives = [_alternative(part.strip(), prereleases) for part in raw.split("||")]
    if len(alternatives) > 1:  # node's pruning, which is not only cosmetic: `*` wins outright
        kept = [a for a in alternatives if a[0] != _NOTHING] or alternatives[:1]
        alternatives = next(([a] for a in kept if a == (Comparator("", None),)), kept)
    return tuple(alternatives)


def _alternative(text: str, pre: bool) -> tuple[Comparator, ...]:
    """One `||` alternative's comparators (node-semver's parseRange)."""
    text = re.sub(_BUILD, "", text)
    hyphen = re.fullmatch(_HYPHEN, text) if re.search(r"\s-\s", text) else None
    text = text if hyphen is None else _hyphen(hyphen, pre)
    text = re.sub(_COMPARATOR_TRIM, r"\1\2\3", text)
    text = re.sub(_TILDE_TRIM, r"\1~", text)
    text = re.sub(_CARET_TRIM, r"\1^", text)
    words = " ".join(_rewrite(word, pre) for word in text.split(" ")).split()
    floor = ">=0.0.0-0" if pre else ">=0.0.0"  # any version: node drops it for ""
    comparators = [_comparator(w) for w in [w for w in words if w != floor] or [""]]
    if _NOTHING in comparators:  # every comparator is read first: a bad one is an error
        return (_NOTHING,)
    found = dict.fromkeys(comparators)  # once each, in order
    if len(found) > 1:
        found.pop(Comparator("", None), None)
    return tuple(found)


def _comparator(word: str) -> Comparator:
    """A plain comparator, after the rewriting: `>=1.2.0`, `1.2.3`, or "" (any)."""
    if not word:
        return Comparator("", None)
    found = re.fullmatch(_COMPARATOR, word)
    read = version(found[2]) if found else None
    if found is None or read is None:
        raise ValueError(f"{word!r} is not a comparator")
    return Comparator("" if found[1] == "=" else found[1], read)


def _rewrite(word: str, pre: bool) -> str:
    """`word` as plain comparators (node-semver's parseComparator)."""
    word = " ".join(_whole(_CARET, w, _caret, pre) for w in word.split())
    word = " ".join(_whole(_TILDE, w, _tilde, pre) for w in word.split())
    word = " ".join(_xrange(w, pre) for w in word.split())
    return re.sub(_STAR, "", word.strip(), count=1)


def _whole(
    pattern: str, word: str, rewrite: Callable[[re.Match[str], bool], str], pre: bool
) -> str:
    """`word` rewritten if `pattern` matches all of it, else as it is."""
    found = re.fullmatch(pattern, word)
    return word if found is None else rewrite(found, pre)


def _is_x(part: str | None) -> bool:
    return not part or part in ("x", "X", "*")


def _caret(m: re.Match[str], pre: bool) -> str:
    """`^M.m.p-pr`: the numbers up to the first non-zero one stay (node-semver's replaceCaret)."""
    major, minor, patch, tag = m[1], m[2], m[3], m[4]
    z = "-0" if pre else ""
    if _is_x(major):
        return ""
    if _is_x(minor):
        return f">={major}.0.0{z} <{int(major) + 1}.0.0-0"
    if _is_x(patch):
        upper = f"{major}.{int(minor) + 1}.0" if major == "0" else f"{int(major) + 1}.0.0"
        return f">={major}.{minor}.0{z} <{upper}-0"
    lower = f">={major}.{minor}.{patch}" + (f"-{tag}" if tag else "")
    if major == "0" and minor == "0":
        return f"{lower} <0.0.{int(patch) + 1}-0"
    if major == "0":
        return f"{lower} <0.{int(minor) + 1}.0-0"
    return f"{lower} <{int(major) + 1}.0.0-0"


def _tilde(m: re.Match[str], pre: bool) -> str:
    """`~M.m.p-pr`: the major and minor stay (node-semver's replaceTilde)."""
    major, minor, patch, tag = m[1], m[2], m[3], m[4]
    z = "-0" if pre else ""
    if _is_x(major):
        return ""
    if _is_x(minor):
        return f">={major}.0.0{z} <{int(major) + 1}.0.0-0"
    if _is_x(patch):
        return f">={major}.{minor}.0{z} <{major}.{int(minor) + 1}.0-0"
    lower = f">={major}.{minor}.{patch}" + (f"-{tag}" if tag else "")
    return f"{lower} <{major}.{int(minor) + 1}.0-0"


def _xrange(word: str, pre: bool) -> str:
    """`1.x`, `>1.2`, `<=1` and the like as plain comparators (node-semver's replaceXRange)."""
    m = re.fullmatch(_XRANGE, word.strip())
    if m is None:
        return word.strip()
    op, major, minor, patch = m[1], m[2], m[3], m[4]
    if (_is_x(major) and not _is_x(minor)) or (_is_x(minor) and patch and not _is_x(patch)):
        return word.strip()  # `x.1`, `1.x.5`: left to fail as a comparator
    x_major, x_minor = _is_x(major), _is_x(major) or _is_x(minor)
    if not (x_minor or _is_x(patch)):
        return word.strip()  # a whole version: a comparator already
    z = "-0" if pre else ""
    if x_major:
        return "<0.0.0-0" if op in ("<", ">") else "*"
    if op in ("", "="):
        if x_minor:
            return f">={major}.0.0{z} <{int(major) + 1}.0.0-0"
        return f">={major}.{minor}.0{z} <{major}.{int(minor) + 1}.0-0"
    low_minor = 0 if x_minor else int(minor)
    if op == ">":  # >1 is >=2.0.0, >1.2 is >=1.3.0
        bumped = (int(major) + 1, 0) if x_minor else (int(major), low_minor + 1)
        return f">={bumped[0]}.{bumped[1]}.0{z}"
    if op == "<=":  # <=1.2 is <1.3.0-0: every 1.2.x is allowed
        bumped = (int(major) + 1, 0) if x_minor else (int(major), low_minor + 1)
        return f"<{bumped[0]}.{bumped[1]}.0-0"
    if op == "<":
        return f"<{major}.{low_minor}.0-0"
    return f"{op}{major}.{low_minor}.0{z}"


def _hyphen(m: re.Match[str], pre: bool) -> str:
    """`A - B` as `>=A <=B`, partial ends widened (node-semver's hyphenReplace)."""
    (start, major, minor, patch, tag, _), (end, e_major, e_minor, e_patch, e_tag, _) = (
        m.groups()[:6],
        m.groups()[6:],
    )
    z = "-0" if pre else ""
    if _is_x(major):
        low = ""
    elif _is_x(minor):
        low = f">={major}.0.0{z}"
    elif _is_x(patch):
        low = f">={major}.{minor}.0{z}"
    else:
        low = f">={start}" + ("" if tag else z)
    if _is_x(e_major):
        high = ""
    elif _is_x(e_minor):
        high = f"<{int(e_major) + 1}.0.0-0"
    elif _is_x(e_patch):
        high = f"<{e_major}.{int(e_minor) + 1}.0-0"
    elif e_tag:
        high = f"<={e_major}.{e_minor}.{e_patch}-{e_tag}"
    elif pre:
        high = f"<{e_major}.{e_minor}.{int(e_patch) + 1}-0"
    else:
        high = f"<={end}"
    return f"{low} {high}".strip()
