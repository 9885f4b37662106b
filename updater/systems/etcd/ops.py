"""What etcd's JSON gateway is sent and answers: comparisons, operations, ranges, base64 keys."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from updater.errors import StoreError


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int


def absent(key: str) -> dict:
    """Compare: the key does not exist (its create revision is 0)."""
    return {"key": _b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def present_under(prefix: str) -> dict:
    """Compare: at least one key exists under `prefix`."""
    return {
        "key": _b64(prefix),
        "range_end": _b64(_prefix_end(prefix)),
        "target": "CREATE",
        "result": "GREATER",
        "create_revision": "0",
    }


def put_op(key: str, value: bytes, lease: int = 0) -> dict:
    put = {"key": _b64(key), "value": base64.b64encode(value).decode("ascii")}
    if lease:
        put["lease"] = str(lease)
    return {"request_put": put}


def range_op(key: str, prefix: bool = False, *, keys_only: bool = False) -> dict:
    """Read the key, or every key under it; `keys_only` leaves the values out."""
    body = _range(key, prefix)
    if keys_only:
        body["keys_only"] = True
    return {"request_range": body}


def delete_op(key: str, prefix: bool = False) -> dict:
    return {"request_delete_range": _range(key, prefix)}


def range_kvs(response: dict) -> list[KeyValue]:
    """The keys a txn's `range_op` read, from its entry in the responses."""
    return _kvs(response.get("response_range", {}))


def _kvs(answer: dict) -> list[KeyValue]:
    return [
        KeyValue(
            key=base64.b64decode(kv.get("key", "")).decode("utf-8", "surrogateescape"),
            value=base64.b64decode(kv.get("value", "")),
            create_revision=_int(kv.get("create_revision")),
            mod_revision=_int(kv.get("mod_revision")),
            lease=_int(kv.get("lease")),
        )
        for kv in answer.get("kvs", [])
    ]


def _range(key: str, prefix: bool) -> dict:
    body = {"key": _b64(key or "\0")}  # "" from "\0" on: every key
    if prefix:
        body["range_end"] = _b64(_prefix_end(key))
    return body


def _prefix_end(prefix: str) -> bytes:
    """The first key after every key starting with `prefix`: its last byte below 0xff plus one
    (etcd's "\\0" for "to the end" when there is none)."""
    data = prefix.encode("utf-8", "surrogateescape").rstrip(b"\xff")
    return data[:-1] + bytes([data[-1] + 1]) if data else b"\0"


def _b64(key: str | bytes) -> str:
    data = key if isinstance(key, bytes) else key.encode("utf-8", "surrogateescape")
    return base64.b64encode(data).decode("ascii")


def _int(value: object) -> int:
    """An int64 as the gateway writes it (a string), 0 when left out as the default."""
    if value is None:
        return 0
    digits = str(value).removeprefix("-")
    if isinstance(value, int | str) and digits.isascii() and digits.isdigit():
        return int(value)
    raise StoreError(f"etcd answered {str(value)[:40]!r} where a number belongs")
