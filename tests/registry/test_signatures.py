"""Registry tier: the real cosign signs images in a real docker-registry, in both of its formats
(the legacy `.sig` tag and the Sigstore bundle referrer), with a key or keyless (a certificate
of the test CA), into the test transparency log or none, and the updater's gate verifies them.

One registry, CA and log for the module; each signed scenario is signed once. Wrong policies,
signatures copied to another digest and altered payloads reuse those signatures. Where it
matters the registry's log shows what the gate read: signatures only, never the image.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec

from testbed import needs
from testbed.registry import OCI_INDEX, OCI_MANIFEST, TESTBED_UA, Registry
from testbed.signing import IDENTITY, ISSUER, Cosign, Rekor, TestCA, pem
from updater.config import RegistrySettings
from updater.errors import SignatureError
from updater.models.reference import parse
from updater.systems.credentials import DockerConfig
from updater.systems.registry import Registries
from updater.systems.signature import MAX_CANDIDATES, verified
from updater.systems.signature.verify import Verify

pytestmark = pytest.mark.registry

FORMATS = ["legacy", "bundle"]
MODES = ["key", "keyless"]
DAY = 86400


@dataclasses.dataclass
class Bed:
    """The module's registry, cosign, CA and log, the files a policy names, and what was signed."""

    registry: Registry
    cosign: Cosign
    rekor: Rekor
    files: dict[str, Path]
    signed: dict[tuple[str, ...], tuple[str, str]] = dataclasses.field(default_factory=dict)

    def push(self, name: str) -> tuple[str, str]:
        """A new image `acme/NAME:prod`; (repository, digest)."""
        repo = f"acme/{name}"
        return repo, self.registry.push_image(repo, "prod", seed=name)

    def sign(self, name: str, mode: str, form: str, logged: bool = False) -> tuple[str, str]:
        """The image NAME, pushed and signed once: with the signer's key or keyless, into the
        test log when `logged`; (repository, digest)."""
        if (name, mode, form) not in self.signed:
            repo, digest = self.push(f"{name}-{mode}-{form}")
            certificate = {"certificate": self.files["leaf.pem"], "chain": self.files["chain.pem"]}
            self.cosign.sign(
                f"{self.registry.host}/{repo}@{digest}",
                self.files["signer.key" if mode == "key" else "leaf.key"],
                bundle=form == "bundle",
                rekor=self.rekor if logged else None,
                **(certificate if mode == "keyless" else {}),  # type: ignore[arg-type]
            )
            self.signed[(name, mode, form)] = repo, digest
        return self.signed[(name, mode, form)]

    def policy(self, mode: str, **fields: Any) -> Verify:
        """The policy that signer (key) or the leaf certificate (keyless) meets."""
        if mode == "key":
            policy = Verify(key=self.files["signer.pub"])
        else:
            policy = Verify(identity=IDENTITY, issuer=ISSUER, ca_file=self.files["ca.pem"])
        return dataclasses.replace(policy, **fields)

    def verified(self, repo: str, digest: str, policy: Verify, now: float | None = None) -> str:
        """The gate's verdict, through a client of its own, the registry's log cleared first."""
        self.registry.clear_log()
        registries = Registries(lambda host: RegistrySettings(), DockerConfig(self.files["docker"]))
        try:
            return verified(
                registries, parse(f"{self.registry.host}/{repo}:prod"), digest, policy, now
            )
        finally:
            registries.close()

    def read(self, repo: str, path: str, accept: str = OCI_MANIFEST) -> bytes:
        """GET /v2/REPO/PATH as the test bed (left out of the registry's log)."""
        answer = requests.get(
            f"{self.registry.url}/v2/{repo}/{path}",
            headers={"Accept": accept, "User-Agent": TESTBED_UA},
            timeout=10,
        )
        answer.raise_for_status()
        return answer.content


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    needs("docker-registry")
    work = tmp_path_factory.mktemp("signatures")
    cosign = Cosign(work / "cosign")
    ca = TestCA()
    leaf_key, leaf = ca.leaf(lifetime=dt.timedelta(hours=1))
    files = {
        "ca.pem": work / "ca.pem",
        "leaf.pem": work / "leaf.pem",
        "chain.pem": work / "chain.pem",
    }
    files["ca.pem"].write_bytes(ca.ca_pem())
    files["leaf.pem"].write_bytes(pem(leaf))
    files["chain.pem"].write_bytes(ca.ca_pem())
    files["other-ca.pem"] = work / "other-ca.pem"
    files["other-ca.pem"].write_bytes(TestCA("other").ca_pem())
    files["leaf.key"] = cosign.import_key(leaf_key, "leaf")
    files["signer.key"], files["signer.pub"] = cosign.generate_key_pair("signer")
    files["other.key"], files["other.pub"] = cosign.generate_key_pair("other")
    files["docker"] = work / "docker-config.json"
    files["docker"].write_text("{}")
    rekor = Rekor()
    rekor.start()
    files["rekor.pub"] = rekor.write_key(work / "rekor.pub")
    files["other-rekor.pub"] = Rekor().write_key(work / "other-rekor.pub")
    registry = Registry(work / "registry")
    registry.start()
    yield Bed(registry, cosign, rekor, files)
    registry.stop()
    rekor.stop()


def requested(bed: Bed) -> list[tuple[str, str, int]]:
    return [(r.method, r.path, r.status) for r in bed.registry.requests()]


def layer_digest(bed: Bed, repo: str, reference: str) -> str:
    return json.loads(bed.read(repo, f"manifests/{reference}"))["layers"][0]["digest"]


def referrer(bed: Bed, repo: str, digest: str) -> str:
    """The digest of the (first) referrer manifest cosign listed in the fallback index."""
    index = json.loads(bed.read(repo, f"manifests/{digest.replace(':', '-')}", OCI_INDEX))
    return index["manifests"][0]["digest"]


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", FORMATS)
def test_a_signed_digest_verifies_reading_its_signature_and_nothing_of_the_image(bed, form, mode):
    repo, digest = bed.sign("signed", mode, form)
    account = bed.verified(repo, digest, bed.policy(mode))
    signer = f"key {bed.files['signer.pub']}" if mode == "key" else f"{IDENTITY} from {ISSUER}"
    tag = digest.replace(":", "-")
    base = f"/v2/{repo}"
    if form == "legacy":
        assert account == f"cosign signature (the .sig tag) by {signer}"
        assert requested(bed) == [
            ("GET", f"{base}/manifests/{tag}.sig", 200),
            ("GET", f"{base}/blobs/{layer_digest(bed, repo, tag + '.sig')}", 200),
        ]
    else:
        found = referrer(bed, repo, digest)
        assert account == f"Sigstore bundle (the referrer {found[:19]}) by {signer}"
        assert requested(bed) == [
            ("GET", f"{base}/manifests/{tag}.sig", 404),
            ("GET", f"{base}/referrers/{digest}", 404),  # registry 2.8 has no referrers API
            ("GET", f"{base}/manifests/{tag}", 200),  # so cosign keeps the fallback index
            ("GET", f"{base}/manifests/{found}", 200),
            ("GET", f"{base}/blobs/{layer_digest(bed, repo, found)}", 200),
        ]


def test_any_signature_that_verifies_is_enough(bed):
    """The `.sig` tag holds another key's signature; the bundle is the signer's."""
    repo, digest = bed.push("mixed")
    image = f"{bed.registry.host}/{repo}@{digest}"
    bed.cosign.sign(image, bed.files["other.key"], bundle=False)
    bed.cosign.sign(image, bed.files["signer.key"], bundle=True)
    account = bed.verified(repo, digest, bed.policy("key"))
    assert account.startswith("Sigstore bundle (the referrer sha256:")
    neither = Verify(key=bed.files["rekor.pub"])  # a key that signed neither
    with pytest.raises(SignatureError, match=r"\(2 signatures, none verified\)$"):
        bed.verified(repo, digest, neither)


# --------------------------------------------------------------------------- rejected


@pytest.mark.parametrize(
    ("form", "message"),
    [
        (
            "legacy",
            "the .sig tag: its signature does not verify with key {other}: another key's, or its payload was altered",
        ),
        (
            "bundle",
            "the referrer sha256:[0-9a-f]{{12}}: it is signed by another key, not by key {other}",
        ),
    ],
)
def test_another_keys_signature_is_rejected(bed, form, message):
    repo, digest = bed.sign("signed", "key", form)
    with pytest.raises(SignatureError) as caught:
        bed.verified(repo, digest, Verify(key=bed.files["other.pub"]))
    expected = f"verifying {bed.registry.host}/{repo}@{digest}: " + message.format(
        other=bed.files["other.pub"]
    )
    assert caught.match(f"^{expected}$")


@pytest.mark.parametrize("form", FORMATS)
@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (
            {
                "identity": "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/dev"
            },
            f"its certificate's identity {IDENTITY} is not https://github.com/acme/app/.github/workflows/release.yml@refs/heads/dev",
        ),
        (
            {"identity": None, "identity_regexp": "https://github.com/acme/other/.*"},
            f"its certificate's identity {IDENTITY} is not matching https://github.com/acme/other/.*",
        ),
        (
            {"issuer": "https://accounts.google.com"},
            f"its certificate's OIDC issuer {ISSUER} is not https://accounts.google.com",
        ),
        (
            {"ca_file": "other-ca.pem"},
            "no CA in ca_file is 'Common Name: testbed intermediate, Organization: updater testbed', which issued its certificate",
        ),
    ],
)
def test_a_certificate_of_another_identity_issuer_or_ca_is_rejected(bed, form, fields, message):
    repo, digest = bed.sign("signed", "keyless", form)
    if "ca_file" in fields:
        fields = {"ca_file": bed.files[fields["ca_file"]]}
    with pytest.raises(SignatureError, match=f": {message}$"):
        bed.verified(repo, digest, bed.policy("keyless", **fields))


@pytest.mark.parametrize("form", FORMATS)
def test_without_a_log_a_certificate_must_be_valid_now(bed, form):
    repo, digest = bed.sign("signed", "keyless", form)
    later = dt.datetime.now(dt.UTC).timestamp() + DAY
    with pytest.raises(
        SignatureError,
        match=r": its certificate expired at \S+ \(checked at \S+, now: without rekor_key a certificate must be valid now\)$",
    ):
        bed.verified(repo, digest, bed.policy("keyless"), now=later)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("form", FORMATS)
def test_a_signature_copied_to_another_digest_is_rejected(bed, form, mode):
    signed_repo, signed = bed.sign("signed", mode, form)
    repo, digest = bed.push(f"copy-{mode}-{form}")
    source, target = signed.replace(":", "-"), digest.replace(":", "-")
    if form == "legacy":
        body = bed.read(signed_repo, f"manifests/{source}.sig")
        copy_blobs(bed, signed_repo, json.loads(body), repo)
        bed.registry.put_manifest(repo, f"{target}.sig", OCI_MANIFEST, body)
    else:
        copy_referrers(bed, signed_repo, signed, repo, target)
    with pytest.raises(SignatureError, match=f": it signs {signed}, not {digest}$"):
        bed.verified(repo, digest, bed.policy(mode))


def copy_referrers(bed: Bed, from_repo: str, digest: str, repo: str, tag: str) -> None:
    """Copy the fallback index of `digest` (and what it lists) to `repo` under `tag`."""
    index = bed.read(from_repo, f"manifests/{digest.replace(':', '-')}", OCI_INDEX)
    for entry in json.loads(index)["manifests"]:
        body = bed.read(from_repo, f"manifests/{entry['digest']}")
        copy_blobs(bed, from_repo, json.loads(body), repo)
        bed.registry.put_manifest(repo, entry["digest"], OCI_MANIFEST, body)
    bed.registry.put_manifest(repo, tag, OCI_INDEX, index)


def copy_blobs(bed: Bed, from_repo: str, manifest: dict[str, Any], repo: str) -> None:
    for blob in [manifest["config"], *manifest["layers"]]:
        bed.registry.upload_blob(repo, bed.read(from_repo, f"blobs/{blob['digest']}", "*/*"))


def test_an_unsigned_digest_is_rejected_saying_where_it_looked(bed):
    repo, digest = bed.push("unsigned")
    tag = digest.replace(":", "-")
    with pytest.raises(SignatureError) as caught:
        bed.verified(repo, digest, bed.policy("key"))
    assert str(caught.value) == (
        f"verifying {bed.registry.host}/{repo}@{digest}: no signature found"
        f" (looked for the tag {tag}.sig and referrers)"
    )
    assert requested(bed) == [
        ("GET", f"/v2/{repo}/manifests/{tag}.sig", 404),
        ("GET", f"/v2/{repo}/referrers/{digest}", 404),
        ("GET", f"/v2/{repo}/manifests/{tag}", 404),
    ]


@pytest.mark.parametrize(
    ("mode", "form", "message"),
    [
        (
            "key",
            "legacy",
            "the .sig tag: its signature does not verify with key {key}: another key's, or its payload was altered",
        ),
        ("keyless", "legacy", "the .sig tag: its payload does not match its signature"),
        (
            "key",
            "bundle",
            "the referrer sha256:[0-9a-f]{{12}}: its payload does not match its signature",
        ),
        (
            "keyless",
            "bundle",
            "the referrer sha256:[0-9a-f]{{12}}: its payload does not match its signature",
        ),
    ],
)
def test_a_payload_altered_to_name_another_digest_is_rejected(bed, mode, form, message):
    """A valid signature, its payload edited to name another image and pushed again."""
    signed_repo, signed = bed.sign("signed", mode, form)
    repo, digest = bed.push(f"altered-{mode}-{form}")
    if form == "legacy":
        push_altered_sig(bed, signed_repo, signed, repo, digest)
    else:
        push_altered_bundle(bed, signed_repo, signed, repo, digest)
    with pytest.raises(
        SignatureError, match=": " + message.format(key=bed.files["signer.pub"]) + "$"
    ):
        bed.verified(repo, digest, bed.policy(mode))


def push_altered_sig(bed: Bed, from_repo: str, signed: str, repo: str, digest: str) -> None:
    manifest = json.loads(bed.read(from_repo, f"manifests/{signed.replace(':', '-')}.sig"))
    layer = manifest["layers"][0]
    payload = bed.read(from_repo, f"blobs/{layer['digest']}", "*/*").replace(
        signed.encode(), digest.encode()
    )
    layer.update(digest=bed.registry.upload_blob(repo, payload), size=len(payload))
    config = bed.read(from_repo, f"blobs/{manifest['config']['digest']}", "*/*")
    bed.registry.upload_blob(repo, config)
    body = json.dumps(manifest).encode()
    bed.registry.put_manifest(repo, f"{digest.replace(':', '-')}.sig", OCI_MANIFEST, body)


def push_altered_bundle(bed: Bed, from_repo: str, signed: str, repo: str, digest: str) -> None:
    found = referrer(bed, from_repo, signed)
    manifest = json.loads(bed.read(from_repo, f"manifests/{found}"))
    layer = manifest["layers"][0]
    bundle = json.loads(bed.read(from_repo, f"blobs/{layer['digest']}", "*/*"))
    envelope = bundle["dsseEnvelope"]
    payload = base64.b64decode(envelope["payload"]).replace(
        signed[7:].encode(), digest[7:].encode()
    )
    envelope["payload"] = base64.b64encode(payload).decode()
    data = json.dumps(bundle).encode()
    layer.update(digest=bed.registry.upload_blob(repo, data), size=len(data))
    bed.registry.upload_blob(repo, b"{}")  # the empty config
    manifest["subject"]["digest"] = digest
    body = json.dumps(manifest).encode()
    altered = bed.registry.put_manifest(
        repo, "sha256:" + hashlib.sha256(body).hexdigest(), OCI_MANIFEST, body
    )
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "size": len(body), "digest": altered}],
    }
    bed.registry.put_manifest(repo, digest.replace(":", "-"), OCI_INDEX, json.dumps(index).encode())


def unverifiable_layers(bed: Bed, repo: str, count: int) -> list[dict[str, Any]]:
    """`count` simple signing layers, each its own blob, none with a signature that verifies."""
    layers = []
    for number in range(count):
        payload = f'{{"critical": {{"number": {number}}}}}'.encode()
        layers.append(
            {
                "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                "size": len(payload),
                "digest": bed.registry.upload_blob(repo, payload),
                "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
            }
        )
    return layers


def push_sig(bed: Bed, repo: str, digest: str, layers: list[dict[str, Any]]) -> None:
    config = bed.registry.upload_blob(repo, b"{}")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "size": 2,
            "digest": config,
        },
        "layers": layers,
    }
    tag = f"{digest.replace(':', '-')}.sig"
    bed.registry.put_manifest(repo, tag, OCI_MANIFEST, json.dumps(manifest).encode())


def test_the_signatures_looked_at_are_bounded(bed):
    """A `.sig` tag with 40 layers: the gate reads MAX_CANDIDATES of them, and stops."""
    repo, digest = bed.push("many")
    push_sig(bed, repo, digest, unverifiable_layers(bed, repo, 40))
    with pytest.raises(SignatureError, match=rf"\({MAX_CANDIDATES} signatures, none verified\)$"):
        bed.verified(repo, digest, bed.policy("key"))
    blobs = [path for method, path, _ in requested(bed) if "/blobs/" in path]
    assert len(blobs) == MAX_CANDIDATES


# --------------------------------------------------------------------------- the transparency log


@pytest.mark.parametrize("form", FORMATS)
def test_a_logged_certificate_verifies_after_it_expired(bed, form):
    """Keyless signatures outlive their 1-hour certificate when the log says when they were made."""
    repo, digest = bed.sign("logged", "keyless", form, logged=True)
    later = dt.datetime.now(dt.UTC).timestamp() + DAY
    policy = bed.policy("keyless", rekor_key=bed.files["rekor.pub"])
    account = bed.verified(repo, digest, policy, now=later)
    assert f"by {IDENTITY} from {ISSUER}, in the transparency log since " in account
    with pytest.raises(SignatureError, match=": its certificate expired at"):
        bed.verified(repo, digest, bed.policy("keyless"), now=later)


@pytest.mark.parametrize("form", FORMATS)
def test_a_logged_key_signature_needs_the_logs_key(bed, form):
    repo, digest = bed.sign("logged", "key", form, logged=True)
    account = bed.verified(repo, digest, bed.policy("key", rekor_key=bed.files["rekor.pub"]))
    assert f"by key {bed.files['signer.pub']}, in the transparency log since " in account
    with pytest.raises(
        SignatureError,
        match=r": its transparency-log entry is from another log \(ID [0-9a-f]{64}\)$",
    ):
        bed.verified(repo, digest, bed.policy("key", rekor_key=bed.files["other-rekor.pub"]))


@pytest.mark.parametrize("form", FORMATS)
def test_an_unlogged_signature_is_rejected_when_the_policy_wants_a_log(bed, form):
    repo, digest = bed.sign("signed", "key", form)
    with pytest.raises(
        SignatureError, match=": it has no transparency-log entry, and the policy requires one$"
    ):
        bed.verified(repo, digest, bed.policy("key", rekor_key=bed.files["rekor.pub"]))


def test_a_bundle_whose_checkpoint_the_log_did_not_sign_is_rejected(bed, tmp_path):
    """The entry's promise is the log's, its inclusion proof leads to the checkpoint's root,
    but the checkpoint is signed by another key: the bundle is refused, the legacy `.sig`
    annotation (which carries no proof) still verifies by its promise."""
    forger = Rekor()
    forger.note_key = ec.generate_private_key(ec.SECP256R1())
    forger.start()
    try:
        rekor_key = forger.write_key(tmp_path / "forger.pub")
        for form in FORMATS:
            repo, digest = bed.push(f"forged-checkpoint-{form}")
            image = f"{bed.registry.host}/{repo}@{digest}"
            bed.cosign.sign(image, bed.files["signer.key"], bundle=form == "bundle", rekor=forger)
            policy = bed.policy("key", rekor_key=rekor_key)
            if form == "legacy":
                assert ", in the transparency log since " in bed.verified(repo, digest, policy)
                continue
            with pytest.raises(
                SignatureError,
                match=f": its checkpoint's signature is not rekor_key {rekor_key}'s$",
            ):
                bed.verified(repo, digest, policy)
    finally:
        forger.stop()


# --------------------------------------------------------------------------- bad candidates


def corrupt_blob(bed: Bed, digest: str) -> None:
    """Flip a byte of the blob where the registry stores it: it serves it as it is, its
    digest no longer its bytes' (a broken disk, or whoever can write the storage)."""
    data = bed.registry.storage / "docker/registry/v2/blobs/sha256" / digest[7:9] / digest[7:]
    stored = bytearray((data / "data").read_bytes())
    stored[0] ^= 0x20
    (data / "data").write_bytes(bytes(stored))


def bad_layer(bed: Bed, repo: str, kind: str, number: int = 1) -> dict[str, Any]:
    """A simple signing layer whose blob is corrupt in storage, or larger than a payload may be;
    its blob is this repository's and this `number`'s own."""
    payload = f'{{"critical": {{"bad": "{repo}", "number": {number}}}}}'.encode()
    if kind == "too large":
        payload += b" " * 65536
    digest = bed.registry.upload_blob(repo, payload)
    if kind == "corrupt":
        corrupt_blob(bed, digest)
    return {
        "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
        "size": len(payload),
        "digest": digest,
        "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQ=="},
    }


BAD = {
    "corrupt": r"unreadable \(reading blob sha256:[0-9a-f]{64} of \S+: its bytes hash otherwise\)",
    "too large": r"unreadable \(reading blob sha256:[0-9a-f]{64} of \S+: it is larger than 65536 bytes\)",
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_layer_before_a_good_one_in_the_sig_tag_is_skipped(bed, kind, caplog):
    repo, digest = bed.push(f"bad-layer-{kind.replace(' ', '-')}")
    bed.cosign.sign(f"{bed.registry.host}/{repo}@{digest}", bed.files["signer.key"], bundle=False)
    tag = f"{digest.replace(':', '-')}.sig"
    good = json.loads(bed.read(repo, f"manifests/{tag}"))["layers"]
    push_sig(bed, repo, digest, [bad_layer(bed, repo, kind), *good])
    with caplog.at_level("DEBUG", logger="updater"):
        account = bed.verified(repo, digest, bed.policy("key"))
    assert account == f"cosign signature (the .sig tag, layer 2) by key {bed.files['signer.pub']}"
    assert re.search(
        f"{repo}@{digest}: skipping the signature in the .sig tag, layer 1: {BAD[kind]}",
        caplog.text,
    )
    push_sig(bed, repo, digest, [bad_layer(bed, repo, kind, 2)])  # a bad one alone
    with pytest.raises(SignatureError, match=f": the .sig tag: {BAD[kind]}$"):
        bed.verified(repo, digest, bed.policy("key"))


def test_a_bad_sig_tag_never_hides_a_good_bundle(bed):
    repo, digest = bed.push("bad-sig-good-bundle")
    bed.cosign.sign(f"{bed.registry.host}/{repo}@{digest}", bed.files["signer.key"], bundle=True)
    push_sig(
        bed, repo, digest, [bad_layer(bed, repo, "corrupt"), bad_layer(bed, repo, "too large", 2)]
    )
    account = bed.verified(repo, digest, bed.policy("key"))
    assert account.startswith("Sigstore bundle (the referrer sha256:")
    blobs = [(path, status) for method, path, status in requested(bed) if "/blobs/" in path]
    assert len(blobs) == 3 and all(status == 200 for _, status in blobs)  # 2 bad, then the bundle


def test_a_corrupt_bundle_never_hides_a_good_one(bed):
    """Two bundle referrers, the first one listed corrupt."""
    repo, digest = bed.push("bad-bundle")
    image = f"{bed.registry.host}/{repo}@{digest}"
    bed.cosign.sign(image, bed.files["signer.key"], bundle=True)
    good = referrer(bed, repo, digest)
    bed.cosign.sign(image, bed.files["other.key"], bundle=True)
    tag = digest.replace(":", "-")
    index = json.loads(bed.read(repo, f"manifests/{tag}", OCI_INDEX))
    index["manifests"].sort(key=lambda entry: entry["digest"] == good)  # the good one last
    bed.registry.put_manifest(repo, tag, OCI_INDEX, json.dumps(index).encode())
    corrupt = referrer(bed, repo, digest)
    assert corrupt != good
    corrupt_blob(bed, layer_digest(bed, repo, corrupt))
    account = bed.verified(repo, digest, bed.policy("key"))
    assert account == f"Sigstore bundle (the referrer {good[:19]}) by key {bed.files['signer.pub']}"
    with pytest.raises(  # the other key's bundle is unreadable; the good one is not its
        SignatureError,
        match=r": it is signed by another key, not by key \S+ \(2 signatures, none verified\)$",
    ):
        bed.verified(repo, digest, Verify(key=bed.files["other.pub"]))


def test_a_crowded_sig_tag_hides_no_bundle(bed):
    """40 layers that do not verify in the `.sig` tag: MAX_CANDIDATES of them are read, then
    the referrers still are."""
    repo, digest = bed.push("crowded")
    bed.cosign.sign(f"{bed.registry.host}/{repo}@{digest}", bed.files["signer.key"], bundle=True)
    push_sig(bed, repo, digest, unverifiable_layers(bed, repo, 40))
    account = bed.verified(repo, digest, bed.policy("key"))
    assert account.startswith("Sigstore bundle (the referrer sha256:")
    blobs = [path for method, path, _ in requested(bed) if "/blobs/" in path]
    assert len(blobs) == MAX_CANDIDATES + 1
