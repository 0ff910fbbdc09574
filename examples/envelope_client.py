#!/usr/bin/env python3
"""Validate a Keyward key through the AES-256-GCM encrypted envelope.

Usage: envelope_client.py URL PROJECT_ID ENCRYPTION_KEY_B64 LICENSE_KEY HWID

The project id and its encryption key are shown in the admin panel (GET /api/projects/<id>).
Needs the `cryptography` package (pip install cryptography); the HTTP call uses only the
standard library.
"""

import base64
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def seal(key: bytes, message: dict) -> str:
    """base64(12-byte IV || ciphertext || 16-byte tag); no associated data."""
    iv = os.urandom(12)
    return base64.b64encode(iv + AESGCM(key).encrypt(iv, json.dumps(message).encode(), None)).decode()


def open_sealed(key: bytes, payload: str) -> dict:
    raw = base64.b64decode(payload)
    return json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], None))


def validate(url: str, project_id: str, key: bytes, license_key: str, hwid: str, nonce=None, session_id=None):
    request = {
        "key": license_key,
        "hwid": hwid,
        "timestamp": int(time.time()),          # the server accepts +-60 s
        "requestId": secrets.token_hex(16),      # never reuse: a repeated id is a replay
        "clientNonce": secrets.token_hex(8),     # echoed back inside the encrypted answer
    }
    if nonce:
        request["nonce"] = nonce                 # the nonce the previous answer handed out
    if session_id:
        request["sessionId"] = session_id
    body = json.dumps({"projectId": project_id, "payload": seal(key, request)}).encode()
    http = urllib.request.Request(url + "/api/validate", body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(http, timeout=10) as resp:
            status, outer = resp.status, json.load(resp)
    except urllib.error.HTTPError as err:       # errors are encrypted too, with their status
        status, outer = err.code, json.load(err)
    if "payload" not in outer:                   # the envelope itself was refused (plain error)
        return status, outer
    answer = open_sealed(key, outer["payload"])
    if answer.get("success") and answer["data"].get("clientNonce") != request["clientNonce"]:
        raise SystemExit("answer does not echo our clientNonce: refusing it")
    return status, answer


def main():
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    url, project_id, key_b64, license_key, hwid = sys.argv[1:]
    key = base64.b64decode(key_b64)
    status, answer = validate(url, project_id, key, license_key, hwid)
    print(status, json.dumps(answer))
    if not answer.get("success"):
        raise SystemExit(1)
    data = answer["data"]
    # The next call presents the rotated nonce and keeps the session alive.
    status, answer = validate(url, project_id, key, license_key, hwid, data["nonce"], data["sessionId"])
    print(status, json.dumps(answer))
    raise SystemExit(0 if answer.get("success") else 1)


if __name__ == "__main__":
    main()
