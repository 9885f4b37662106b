"""What signs images for the signature tests: the real cosign (fetched by testbed/engines.sh), a
test CA shaped like Sigstore's Fulcio (a P-384 root and intermediate issuing short-lived P-256
code-signing certificates with the OIDC issuer extensions), and a transparency log that speaks
Rekor v1's upload API and signs each entry's promise with its own key.

No network is needed: cosign signs with a key file (and the CA's certificate for keyless),
uploads to the test log when given one, and pushes to the test registry.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from testbed import needs
from testbed.engine import ENGINES

COSIGN = ENGINES / "cosign/usr/bin/cosign"
IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
ISSUER = "https://token.actions.githubusercontent.com"
ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")


def pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def public_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _utf8_string(text: str) -> bytes:
    """DER UTF8String, as Fulcio encodes the issuer in extension 1.3.6.1.4.1.57264.1.8."""
    data = text.encode()
    assert len(data) < 128
    return bytes([0x0C, len(data)]) + data


class TestCA:
    """A Fulcio-shaped CA: a self-signed P-384 root, a P-384 intermediate under it, and
    `leaf()` for code-signing certificates of an identity and an OIDC issuer."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "testbed") -> None:
        now = dt.datetime.now(dt.UTC)
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = self._ca(f"{name} root", self.root_key, None, now, 1)
        self.intermediate_key = ec.generate_private_key(ec.SECP384R1())
        self.intermediate = self._ca(f"{name} intermediate", self.intermediate_key, self, now, 0)

    def _ca(
        self,
        cn: str,
        key: ec.EllipticCurvePrivateKey,
        parent: TestCA | None,
        now: dt.datetime,
        path_length: int,
    ) -> x509.Certificate:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "updater testbed"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
            ]
        )
        issuer = parent.root if parent else None
        signer = parent.root_key if parent else key
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=30))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(signer, hashes.SHA384())
        )

    def ca_pem(self) -> bytes:
        """What a user puts in ca_file: the intermediate, then the root."""
        return pem(self.intermediate) + pem(self.root)

    def leaf(
        self,
        identity: str = IDENTITY,
        issuer: str | None = ISSUER,
        *,
        email: bool = False,
        issuer_extension: str = "both",
        start: dt.datetime | None = None,
        lifetime: dt.timedelta = dt.timedelta(minutes=10),
        code_signing: bool = True,
        signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
        critical: x509.ExtensionType | None = None,
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """A P-256 key and its certificate, as Fulcio issues them: empty subject, the identity
        as a critical SAN (URI, or e-mail with `email`), the issuer in extension "v1" (raw),
        "v2" (UTF8String), "both" or "none"; valid for `lifetime` from `start` (a minute ago)."""
        key = ec.generate_private_key(ec.SECP256R1())
        parent, parent_key = signer or (self.intermediate, self.intermediate_key)
        begin = start or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        name: x509.GeneralName = (
            x509.RFC822Name(identity) if email else x509.UniformResourceIdentifier(identity)
        )
        usages = [
            ExtendedKeyUsageOID.CODE_SIGNING if code_signing else ExtendedKeyUsageOID.SERVER_AUTH
        ]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(parent.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(begin)
            .not_valid_after(begin + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName([name]), critical=True)
        )
        if issuer is not None and issuer_extension in ("v1", "both"):
            ext = x509.UnrecognizedExtension(ISSUER_V1, issuer.encode())
            builder = builder.add_extension(ext, critical=False)
        if issuer is not None and issuer_extension in ("v2", "both"):
            ext = x509.UnrecognizedExtension(ISSUER_V2, _utf8_string(issuer))
            builder = builder.add_extension(ext, critical=False)
        if critical is not None:
            builder = builder.add_extension(critical, critical=True)
        return key, builder.sign(parent_key, hashes.SHA384())


class Rekor:
    """A transparency log with Rekor v1's upload API (`POST /api/v1/log/entries`), threaded on
    127.0.0.1. It records hashedrekord and dsse entries as Rekor canonicalises them, signs
    each one's promise (the SignedEntryTimestamp) with its P-256 key, and answers the entry's
    inclusion proof in the tree of all its entries (RFC 6962) with a checkpoint it signed."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.log_id = hashlib.sha256(der).hexdigest()
        self.entries: list[dict[str, Any]] = []
        self.leaves: list[bytes] = []  # the Merkle tree's leaf hashes
        self.note_key = self.key  # what signs its checkpoints: another key forges them
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def write_key(self, path: Path) -> Path:
        """Write the log's public key, what a user gives as rekor_key."""
        path.write_bytes(public_pem(self.key))
        return path

    def record(
        self, proposed: dict[str, Any], integrated_time: int | None = None
    ) -> dict[str, Any]:
        """Log a proposed entry; the entry as Rekor answers it (body, integratedTime, logID,
        logIndex, verification), its promise signed."""
        body = base64.b64encode(_canonical(canonicalized(proposed))).decode()
        with self._lock:
            index = len(self.entries)
            promise = {
                "body": body,
                "integratedTime": integrated_time or int(dt.datetime.now(dt.UTC).timestamp()),
                "logID": self.log_id,
                "logIndex": index,
            }
            signed = self.key.sign(_canonical(promise), ec.ECDSA(hashes.SHA256()))
            self.leaves.append(hashlib.sha256(b"\x00" + base64.b64decode(body)).digest())
            root = merkle_root(self.leaves)
            entry = {
                **promise,
                "verification": {
                    "signedEntryTimestamp": base64.b64encode(signed).decode(),
                    "inclusionProof": {  # hex, as Rekor v1's API answers it
                        "checkpoint": self.checkpoint(len(self.leaves), root),
                        "hashes": [h.hex() for h in audit_path(index, self.leaves)],
                        "logIndex": index,
                        "rootHash": root.hex(),
                        "treeSize": len(self.leaves),
                    },
                },
            }
            self.entries.append(entry)
        return entry

    def checkpoint(self, size: int, root: bytes) -> str:
        """The log's signed note for a tree: origin, size, root hash, its signature line with
        the key hint (the first 4 bytes of the log ID)."""
        text = f"testbed - 1\n{size}\n{base64.b64encode(root).decode()}\n"
        signature = self.note_key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        line = base64.b64encode(bytes.fromhex(self.log_id)[:4] + signature).decode()
        return f"{text}\n\u2014 testbed {line}\n"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server API)
                length = int(self.headers.get("Content-Length") or 0)
                proposed = json.loads(self.rfile.read(length))
                entry = owner.record(proposed)
                uuid = "24296fb24b8ad77a" + hashlib.sha256(entry["body"].encode()).hexdigest()
                data = json.dumps({uuid: entry}).encode()
                self.send_response(201)
                self.send_header("ETag", uuid)  # cosign finds its entry by this name
                self.send_header("Location", f"/api/v1/log/entries/{uuid}")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()


def merkle_root(leaves: list[bytes]) -> bytes:
    """RFC 6962's Merkle tree hash of leaf hashes, by its recursive definition."""
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(
        b"\x01" + merkle_root(leaves[:split]) + merkle_root(leaves[split:])
    ).digest()


def audit_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962's audit path of leaf `index`, by its recursive definition."""
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return audit_path(index, leaves[:split]) + [merkle_root(leaves[split:])]
    return audit_path(index - split, leaves[split:]) + [merkle_root(leaves[:split])]


def canonicalized(proposed: dict[str, Any]) -> dict[str, Any]:
    """The entry Rekor records for a proposal: a dsse proposal becomes hashes of the envelope
    and payload and its signatures with their verifier; a hashedrekord stays as it is."""
    if proposed["kind"] != "dsse":
        return proposed
    content = proposed["spec"]["proposedContent"]
    envelope = json.loads(content["envelope"])
    payload = base64.b64decode(envelope["payload"])
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "envelopeHash": _hash(content["envelope"].encode()),
            "payloadHash": _hash(payload),
            "signatures": [
                {"signature": s["sig"], "verifier": content["verifiers"][0]}
                for s in envelope["signatures"]
            ],
        },
    }


def hashedrekord(payload: bytes, signature: bytes, signer_pem: bytes) -> dict[str, Any]:
    """The proposal cosign makes for a simple signing signature."""
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": _hash(payload)},
            "signature": {
                "content": base64.b64encode(signature).decode(),
                "publicKey": {"content": base64.b64encode(signer_pem).decode()},
            },
        },
    }


def legacy_annotation(entry: dict[str, Any]) -> str:
    """The entry as cosign's `dev.sigstore.cosign/bundle` annotation holds it."""
    payload = {k: entry[k] for k in ("body", "integratedTime", "logID", "logIndex")}
    promise = entry["verification"]["signedEntryTimestamp"]
    return json.dumps({"SignedEntryTimestamp": promise, "Payload": payload})


def bundle_entry(entry: dict[str, Any], kind: str) -> dict[str, Any]:
    """The entry as a Sigstore bundle's tlogEntries[] holds it (int64s as strings)."""
    return {
        "logIndex": str(entry["logIndex"]),
        "logId": {"keyId": base64.b64encode(bytes.fromhex(entry["logID"])).decode()},
        "kindVersion": {"kind": kind, "version": "0.0.1"},
        "integratedTime": str(entry["integratedTime"]),
        "inclusionPromise": {"signedEntryTimestamp": entry["verification"]["signedEntryTimestamp"]},
        "canonicalizedBody": entry["body"],
    }


class Cosign:
    """The real cosign, with its home (and so its caches) under `workdir`; no password on keys.
    Skips the test (fails in CI) when testbed/engines.sh has not fetched it."""

    def __init__(self, workdir: Path) -> None:
        needs(str(COSIGN))
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(workdir),
            "COSIGN_PASSWORD": "",
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(COSIGN), *args],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise RuntimeError(f"cosign {' '.join(args)}: {done.returncode}\n{done.stderr}")
        return done

    def generate_key_pair(self, name: str) -> tuple[Path, Path]:
        """A new cosign key pair: (NAME.key, NAME.pub)."""
        self.run("generate-key-pair", "--output-key-prefix", name)
        return self.workdir / f"{name}.key", self.workdir / f"{name}.pub"

    def import_key(self, key: ec.EllipticCurvePrivateKey, name: str) -> Path:
        """`key` in cosign's own encrypted format (cosign sign refuses plain PKCS#8)."""
        plain = self.workdir / f"{name}.pkcs8.pem"
        plain.write_bytes(private_pem(key))
        self.run("import-key-pair", "--key", str(plain), "--output-key-prefix", name, "-y")
        return self.workdir / f"{name}.key"

    def sign(
        self,
        image: str,
        key: Path,
        *,
        bundle: bool,
        certificate: Path | None = None,
        chain: Path | None = None,
        rekor: Rekor | None = None,
    ) -> None:
        """Sign IMAGE (HOST/REPO@DIGEST) and push the signature: a Sigstore bundle referrer
        (`bundle`) or the legacy `.sig` tag; into `rekor`'s log when given, else no log."""
        args = ["sign", "--key", str(key), "--use-signing-config=false", "-y"]
        if certificate is not None:
            args += ["--certificate", str(certificate)]
        if chain is not None:
            args += ["--certificate-chain", str(chain)]
        args += (
            [f"--rekor-url={rekor.url}", "--tlog-upload=true"] if rekor else ["--tlog-upload=false"]
        )
        if not bundle:
            args.append("--new-bundle-format=false")
        self.run(*args, image)


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _hash(data: bytes) -> dict[str, str]:
    return {"algorithm": "sha256", "value": hashlib.sha256(data).hexdigest()}
