"""The signature gate against the data Sigstore's own clients are tested with (tests/data/sigstore,
see its PROVENANCE.md): every case of sigstore-conformance's bundle-verify, the bundles of
sigstore-python and sigstore-go, cosign 3's keyless bundle of a real image and cosign's legacy
`.sig` layers. Each runs the gate's own code: found.read_bundle reads the bundle as it reads a
referrer's layer, check.check verifies it against a policy with the case's trusted root,
identity and issuer, and the artifact's SHA-256 is the digest it must sign. Every negative case
is refused (for the reason the case is about), every positive one verifies or is in REFUSED
with the reason docs/signatures.md gives. Certificates are checked at the time the log or a
timestamp authority vouches for: the clock is set to 2030, long after every certificate here
expired."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
from pathlib import Path

import pytest

from testbed.signing import audit_path, merkle_root
from updater.systems.signature import certificates, sct
from updater.systems.signature.check import LoadedPolicy, _logged, check
from updater.systems.signature.found import Candidate, read_annotation_entry, read_bundle
from updater.systems.signature.pem import blocks
from updater.systems.signature.proofs import leaf_hash, root_from
from updater.systems.signature.stages import (
    CHAIN,
    CLAIM,
    IDENTITY,
    ISSUER,
    LOG,
    MALFORMED,
    SIGNATURE,
    SIGNER,
    UNLOGGED,
    UNREADABLE,
    NotVerified,
)
from updater.systems.signature.verify import Verify

DATA = Path(__file__).parents[1] / "data" / "sigstore"
CASES = DATA / "conformance" / "bundle-verify"
PROD = DATA / "sigstore-python" / "prod_trusted_root.json"
STAGING = DATA / "sigstore-python" / "staging_trusted_root.json"
BEACON = (
    "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon"
    "/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main"
)
ACTIONS = "https://token.actions.githubusercontent.com"
LATER = dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp()  # "now": after every certificate

CONFIG = -1  # refused when the policy is read: the trusted root itself is refused
ATTESTATION = (CLAIM, "^it is an attestation of https://slsa.dev/provenance/")
# Positive cases the gate refuses, and why (docs/signatures.md, "Sigstore's test data").
REFUSED = {
    "happy-path-intoto-in-dsse-v3": ATTESTATION,
    "intoto-with-custom-trust-root": ATTESTATION,
    "rekor2-dsse-happy-path": ATTESTATION,
}
# Each negative case, the stage it is refused at and why.
NEGATIVE = {
    "bundle-empty-certificate-chain_fail": (SIGNER, "^it is signed by a key, with no cert"),
    "bundle-from-wrong-instance_fail": (LOG, "^its transparency-log entry is from another log"),
    "bundle-invalid-base64-signature_fail": (UNREADABLE, "base64"),
    "bundle-malformed-json_fail": (UNREADABLE, "not JSON"),
    "bundle-negative-log-index_fail": (UNREADABLE, "a negative count"),
    "bundle-unknown-version_fail": (UNREADABLE, "media type .*version=99.9"),
    "bundle-with-root-cert_fail": (IDENTITY, "^its certificate's identity a@tny.town is not"),
    "checkpoint-bad-keyhint_fail": (LOG, "^its checkpoint has no signature with the key hint"),
    "checkpoint-wrong-roothash_fail": (LOG, "^its inclusion proof's root hash and tree size "),
    "dsse-invalid-sig_fail": (SIGNATURE, "^its payload does not match its signature"),
    "dsse-mismatch-envelope_fail": ATTESTATION,
    "dsse-mismatch-sig_fail": ATTESTATION,
    "inclusion-proof-corrupted-hash_fail": (LOG, "^its inclusion proof does not lead to the "),
    "incorrect-public-key_fail": (LOG, "^its transparency-log entry's timestamp is not signed"),
    "integrated-time-in-future_fail": (CHAIN, "^its certificate expired at .* when the transp"),
    "intoto-expired-certificate_fail": ATTESTATION,
    "intoto-log-entry-mismatch_fail": ATTESTATION,
    "intoto-missing-inclusion-proof_fail": ATTESTATION,
    "intoto-set-outside-signing-cert-validity_fail": ATTESTATION,
    "intoto-tsa-timestamp-outside-cert-validity_fail": ATTESTATION,
    "invalid-checkpoint-signature_fail": (LOG, "^its checkpoint's signature is not the log "),
    "invalid-ct-key_fail": (CHAIN, "^its certificate's SCTs .* are no trusted CT log's valid"),
    "invalid-inclusion-proof_fail": (LOG, "^its inclusion proof does not lead to the "),
    "managed-key-no-key_fail": (SIGNER, "^it is signed by a key, with no certificate"),
    "managed-key-wrong-key_fail": (SIGNER, "^its signer's key cannot be used"),
    "message-digest-mismatch_fail": (SIGNATURE, "^its payload does not match its signature"),
    "rekor2-checkpoint-missing-log-signature_fail": (LOG, "^its checkpoint does not read"),
    "rekor2-checkpoint-missing-origin_fail": (LOG, "^its checkpoint does not read"),
    "rekor2-checkpoint-missing-root-hash_fail": (LOG, "^its checkpoint does not read"),
    "rekor2-checkpoint-missing-size_fail": (LOG, "^its checkpoint does not read"),
    "rekor2-checkpoint-no-matching-signature_fail": (LOG, "^its checkpoint has no signature "),
    "rekor2-dsse-invalid-sig_fail": (SIGNATURE, "^its payload does not match its signature"),
    "rekor2-dsse-mismatch-envelope_fail": ATTESTATION,
    "rekor2-dsse-mismatch-sig_fail": ATTESTATION,
    "rekor2-no-inclusion-proof_fail": (LOG, "^its transparency-log entry has no inclusion pr"),
    "rekor2-no-timestamp_fail": (CHAIN, "records no time and it carries no RFC 3161 time"),
    "rekor2-timestamp-outside-trust-root-tsa-validity_fail": (CHAIN, "outside its authority's v"),
    "rekor2-timestamp-outside-tsa-cert-validity_fail": (CHAIN, "outside its authority's cert"),
    "rekor2-timestamp-payload-mismatch_fail": (CHAIN, "timestamp is of another signature"),
    "rekor2-timestamp-untrusted-tsa-with-embedded-cert_fail": (CHAIN, "not signed by a trusted"),
    "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail": (CHAIN, "not signed by a trus"),
    "rekor2-timestamp-with-incorrect-time_fail": (CHAIN, "expired at .* when a timestamp auth"),
    "set-invalid-signature_fail": (LOG, "^its transparency-log entry's timestamp is not signed"),
    "signature-mismatch_fail": (SIGNATURE, "^its payload does not match its signature"),
    "trust-root-tlog-missing-validity-start_fail": (CONFIG, r"validFor has no start"),
    "wrong-hashedrekord-artifact_fail": (LOG, "^its transparency-log entry records another"),
    "wrong-hashedrekord-cert-and-sig_fail": (LOG, "^its transparency-log entry records another"),
    "wrong-hashedrekord-entry_fail": (LOG, "^its transparency-log entry records another"),
    "wrong-material_fail": (CLAIM, "^it signs sha256:a0cfc712.*, not sha256:1fa70528"),
}


def verdict(bundle: Path, digest: str, verify: Verify) -> str | NotVerified:
    """What the gate says of the bundle's signatures as a signature of `digest`: the account
    of the one that verified, or the failure that got furthest (as `verified` picks it)."""
    try:
        policy = LoadedPolicy.load(verify)
    except ValueError as err:
        return NotVerified(CONFIG, str(err))
    try:
        candidates = read_bundle(bundle.read_bytes(), "the bundle")
    except MALFORMED as err:
        return NotVerified(UNREADABLE, repr(err))
    failures = []
    for candidate in candidates:
        try:
            return check(candidate, digest, policy, LATER)
        except NotVerified as err:
            failures.append(err)
        except MALFORMED as err:
            failures.append(NotVerified(UNREADABLE, repr(err)))
    return max(failures, key=lambda failure: failure.stage)


def conformance(case: Path) -> str | NotVerified:
    """A bundle-verify case as its README says to run it."""
    artifact = case / "artifact" if (case / "artifact").exists() else CASES.parent / "a.txt"
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    root = case / "trusted_root.json" if (case / "trusted_root.json").exists() else PROD
    if (case / "key.pub").exists():
        verify = Verify(key=case / "key.pub", trusted_root=root)
    else:
        identity = _read(case / "identity", BEACON)
        verify = Verify(
            identity=identity, issuer=_read(case / "issuer", ACTIONS), trusted_root=root
        )
    return verdict(case / "bundle.sigstore.json", digest, verify)


def _read(path: Path, default: str) -> str:
    return path.read_text().strip() if path.exists() else default


ALL = sorted(path.name for path in CASES.iterdir() if path.is_dir())


def test_every_case_is_known():
    assert set(NEGATIVE) == {name for name in ALL if name.endswith("_fail")}
    assert len(ALL) == 70


@pytest.mark.parametrize("name", [name for name in ALL if name.endswith("_fail")])
def test_every_negative_case_is_refused_for_its_reason(name):
    stage, reason = NEGATIVE[name]
    found = conformance(CASES / name)
    assert isinstance(found, NotVerified), found
    assert found.stage == stage, found.reason
    assert re.search(reason, found.reason), found.reason


@pytest.mark.parametrize("name", [name for name in ALL if not name.endswith("_fail")])
def test_every_positive_case_verifies_or_is_refused_as_documented(name):
    found = conformance(CASES / name)
    if name in REFUSED:
        stage, reason = REFUSED[name]
        assert isinstance(found, NotVerified) and found.stage == stage, found
        assert re.search(reason, found.reason), found.reason
    else:
        assert isinstance(found, str), f"{found.stage}: {found.reason}"
        assert found.startswith(("by https://", "by key ")), found


# The DSSE cases are attestations, refused at their claim before their log entry is looked at.
# Past the claim, the gate's log and certificate checks (the same functions `check` calls)
# judge their entries as the cases mean: DSSE entries of Rekor v1 and v2 prove a statement,
# a mismatched envelope or signature is refused. Rekor's `intoto` entries, which `cosign
# attest` makes, are not read: they log attestations only.
BEYOND_THE_CLAIM = {
    "happy-path-intoto-in-dsse-v3": "^, in the transparency log since 2024-12-16T18:42:56Z",
    "rekor2-dsse-happy-path": "^, in the transparency log .*, stamped 2026-05-13T19:23:33Z$",
    "dsse-mismatch-envelope_fail": "^its transparency-log entry records another dsse signature",
    "dsse-mismatch-sig_fail": "^its transparency-log entry records another dsse signature",
    "rekor2-dsse-mismatch-envelope_fail": "^its transparency-log entry records another hashed",
    "rekor2-dsse-mismatch-sig_fail": "^its transparency-log entry records another hashedrekor",
    "intoto-missing-inclusion-proof_fail": "^its transparency-log entry has no inclusion proof",
    "intoto-log-entry-mismatch_fail": "^its transparency-log entry is a 'intoto', not checked",
    "intoto-with-custom-trust-root": "^its transparency-log entry is a 'intoto', not checked",
}


@pytest.mark.parametrize("name", sorted(BEYOND_THE_CLAIM))
def test_dsse_entries_past_the_claim(name):
    case = CASES / name
    root = case / "trusted_root.json" if (case / "trusted_root.json").exists() else PROD
    policy = LoadedPolicy.load(Verify(identity=BEACON, issuer=ACTIONS, trusted_root=root))
    [candidate] = read_bundle((case / "bundle.sigstore.json").read_bytes(), "the bundle")
    assert candidate.certificate is not None
    leaf = certificates.load(candidate.certificate)
    try:
        at, clock, account = _logged(candidate, leaf, leaf.public_key.dump(), policy, LATER)
        cas = policy.cas_at(at)
        certificates.check_chain(leaf, cas, at, clock)
        sct.check(leaf, [ca for ca in cas if ca.subject == leaf.issuer], policy.ctlogs)
    except NotVerified as refused:
        account = refused.reason
    assert re.search(BEYOND_THE_CLAIM[name], account), account


# ------------------------------------------------------------ sigstore-python and sigstore-go

PYTHON = DATA / "sigstore-python"
OAUTH = "https://github.com/login/oauth"


@pytest.mark.parametrize(
    ("bundle", "identity", "logged"),
    [
        ("bundle.txt.sigstore", "a@tny.town", "since 2023-04-26T00:21:09Z"),
        ("bundle_no_checkpoint.txt.sigstore", "william@yossarian.net", "since 2023-01-30"),
        ("bundle_v3.txt.sigstore", "william@yossarian.net", "since 2024-04-02"),
        ("bundle_v3_alt.txt.sigstore", "william@yossarian.net", "since 2024-04-02"),
        ("staging-rekor-v2.txt.sigstore.json", "jku@goto.fi", "(entry 645)"),
    ],
)
def test_sigstore_pythons_staging_bundles_verify(bundle, identity, logged):
    artifact = PYTHON / bundle.removesuffix(".json").removesuffix(".sigstore")
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    verify = Verify(identity=identity, issuer=OAUTH, trusted_root=STAGING)
    found = verdict(PYTHON / bundle, digest, verify)
    assert isinstance(found, str), f"{found.stage}: {found.reason}"
    assert f"by {identity} from {OAUTH}, in the transparency log " in found
    assert logged in found and "certificate logged by the log https://ctfe.sigstage.dev" in found


@pytest.mark.parametrize(
    ("bundle", "root", "stage", "reason"),
    [
        ("bundle_cve_2022_36056.txt.sigstore", STAGING, LOG, "^its transparency-log entry rec"),
        ("bundle_invalid_version.txt.sigstore", STAGING, UNREADABLE, "'this is completely wr"),
        ("bundle_no_cert_v1.txt.sigstore", STAGING, SIGNER, "^it is signed by a key, with no"),
        ("bundle_no_log_entry.txt.sigstore", STAGING, UNLOGGED, "^it has no transparency-log "),
        ("bundle_v3_no_signed_time.txt.sigstore.json", PROD, CHAIN, "no RFC 3161 timestamp"),
    ],
)
def test_sigstore_pythons_bad_bundles_are_refused(bundle, root, stage, reason):
    artifact = PYTHON / bundle.removesuffix(".json").removesuffix(".sigstore")
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    verify = Verify(identity_regexp=".*", issuer=OAUTH, trusted_root=root)
    found = verdict(PYTHON / bundle, digest, verify)
    assert isinstance(found, NotVerified), found
    assert found.stage == stage and re.search(reason, found.reason), found.reason


GO = DATA / "sigstore-go"


def _subject(bundle: Path) -> str:
    """The digest a bundle's own statement or message digest names."""
    document = json.loads(bundle.read_text())
    if "messageSignature" in document:
        return (
            "sha256:"
            + base64.b64decode(document["messageSignature"]["messageDigest"]["digest"]).hex()
        )
    statement = json.loads(base64.b64decode(document["dsseEnvelope"]["payload"]))
    return "sha256:" + statement["subject"][0]["digest"].get("sha256", "0" * 64)


@pytest.mark.parametrize(
    "bundle",
    [
        "dsse.sigstore.json",
        "dsse-2sigs.sigstore.json",
        "sigstore.js@2.0.0-provenance.sigstore.json",
    ],
)
def test_sigstore_gos_attestations_are_not_signatures(bundle):
    path = GO / "bundles" / bundle
    verify = Verify(
        identity_regexp=".*",
        issuer_regexp=".*",
        trusted_root=GO / "trusted-roots" / "public-good.json",
    )
    found = verdict(path, _subject(path), verify)
    assert isinstance(found, NotVerified) and found.stage == CLAIM, found
    assert found.reason.startswith("it is an attestation of https://slsa.dev/provenance/")


def test_sigstore_gos_othername_identity_is_not_read():
    path = GO / "bundles" / "othername.sigstore.json"
    verify = Verify(
        identity_regexp=".*",
        issuer_regexp=".*",
        trusted_root=GO / "trusted-roots" / "scaffolding.json",
    )
    found = verdict(path, _subject(path), verify)
    assert isinstance(found, NotVerified) and found.stage == IDENTITY, found
    assert found.reason.startswith("its certificate names no identity (SAN URI or e-mail)")


def test_sigstore_gos_key_signed_bundle_verifies_by_its_key_alone():
    path = GO / "bundles" / "public-key-validity.sigstore.json"
    key = GO / "public-keys" / "public-key-validity.pem"
    assert verdict(path, _subject(path), Verify(key=key)) == f"by key {key}"
    # Its trusted root has timestamp authorities only: no log a policy could require.
    found = verdict(
        path,
        _subject(path),
        Verify(key=key, trusted_root=GO / "trusted-roots" / "public-key-validity.json"),
    )
    assert isinstance(found, NotVerified) and found.stage == CONFIG
    assert "not a trusted root (no field 'tlogs')" in found.reason


# ------------------------------------------------------------------ cosign's own signatures

RS = DATA / "sigstore-rs"
KUBEWARDEN = "https://github.com/kubewarden/kubewarden-controller/.github/workflows/release.yml@refs/tags/v1.34.0"
KUBEWARDEN_DIGEST = "sha256:c811d58de79c92f03214e63aa339484e488d694ae8a6283b5f3f17a9faf50172"


def test_cosign_3s_keyless_bundle_of_a_real_image_verifies_at_its_log_time():
    bundle = RS / "kubewarden-controller-v1.34.0.bundle_v03.json"
    verify = Verify(identity=KUBEWARDEN, issuer=ACTIONS, trusted_root=PROD)
    assert verdict(bundle, KUBEWARDEN_DIGEST, verify) == (
        f"by {KUBEWARDEN} from {ACTIONS}, in the transparency log since 2026-04-09T07:23:29Z"
        " (entry 1261105807), certificate logged by the log https://ctfe.sigstore.dev/2022"
    )
    other = Verify(
        identity=KUBEWARDEN.replace("v1.34.0", "v1.34.1"), issuer=ACTIONS, trusted_root=PROD
    )
    found = verdict(bundle, KUBEWARDEN_DIGEST, other)
    assert isinstance(found, NotVerified) and found.stage == IDENTITY
    found = verdict(bundle, "sha256:" + "0" * 64, verify)
    assert isinstance(found, NotVerified) and found.stage == CLAIM


def test_cosigns_legacy_sig_layers_verify(tmp_path):
    layers = json.loads((RS / "legacy-sig-layers.json").read_text())
    signed = layers["key_signed"]
    key = tmp_path / "cosign.pub"
    key.write_text(signed["public_key"])
    payload = signed["payload"].encode()
    candidate = Candidate(
        "the .sig tag",
        "cosign signature",
        "simple signing",
        payload,
        payload,
        base64.b64decode(signed["signature"]),
    )
    assert (
        check(candidate, signed["digest"], LoadedPolicy.load(Verify(key=key)), LATER)
        == f"by key {key}"
    )

    keyless = layers["keyless_2021"]
    payload = keyless["payload"].encode()
    candidate = Candidate(
        "the .sig tag",
        "cosign signature",
        "simple signing",
        payload,
        payload,
        base64.b64decode(keyless["signature"]),
        certificate=blocks(keyless["certificate"].encode())[0][1],
        entries=(read_annotation_entry(keyless["bundle"]),),
    )
    ca_file, rekor_key = _files_of(PROD, tmp_path)
    policy = LoadedPolicy.load(
        Verify(
            identity=keyless["identity"], issuer_regexp=".*", ca_file=ca_file, rekor_key=rekor_key
        )
    )
    # Its log entry and its chain verify at the time Rekor recorded it (2021), its identity
    # is the policy's; but Fulcio did not record the OIDC issuer in its certificates yet.
    with pytest.raises(NotVerified, match="^its certificate records no OIDC issuer") as refused:
        check(candidate, keyless["digest"], policy, LATER)
    assert refused.value.stage == ISSUER
    # Nor did it embed SCTs, which a trusted root requires.
    policy = LoadedPolicy.load(
        Verify(identity=keyless["identity"], issuer_regexp=".*", trusted_root=PROD)
    )
    with pytest.raises(
        NotVerified, match="^its certificate has no certificate-transparency timestamp"
    ):
        check(candidate, keyless["digest"], policy, LATER)


def _files_of(root: Path, directory: Path) -> tuple[Path, Path]:
    """ca_file and rekor_key (every log's key: Rekor v1's and v2's) of a trusted root, as
    docs/signatures.md's script writes them."""
    document = json.loads(root.read_text())
    ca_file, rekor_key = directory / "fulcio.pem", directory / "rekor.pub"
    ca_file.write_text(
        "".join(
            _pem("CERTIFICATE", c["rawBytes"])
            for ca in document["certificateAuthorities"]
            for c in ca["certChain"]["certificates"]
        )
    )
    rekor_key.write_text(
        "".join(_pem("PUBLIC KEY", t["publicKey"]["rawBytes"]) for t in document["tlogs"])
    )
    return ca_file, rekor_key


def _pem(label: str, raw: str) -> str:
    lines = [raw[i : i + 64] for i in range(0, len(raw), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"


def test_rekor_key_proves_a_rekor_v2_entry_with_the_logs_ed25519_key(tmp_path):
    """Without a trusted root there is no timestamp authority: the entry is proven by the v2
    log's key in rekor_key, and the keyless certificate then has no time to be checked at."""
    ca_file, rekor_key = _files_of(STAGING, tmp_path)
    bundle = PYTHON / "staging-rekor-v2.txt.sigstore.json"
    digest = "sha256:" + hashlib.sha256((PYTHON / "staging-rekor-v2.txt").read_bytes()).hexdigest()
    verify = Verify(identity="jku@goto.fi", issuer=OAUTH, ca_file=ca_file, rekor_key=rekor_key)
    found = verdict(bundle, digest, verify)
    assert isinstance(found, NotVerified) and found.stage == CHAIN, found
    assert found.reason == "its RFC 3161 timestamp is not signed by a trusted timestamp authority"
    v1_only = tmp_path / "v1.pub"
    v1_only.write_text(
        rekor_key.read_text().split("-----END PUBLIC KEY-----\n")[0] + "-----END PUBLIC KEY-----\n"
    )
    found = verdict(
        bundle,
        digest,
        Verify(identity="jku@goto.fi", issuer=OAUTH, ca_file=ca_file, rekor_key=v1_only),
    )
    assert isinstance(found, NotVerified) and found.stage == LOG
    assert found.reason.startswith("its transparency-log entry is from another log")


# --------------------------------------------------------------------------- Merkle proofs


def test_inclusion_proofs_lead_to_the_tree_root_and_nowhere_else():
    for size in range(1, 20):
        leaves = [leaf_hash(b"entry %d" % n) for n in range(size)]
        root = merkle_root(leaves)
        for index in range(size):
            path = tuple(audit_path(index, leaves))
            assert root_from(index, size, leaves[index], path) == root
            assert root_from(index, size, leaf_hash(b"another"), path) != root
            if path:
                flipped = path[:-1] + (bytes([path[-1][0] ^ 1]) + path[-1][1:],)
                assert root_from(index, size, leaves[index], flipped) != root
                assert root_from(index, size, leaves[index], path[:-1]) != root
            assert root_from(index, size, leaves[index], path + (root,)) is None
        assert root_from(size, size, leaves[0], ()) is None
