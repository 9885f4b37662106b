"""What changed between two images, as CI labelled them: the source repository and the
revisions (`org.opencontainers.image.source` and `.revision`), and a link comparing them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
_HOSTED = re.compile(r"https://(github\.com|gitlab\.com|codeberg\.org|gitea\.com)/[^/\s]+/[^/\s]+")
_REVISION = re.compile(r"[0-9A-Za-z._/-]{1,100}")


@dataclass(frozen=True)
class Change:
    source: str
    old: str
    new: str

    @property
    def compare_url(self) -> str | None:
        """The forge's page comparing the two revisions, where the source is on a known forge."""
        found = _HOSTED.match(self.source.removesuffix(".git"))
        if not found:
            return None
        base = found.group(0)
        middle = "/-/compare/" if found.group(1) == "gitlab.com" else "/compare/"
        return f"{base}{middle}{self.old}...{self.new}"


def change(old: Mapping[str, str], new: Mapping[str, str]) -> Change | None:
    """The change from the image labelled `old` to the one labelled `new`, when both say."""
    source = new.get(SOURCE, "")
    revisions = old.get(REVISION, ""), new.get(REVISION, "")
    if not source or old.get(SOURCE) != source:
        return None
    if not all(_REVISION.fullmatch(r) for r in revisions) or revisions[0] == revisions[1]:
        return None
    return Change(source, *revisions)
