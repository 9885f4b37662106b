"""The `docker compose` command line, asked only by `updater check` and `updater add` (never by
the minutely run) how a compose file's services are declared: `docker compose config`, which
interpolates and merges the file as the unit's own `docker compose up` does, with no engine."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from updater.errors import UpdaterError

TIMEOUT = 30  # seconds; compose reads the file and its .env, nothing else


def services(
    file: Path, project: str | None, environment: Mapping[str, str]
) -> dict[str, dict[str, Any]]:
    """Each service's settings as compose reads them, in the unit's environment."""
    argv = ["docker", "compose", "-f", str(file)]
    argv += ["-p", project] if project else []
    argv += ["config", "--format", "json"]
    what = f"reading {file} with docker compose config"
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
            env={**os.environ, **environment},
            cwd=file.parent if file.parent.is_dir() else None,
        )
    except subprocess.TimeoutExpired as err:
        raise UpdaterError(f"{what}: no answer within {TIMEOUT} s") from err
    except OSError as err:
        raise UpdaterError(f"{what}: {err.strerror}") from err
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise UpdaterError(f"{what}: {lines[-1] if lines else f'exit status {done.returncode}'}")
    try:
        found = json.loads(done.stdout).get("services") or {}
    except (ValueError, AttributeError) as err:
        raise UpdaterError(f"{what}: not the JSON compose prints") from err
    return {str(k): v for k, v in found.items() if isinstance(v, dict)}
