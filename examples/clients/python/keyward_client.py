#!/usr/bin/env python3
"""Keyward client recipe (Python, `cryptography`): offline license and machine files, signed
answers, key rotation and revocation lists. Paste the part above `# ---- CLI` into your app.

Usage (one JSON line on stdout; exit 0 accepted, 1 refused, 2 usage):
  keyward_client.py file    TRUSTED LICENSE_FILE LICENSE_KEY [FINGERPRINT]
  keyward_client.py answer  TRUSTED BODY_FILE SIGNATURE KID NONCE
  keyward_client.py rotate  TRUSTED KEY_LIST_FILE
  keyward_client.py revoked TRUSTED LIST_FILE SIGNATURE KID LICENSE_KEY LAST_SEEN_VERSION
TRUSTED is a JSON array of the base64 public keys the app trusts (at first: the one it ships).
KEYWARD_CLIENT_NOW (RFC 3339) replaces the clock, for tests.
"""

import base64
import hashlib
import json
import os
import sys
from datetime import datetime, timedelta, timezone

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

CLOCK_SKEW = timedelta(minutes=5)


class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def kid_of(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def trust_set(keys_b64):
    """{kid: raw public key} from base64 keys."""
    return {kid_of(k): k for k in (base64.b64decode(s) for s in keys_b64)}


def _verifies(public_key: bytes, signature_b64: str, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(base64.b64decode(signature_b64), message)
        return True
    except (InvalidSignature, ValueError):
        return False


def _time(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def read_file(text, trusted, license_key, fingerprint="", now=None):
    """Verifies, decrypts and dates a license or machine file; returns (kind, kid, payload)."""
    lines = text.strip().splitlines()
    kinds = {"-----BEGIN LICENSE FILE-----": "license", "-----BEGIN MACHINE FILE-----": "machine"}
    kind = kinds.get(lines[0].strip()) if lines else None
    if kind is None or lines[-1].strip() != f"-----END {kind.upper()} FILE-----":
        raise Refused("MALFORMED", "not a license or machine file")
    try:
        outer = json.loads(base64.b64decode("".join(lines[1:-1])))
        enc, sig, alg = outer["enc"], outer["sig"], outer["alg"]
    except (ValueError, KeyError, TypeError):
        raise Refused("MALFORMED", "the file's body is not base64 JSON with enc, sig and alg")
    if alg not in ("aes-256-gcm+ed25519", "base64+ed25519"):
        raise Refused("UNSUPPORTED_ALG", f"unsupported algorithm {alg!r}")
    # Keygen's own files name no key: any trusted key may have signed them.
    kid = outer.get("kid")
    if kid is not None and kid not in trusted:
        raise Refused("UNKNOWN_KID", f"signed by key {kid}, which is not trusted: update the trust set")
    candidates = [kid] if kid is not None else list(trusted)
    message = f"{kind}/{enc}".encode()
    kid = next((k for k in candidates if _verifies(trusted[k], sig, message)), None)
    if kid is None:
        raise Refused("BAD_SIGNATURE", "the signature does not verify with a trusted key")
    try:
        if alg == "base64+ed25519":
            plaintext = base64.b64decode(enc)
        else:
            ciphertext, iv, tag = (base64.b64decode(p) for p in enc.split("."))
            aes_key = hashlib.sha256((license_key + fingerprint).encode()).digest()
            plaintext = AESGCM(aes_key).decrypt(iv, ciphertext + tag, None)
        payload = json.loads(plaintext)
    except (InvalidTag, ValueError, TypeError):
        raise Refused("UNDECRYPTABLE", "the file does not decrypt with this license key and fingerprint")
    try:
        issued, ttl = _time(payload["meta"]["issued"]), payload["meta"].get("ttl")
        key = payload["data"]["attributes"]["key"]
        machines = [i["attributes"]["fingerprint"] for i in payload.get("included", []) if i["type"] == "machines"]
    except (ValueError, KeyError, TypeError):
        raise Refused("MALFORMED", "the payload lacks meta.issued, the license key or a machine's fingerprint")
    # An unencrypted file opens with any key: only its contents say whose it is.
    if key != license_key:
        raise Refused("WRONG_LICENSE", "the file is about another license")
    if kind == "machine" and fingerprint not in machines:
        raise Refused("WRONG_MACHINE", "the file is about another machine")
    now = now or datetime.now(timezone.utc)
    if issued > now + CLOCK_SKEW:
        raise Refused("NOT_YET_VALID", "the file is issued in the future: is the clock wrong?")
    if ttl is not None and now > issued + timedelta(seconds=ttl):
        raise Refused("EXPIRED", "the file's TTL has passed: check out a new one")
    return kind, kid, payload


def verify_signed(body: bytes, signature_b64, kid, trusted):
    """An answer's X-Signature over its exact body bytes, by the key X-Keyward-Key-Id names."""
    if kid not in trusted:
        raise Refused("UNKNOWN_KID", f"signed by key {kid}, which is not trusted: update the trust set")
    if not _verifies(trusted[kid], signature_b64, body):
        raise Refused("BAD_SIGNATURE", "the signature does not verify over the body")
    return json.loads(body)


def verify_answer(body: bytes, signature_b64, kid, nonce, trusted):
    answer = verify_signed(body, signature_b64, kid, trusted)
    if answer.get("nonce") != nonce:
        raise Refused("NONCE_MISMATCH", "the answer does not carry this request's nonce: a replay?")
    return answer


def update_trust(trusted, key_list):
    """Follows rotations in a public-key answer ({"keys":[…]}): a listed key is trusted only if
    its endorsement verifies with a key already trusted; retired keys are dropped."""
    trusted, accepted = dict(trusted), []
    endorsed = True
    while endorsed:  # until nothing new: chains A → B → C work
        endorsed = False
        for entry in key_list.get("keys", []):
            raw, e = base64.b64decode(entry["publicKey"]), entry.get("endorsement")
            kid = kid_of(raw)
            if kid in trusted or not e or e.get("kid") not in trusted or entry.get("kid") != kid:
                continue
            message = f"keyward-key-endorsement/{entry['publicKey']}".encode()
            if _verifies(trusted[e["kid"]], e["signature"], message):
                trusted[kid], endorsed = raw, True
                accepted.append(kid)
    retired = {kid_of(base64.b64decode(e["publicKey"])) for e in key_list.get("keys", []) if e.get("retired")}
    dropped = [kid for kid in trusted if kid in retired]
    for kid in dropped:
        del trusted[kid]
    current = key_list.get("kid")
    if current not in trusted:
        raise Refused("UNTRUSTED_CURRENT", f"the current key {current} is not endorsed by a trusted key")
    return trusted, accepted, dropped


def check_revocation(body: bytes, signature_b64, kid, trusted, license_key, last_seen_version):
    """Verifies a revocation list; refuses an older one and a license it names. Returns its version."""
    revocations = verify_signed(body, signature_b64, kid, trusted)
    if revocations["version"] < last_seen_version:
        raise Refused("STALE_LIST", f"list version {revocations['version']} is older than {last_seen_version}")
    digest = hashlib.sha256(license_key.strip().upper().encode()).hexdigest()
    for entry in revocations["revoked"]:
        if entry["keySha256"] == digest:
            raise Refused("REVOKED", f"the license is {entry['status']}")
    return revocations["version"]


# ---- CLI (for the tests; not part of the recipe) ------------------------------------------


def main(argv):
    now = _time(os.environ["KEYWARD_CLIENT_NOW"]) if os.environ.get("KEYWARD_CLIENT_NOW") else None
    command, args = (argv[0], argv[1:]) if argv else ("", [])
    usage = {"file": (3, 4), "answer": (5, 5), "rotate": (2, 2), "revoked": (6, 6)}
    if command not in usage or not usage[command][0] <= len(args) <= usage[command][1]:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0]) as f:
        trusted = trust_set(json.load(f))
    try:
        if command == "file":
            with open(args[1]) as f:
                text = f.read()
            kind, kid, payload = read_file(text, trusted, args[2], args[3] if len(args) > 3 else "", now)
            out = {"ok": True, "kind": kind, "kid": kid, "payload": payload}
        elif command == "answer":
            with open(args[1], "rb") as f:
                body = f.read()
            out = {"ok": True, "kid": args[3], "body": verify_answer(body, args[2], args[3], args[4], trusted)}
        elif command == "rotate":
            with open(args[1]) as f:
                key_list = json.load(f)
            trusted, accepted, dropped = update_trust(trusted, key_list)
            keys = [base64.b64encode(k).decode() for k in trusted.values()]
            out = {"ok": True, "trusted": keys, "accepted": accepted, "dropped": dropped}
        else:
            with open(args[1], "rb") as f:
                body = f.read()
            version = check_revocation(body, args[2], args[3], trusted, args[4], int(args[5]))
            out = {"ok": True, "version": version, "revoked": False}
    except Refused as refused:
        print(json.dumps({"ok": False, "error": refused.code, "message": str(refused)}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
