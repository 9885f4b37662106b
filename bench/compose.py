"""`python3 -m bench.compose`: what an idle run costs with a compose unit of three services,
next to three one-container units of the same images.

One private dockerd (the tests' default engine, the containerd image store), one loopback
registry, three images pushed to three tags. Case "compose": one unit whose project
(`docker compose up -d`, sid's compose plugin) runs the three services. Case "units": three units,
each one `docker run` of one image. The updater runs as `updater run` does every minute, in this
process's Python, with nothing to do; each case's runs are counted from the registry's access
log and timed (the median of `--repeat`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from testbed import needs
from testbed.engine import Dockerd, build_image, push
from testbed.machine import COMPOSE_PLUGIN
from testbed.registry import Registry

SERVICES = ("web", "worker", "cache")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.compose", description=__doc__)
    parser.add_argument("--repeat", type=int, default=11, help="idle runs per case (default 11)")
    args = parser.parse_args(argv)
    needs("dockerd")
    needs("docker-registry")
    with tempfile.TemporaryDirectory(prefix="bench-compose-") as work:
        root = Path(work)
        engine = Dockerd(root / "dockerd")
        engine.start()
        try:
            with Registry(root / "registry") as registry:
                return _measure(root, engine, registry, args.repeat)
        finally:
            engine.stop()


def _measure(root: Path, engine: Dockerd, registry: Registry, repeat: int) -> int:
    refs = {s: f"{registry.host}/bench/{s}:prod" for s in SERVICES}
    for service, ref in refs.items():
        build_image(engine, ref, seed=f"bench-{service}")
        push(engine, ref)
    compose_file = root / "shop" / "compose.yaml"
    compose_file.parent.mkdir()
    services = {s: {"image": ref} for s, ref in refs.items()}
    compose_file.write_text(json.dumps({"services": services}))
    plugins = root / "docker-config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(COMPOSE_PLUGIN)
    env = {**engine.env(), "DOCKER_CONFIG": str(plugins.parent)}
    subprocess.run(
        ["docker", "compose", "-f", str(compose_file), "up", "-d"],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    for service, ref in refs.items():
        engine.docker("run", "-d", "--name", f"one-{service}", ref)
    cases = {
        "compose (1 unit, 3 services)": (f'[units."shop.service"]\ncompose = "{compose_file}"\n'),
        "units (3 one-container units)": "".join(
            f'[units."one-{s}.service"]\nimage = "{ref}"\n' for s, ref in refs.items()
        ),
    }
    print(f"{'case':32} {'requests per idle run':>24} {'median s':>9} {'min s':>7}")
    for name, config in cases.items():
        requests, seconds = _idle_runs(root, engine, registry, config, repeat)
        said = ", ".join(f"{n} {m}" for m, n in sorted(requests.items()))
        print(f"{name:32} {said:>24} {statistics.median(seconds):9.3f} {min(seconds):7.3f}")
    return 0


def _idle_runs(
    root: Path, engine: Dockerd, registry: Registry, config: str, repeat: int
) -> tuple[dict[str, int], list[float]]:
    home = Path(tempfile.mkdtemp(dir=root))
    (home / "config.toml").write_text(config)
    argv = [sys.executable, "-m", "updater", "run", "--json"]
    env = {**os.environ, "DOCKER_HOST": engine.host, "UPDATER_CONFIG": str(home / "config.toml")}
    env["UPDATER_STATE_DIR"] = str(home / "state")
    seconds: list[float] = []
    counted: dict[str, int] = {}
    for n in range(repeat + 1):  # the first run learns and caches tokens; not counted
        registry.clear_log()
        start = time.monotonic()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        took = time.monotonic() - start
        outcomes = {r["outcome"] for r in json.loads(done.stdout)}
        assert done.returncode == 0 and outcomes == {"unchanged"}, done.stdout + done.stderr
        if n:
            seconds.append(took)
            counted = {}
            for r in registry.requests():
                counted[r.method] = counted.get(r.method, 0) + 1
    return counted, seconds


if __name__ == "__main__":
    sys.exit(main())
