"""The units `python3 -m bench.policies` measures, N of each kind, in the World's one registry:
their images and containers (bench.units), the version tags the `follow` units choose among,
the paging front, the cosign keys, the configurations, and the new digests of the gated units."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import requests

from bench.log import log
from bench.paging import Pager
from bench.podman import PodmanRoot
from bench.units import Units, parallel
from bench.world import Scenario, World
from testbed.proxy import Proxy
from testbed.registry import ACCEPT_ALL, TESTBED_UA
from testbed.signing import Cosign

TAGS_PAGE = (
    1000  # the tags a tags-list request asks for (updater.systems.registry.client, issue 14)
)
FOLLOW = "semver:^1"
MIN_AGE = "1h"
PLAIN, FEW, MANY, PAGED, MIN_AGE_KIND, VERIFY = "plain", "few", "many", "paged", "min_age", "verify"
FLEET = "fleet"
# A fleet host whose store cannot be reached: an idle run that made any etcd request would fail.
FLEET_TABLE = (
    '[fleet]\netcd = ["http://127.0.0.1:9"]\ngroup = "bench"\nhost = "h1"\ntimeout = 1\n\n'
)
PREFIXES = ("plain", "few", "many", "age", "sig")  # repositories bench/PREFIXi, containers PREFIXi


@dataclass(frozen=True)
class Kind:
    """N units alike: their scenario (repositories and containers), configuration, the tag
    `follow` must choose, and the tags-list requests per unit an idle run may make."""

    key: str  # its name in policies.json
    label: str  # its row in the tables
    scenario: Scenario
    config: Path
    policy: tuple[str, ...] = ()  # the lines in each unit's table
    tag: str | None = None  # the tag a follow unit's report must name
    tags_lists: int = 0  # per unit and idle run, one per TAGS_PAGE tags (issue 14)

    def unit(self, i: int) -> str:
        """Unit i's name."""
        return f"{self.scenario.docker_prefix}{i}.service"


def versions(count: int) -> list[str]:
    """`count` distinct versions over the majors 0, 1 and 2, so that `^1` leaves some out."""
    return [f"{i % 3}.{i // 30}.{i // 3 % 10}" for i in range(count)]


def newest_of_one(tags: list[str]) -> str:
    """The newest 1.x.y among `tags`: what `semver:^1` must choose."""
    ones = [tuple(int(x) for x in t.split(".")) for t in tags if t.startswith("1.")]
    return ".".join(str(x) for x in max(ones))


class Bed:
    """What the policies benchmark adds to the World, set up by `set_up()`, stopped by `stop()`."""

    def __init__(self, world: World, n: int, few_tags: int, many_tags: int) -> None:
        self.world, self.n = world, n
        self.few_tags, self.many_tags = few_tags, many_tags
        self.units = Units(world)
        self.front: Proxy | None = None
        self.kinds: dict[str, Kind] = {}
        self.cosign: Cosign | None = None
        self.other_key: Path | None = None  # signs the new digests: not the key units trust

    def set_up(self) -> None:
        """Keys, images, containers, tags, the paging front and every kind's configuration."""
        self.cosign = Cosign(self.world.ws / "cosign")
        _, trusted = self.cosign.generate_key_pair("ci")
        self.other_key, _ = self.cosign.generate_key_pair("other")
        plain, few, many, age, signed = (self._scenario(p) for p in PREFIXES)
        for s in (plain, few, many, age, signed):
            self.units.grow(s, self.n, podman=False)
        few_tags, many_tags = versions(self.few_tags), versions(self.many_tags)
        self._tag(few, few_tags)
        self._tag(many, many_tags)
        paged = self._behind_front(many)
        self._add(PLAIN, "plain", plain)
        fleet = self.world.ws / "configs" / f"fleet-{self.n}.toml"
        fleet.write_text(FLEET_TABLE + self.kinds[PLAIN].config.read_text())
        label = "plain, in a fleet (etcd unreachable)"
        self.kinds[FLEET] = Kind(FLEET, label, plain, fleet)
        for key, s, tags in ((FEW, few, few_tags), (MANY, many, many_tags)):
            self._follow(key, s, tags)
        self._follow(PAGED, paged, many_tags, ", paged")
        self._add(MIN_AGE_KIND, f"min_age {MIN_AGE}", age, (f'min_age = "{MIN_AGE}"',))
        self._add(VERIFY, "verify key", signed, (f'verify = {{ key = "{trusted}" }}',))

    def _follow(self, key: str, s: Scenario, tags: list[str], how: str = "") -> None:
        listed = len(tags) + 1  # and `latest`, the tag the images were pushed under
        pages = math.ceil(listed / TAGS_PAGE)
        policy = (f'follow = "{FOLLOW}"',)
        label = f"follow, {listed} tags{how}"
        self._add(key, label, s, policy, tag=newest_of_one(tags), tags_lists=pages)

    def _scenario(self, prefix: str) -> Scenario:
        """Repositories bench/PREFIXi in the World's registry, containers PREFIXi."""
        world, reg = self.world, self.world.registry
        podman = PodmanRoot(prefix, world.ws / f"podman-{prefix}")  # named, never made: no Podman
        auth = world.docker_config_dir / "config.json"
        return Scenario(prefix, reg, reg.host, podman, prefix, "-", f"bench/{prefix}", auth)

    def _add(
        self,
        key: str,
        label: str,
        s: Scenario,
        policy: tuple[str, ...] = (),
        tag: str | None = None,
        tags_lists: int = 0,
    ) -> None:
        config = self.units.write_config(s, self.n, policy)
        self.kinds[key] = Kind(key, label, s, config, policy, tag, tags_lists)

    def _tag(self, s: Scenario, tags: list[str]) -> None:
        """Each repository's `latest` manifest also under every version in `tags`."""
        registry = self.world.registry

        def one(i: int) -> None:
            repo = f"{s.repo_prefix}{i}"
            url = f"{registry.url}/v2/{repo}/manifests/latest"
            got = requests.get(url, headers={"Accept": ACCEPT_ALL, "User-Agent": TESTBED_UA})
            got.raise_for_status()
            for tag in tags:
                registry.put_manifest(repo, tag, got.headers["Content-Type"], got.content)

        parallel(one, range(self.n), f"{s.name}: {len(tags)} version tags on each repository")

    def _behind_front(self, s: Scenario) -> Scenario:
        """The scenario's repositories through the paging front; its images pushed through it
        too, so that the engine knows their digests under the front's address."""
        registry = self.world.registry
        self.front = Proxy(registry.url)
        self.front.fault = Pager(registry.url)
        paged = replace(s, name=PAGED, ref_host=self.front.host)
        # Pushed through it, not pulled: the proxy forwards one of the several Accept headers
        # dockerd's pull sends, and the registry may then answer a schema 1 conversion.
        self.units.grow(paged, self.n, podman=False)
        return paged

    def push_new(self, kind: Kind, round_: int) -> dict[str, str]:
        """A new image (built now) on each unit's tag, signed by the key the units do not trust
        when they verify; each unit's new digest."""
        registry, s = self.world.registry, kind.scenario
        built = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        pushed: dict[str, str] = {}

        def one(i: int) -> None:
            repo = f"{s.repo_prefix}{i}"
            digest = registry.push_image(repo, "latest", seed=f"{repo}-new{round_}", created=built)
            if kind.key == VERIFY:
                assert self.cosign is not None and self.other_key is not None
                self.cosign.sign(f"{registry.host}/{repo}@{digest}", self.other_key, bundle=True)
            pushed[kind.unit(i)] = digest

        signed = ", signed by the other key" if kind.key == VERIFY else ""
        parallel(one, range(self.n), f"{kind.key}: new digests pushed{signed}")
        return pushed

    def stop(self) -> None:
        """Stop the paging front (the World removes the rest)."""
        if self.front is not None:
            self.front.stop()
            log("paging front stopped")
