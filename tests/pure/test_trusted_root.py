"""The `trusted_root` key of a `verify` policy: Sigstore's trusted_root.json read when the
configuration is, in place of ca_file and rekor_key, and every way it can be wrong named."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from updater.config import load
from updater.errors import ConfigError
from updater.systems.signature import certificates, proofs, sct
from updater.systems.signature.check import LoadedPolicy
from updater.systems.signature.found import read_bundle
from updater.systems.signature.stages import LOG, NotVerified
from updater.systems.signature.verify import Verify

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
    policy = LoadedPolicy.load(unit.policy.verify)
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


def edited(tmp_path: Path, change: Callable[[dict[str, Any]], object]) -> Path:
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


# ------------------------------------------------ the SCT and the checkpoint of a real bundle

KUBEWARDEN = DATA / "sigstore-rs" / "kubewarden-controller-v1.34.0.bundle_v03.json"


@pytest.fixture(scope="module")
def real():
    """cosign 3's bundle of a real image, and the public instance's trusted root."""
    [candidate] = read_bundle(KUBEWARDEN.read_bytes(), "the bundle")
    verify = Verify(identity=IDENTITY, issuer=ISSUER, trusted_root=PROD)
    return candidate, LoadedPolicy.load(verify)


def test_the_sct_is_checked_against_the_ct_logs_key_window_and_issuer(real):
    candidate, policy = real
    leaf = certificates.load(candidate.certificate)
    issuers = [ca for ca in policy.cas if ca.subject == leaf.issuer]
    assert sct.check(leaf, issuers, policy.ctlogs) == "the log https://ctfe.sigstore.dev/2022"
    expired = tuple(dataclasses.replace(log, end=log.start) for log in policy.ctlogs)
    wrong_key = tuple(dataclasses.replace(log, key=policy.logs[0].key) for log in policy.ctlogs)
    others = [ca for ca in policy.cas if ca.subject != leaf.issuer]
    for logs, cas in ((expired, issuers), (wrong_key, issuers), (policy.ctlogs, others)):
        with pytest.raises(NotVerified, match="^its certificate's SCTs .* are no trusted CT log's"):
            sct.check(leaf, cas, logs)


def test_a_checkpoint_is_the_logs_only_with_its_key_hint_and_signature(real):
    candidate, policy = real
    [entry] = candidate.entries
    assert entry.proof is not None
    log, log_id = policy.logs[0], bytes.fromhex(entry.log_id)
    checkpoint = proofs.parse(entry.proof.checkpoint)
    proofs.signed(checkpoint, log, log_id)
    [(name, hint, signature)] = checkpoint.signatures
    forged = [
        (dataclasses.replace(checkpoint, signatures=((name, b"abcd", signature),)), "key hint"),
        (dataclasses.replace(checkpoint, text=checkpoint.text.replace(b"\n", b"\n ", 1)), "not"),
        (dataclasses.replace(checkpoint, signatures=()), "key hint"),
    ]
    for case, message in forged:
        with pytest.raises(NotVerified, match=message) as refused:
            proofs.signed(case, log, log_id)
        assert refused.value.stage == LOG
