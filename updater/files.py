"""Files more than one program reads or writes: written so that a crash leaves either the old or
the new content, never a mix; the CI trigger's request file, which the trigger writes and a run
reads."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

DEFAULT_RUN_DIR = Path("/run/updater-trigger")
REQUEST_FILE = "run-requested"  # in the runtime directory; updater-trigger.path watches it


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Temp file in the same directory, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def request_file(environ: Mapping[str, str]) -> Path:
    """The file whose change starts updater.service (through updater-trigger.path)."""
    if environ.get("UPDATER_TRIGGER_FILE"):
        return Path(environ["UPDATER_TRIGGER_FILE"])
    run_dir = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    return Path(run_dir or DEFAULT_RUN_DIR) / REQUEST_FILE
