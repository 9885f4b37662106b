"""The updater's real CLI, driven in-process, and what a check must leave unchanged."""

from __future__ import annotations

import io
import json
from pathlib import Path

from testbed.engine import Dockerd
from updater.cli import main


class Cli:
    """The updater's real CLI, in-process, with its own configuration and state directory."""

    def __init__(self, root: Path) -> None:
        self.config = root / "etc" / "config.toml"
        self.state_dir = root / "state"
        self.config.parent.mkdir(parents=True)
        self.config.write_text("[defaults]\nsettle = 1\nhealth_timeout = 20\n")

    def unit(self, name: str, image: str, container: str | None = None, **extra: object) -> None:
        lines = [f'[units."{name}"]', f'image = "{image}"']
        if container:
            lines.append(f'container = "{container}"')
        lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
        with self.config.open("a") as f:
            f.write("\n".join(lines) + "\n")

    def notify(self, **settings: object) -> None:
        """Add a [notify] table (say it once: a table cannot be written twice)."""
        lines = ["[notify]", *(f"{key} = {json.dumps(v)}" for key, v in settings.items())]
        with self.config.open("a") as f:
            f.write("\n".join(lines) + "\n")

    def registry(self, host: str, **settings: object) -> None:
        lines = [f'[registries."{host}"]']
        lines += [
            f"{key} = {json.dumps(str(v) if isinstance(v, Path) else v)}"
            for key, v in settings.items()
        ]
        with self.config.open("a") as f:
            f.write("\n".join(lines) + "\n")

    def __call__(self, *args: str) -> tuple[int, object]:
        """Run `updater ARGS --json`; the exit code and the parsed JSON report."""
        out = io.StringIO()
        code = main(
            ["--config", str(self.config), "--state-dir", str(self.state_dir), *args, "--json"],
            stdout=out,
        )
        text = out.getvalue()
        return code, json.loads(text) if text.strip() else None


def engine_snapshot(dockerd: Dockerd) -> str:
    """Everything a check must not change: images, tags, digests, containers and their starts."""
    images = dockerd.docker(
        "images",
        "--all",
        "--digests",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Repository}} {{.Tag}} {{.Digest}}",
    ).stdout
    ids = dockerd.docker("ps", "-aq", "--no-trunc").stdout.split()
    containers = (
        dockerd.docker(
            "inspect",
            "--format",
            "{{.Name}} {{.Image}} {{.State.Status}} {{.State.StartedAt}} {{.RestartCount}}",
            *ids,
        ).stdout
        if ids
        else ""
    )
    return "\n".join(sorted(images.splitlines())) + "\n" + containers
