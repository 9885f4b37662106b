"""`updater check`'s table, for a person at a terminal (`--json` is for programs)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from updater.decisions.checked import Checked


def check_table(results: Sequence[Checked]) -> str:
    """`updater check`'s table: a row per unit (and per service of a compose unit), then each
    unit's error and warnings."""
    out = io.StringIO()
    grouped = any(r.unit.group for r in results)  # a GROUP column only where groups are
    rows = [("UNIT", "IMAGE", "STATUS", "RUNNING", "REMOTE", *(["GROUP"] if grouped else []))]
    errors = []
    for r in results:
        data = r.as_json()
        rows.append(
            (
                str(data["unit"]),
                str(data["image"]),
                str(data["status"]),
                _short(data["running_digest"]),
                _short(data["remote_digest"]) + (f" ({r.tag})" if r.unit.policy.follow else ""),
                *([r.unit.group or "-"] if grouped else []),
            )
        )
        for s in r.services:  # a compose unit's services, one row each under it
            rows.append(
                (
                    f"  {s.service}",
                    s.unit.shown,
                    s.status.value,
                    _short(s.running_digest),
                    _short(s.remote_digest),
                    *(["-"] if grouped else []),
                )
            )
        if data["error"]:
            errors.append(f"{data['unit']}: {data['error']}")
        errors += [f"{r.unit.name}: warning: {warning}" for warning in r.warnings]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")
    for line in errors:
        out.write(f"\n{line}")
    if errors:
        out.write("\n")
    return out.getvalue()


def _short(digest: object) -> str:
    return str(digest)[:19] if digest else "-"
