"""The `trusted_root` key of a `verify` policy: Sigstore's trusted_root.json read when the
configuration is, in place of ca_file and rekor_key, and every way it can be wrong named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from updater.config import load
from updater.errors import ConfigError
from updater.signature import Verify
from updater.signature.check import Policy

DATA = Path(__file__).parents[1] / "data" / "sigstore"
PROD = DATA / "sigstore-python" / "prod_trusted_root.json"
IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"


def configure(tmp_path: Path, verify: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[units."app.service"]\nimage = "ghcr.io/acme/app:prod"\nverify = {verify}\n')
    return path


def test_a_trusted_root_gives_the_cas_the_logs_and_the_ct_logs(tmp_path):
    verify = f'{{identity = "{IDENTITY}", issuer = "{ISSUER}", trusted_root = "{PROD}"}}'
    [unit] = load(configure(tmp_path, verify)).units
    assert unit.policy.verify == Verify(identity=IDENTITY, issuer=ISSUER, trusted_root=PROD)
    policy = Policy.load(unit.policy.verify)
    assert [log.name for log in policy.logs] == [
        "the log https://rekor.sigstore.dev",
        "the log https://log2025-1.rekor.sigstore.dev",
    ]
    assert [log.name for log in policy.ctlogs] == [
        "the log https://ctfe.sigstore.dev/test",
        "the log https://ctfe.sigstore.dev/2022",
    ]
    assert len(policy.cas) == 3 and len(policy.stampers) == 1
    # The 2021 CA was trusted until the end of 2022 only; the 2022 chain from April 2022 on.
    assert len(policy.cas_at(1_640_000_000)) == 1  # 2021-12-20
    assert len(policy.cas_at(1_700_000_000)) == 2  # 2023-11-14
    assert len(policy.cas_at(1_660_000_000)) == 3  # 2022-08-08: both


def edited(tmp_path: Path, change) -> Path:  # type: ignore[no-untyped-def]
    root = json.loads(PROD.read_text())
    change(root)
    path = tmp_path / "trusted_root.json"
    path.write_text(json.dumps(root))
    return path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("tlogs"), "not a trusted root (no field 'tlogs')"),
        (lambda r: r.update(mediaType="x"), "its mediaType is not application/vnd.dev.sigs"),
        (lambda r: r["tlogs"][0]["publicKey"]["validFor"].pop("start"), "tlogs[0].publicKey"),
        (lambda r: r["tlogs"][0]["logId"].update(keyId="%%"), "tlogs[0].logId.keyId is not"),
        (lambda r: r["certificateAuthorities"][0]["validFor"].update(start="May"), "not an RFC"),
        (lambda r: r.update(tlogs=[]), "no transparency log (tlogs) with a key this verifier"),
    ],
)
def test_a_bad_trusted_root_is_a_configuration_error_naming_it(tmp_path, change, message):
    path = edited(tmp_path, change)
    verify = f'{{identity = "{IDENTITY}", issuer = "{ISSUER}", trusted_root = "{path}"}}'
    with pytest.raises(ConfigError) as raised:
        load(configure(tmp_path, verify))
    assert f'units."app.service".verify: trusted_root {path}: ' in str(raised.value)
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("verify", "message"),
    [
        (
            f'{{key = "/k.pub", trusted_root = "{PROD}", rekor_key = "/r.pub"}}',
            "trusted_root and rekor_key are exclusive",
        ),
        (
            f'{{identity = "{IDENTITY}", issuer = "{ISSUER}", trusted_root = "{PROD}", ca_file = '
            '"/ca.pem"}',
            "trusted_root and ca_file are exclusive",
        ),
        (
            f'{{identity = "{IDENTITY}", issuer = "{ISSUER}"}}',
            "needs ca_file (the PEM certificates of the CA) or trusted_root",
        ),
        (
            '{key = "/k.pub", trusted_root = "/nowhere.json"}',
            "trusted_root /nowhere.json cannot be read",
        ),
        ('{key = "/k.pub", trusted_root = "root.json"}', "'root.json' must be an absolute path"),
    ],
)
def test_an_incomplete_or_contradictory_policy_is_refused(tmp_path, verify, message):
    with pytest.raises(ConfigError, match="verify") as raised:
        load(configure(tmp_path, verify))
    assert message in str(raised.value)
