#!/usr/bin/env python3
# The Python example of the key/HWID contract (spec/keyvault-api.md, "Code Examples"), copied
# verbatim; only its two usage statements at the end are replaced by a harness that takes the
# endpoint, the project secret and the key from the command line:
#   python3 tests/contract_example.py http://127.0.0.1:3002/api/validate kv_... XXXX-XXXX-XXXX-XXXX
# Run by tests/keys_and_validation.rs; needs `requests`.
import requests
import hashlib
import subprocess

API_URL = "https://your-domain.vercel.app/api/validate"

def get_hwid():
    """Get a hardware fingerprint (motherboard UUID + disk serial)."""
    try:
        uuid = subprocess.check_output(
            "wmic csproduct get uuid", shell=True
        ).decode().split("\n")[1].strip()
        disk = subprocess.check_output(
            "wmic diskdrive get serialnumber", shell=True
        ).decode().split("\n")[1].strip()
        raw = f"{uuid}:{disk}"
        return hashlib.sha256(raw.encode()).hexdigest()
    except Exception:
        return hashlib.sha256(b"fallback-hwid").hexdigest()

PROJECT_SECRET = "kv_your_project_secret"  # from dashboard

def validate_license(key: str) -> dict:
    """Validate a license key against the KeyVault API."""
    response = requests.post(API_URL, json={
        "key": key,
        "hwid": get_hwid(),
        "secret": PROJECT_SECRET,  # scopes to your project
    }, timeout=10)

    data = response.json()

    if data.get("success"):
        print(f"✅ License valid! Plan: {data['data']['plan']}")
        print(f"   Expires: {data['data']['expiresAt'] or 'Never'}")
        print(f"   Note: {data['data'].get('note', 'N/A')}")
        print(f"   Server Nonce: {data['data']['nonce']}")
        return data["data"]
    else:
        print(f"❌ Validation failed: {data.get('error')}")
        return None

# Usage
if __name__ == "__main__":
    # Harness (instead of the contract's usage lines): the module globals the function reads
    # come from the command line, then the function runs unchanged.
    import sys

    API_URL, PROJECT_SECRET = sys.argv[1], sys.argv[2]
    result = validate_license(sys.argv[3])
    if result:
        # Continue application execution with server variable
        server_var = result.get("serverVar")
        note = result.get("note")
    sys.exit(0 if result else 1)
