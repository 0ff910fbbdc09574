#!/usr/bin/env bash
# Instructions the server spends per signed validation, counted by callgrind: unlike a timer,
# the count is the same run after run, however busy the machine is (issue 16's profile).
#
#   cargo build --profile profiling && examples/profile_validate.sh
#   N=5000 examples/profile_validate.sh        # more requests per phase
#   BIN=target/release/keyward examples/profile_validate.sh   # counts only (stripped: no names)
#   MODE=syscalls examples/profile_validate.sh   # system calls and context switches instead
#
# The release server runs under valgrind with instrumentation off while it starts and is set
# up, then each phase is counted alone: instrumentation on, N requests over one keep-alive
# connection rotating over many licenses (each with its own machine, nonce and session), a
# dump. Rate limits and abuse detection stay on (the per-IP limit is raised so that one
# client may send everything). Prints instructions per request and the top of each profile;
# the raw profiles stay in target/callgrind/ for callgrind_annotate or kcachegrind.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-2000}
MODE=${MODE:-callgrind}
LICENSES=${LICENSES:-200}
BIN=${BIN:-target/profiling/keyward}
OUT=${OUT:-target/callgrind}
TOOLS="valgrind callgrind_control callgrind_annotate python3"
[ "$MODE" = syscalls ] && TOOLS="strace python3"
for tool in $TOOLS; do
    command -v "$tool" >/dev/null || { echo "$tool is required" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "$BIN is missing: run cargo build --profile profiling first" >&2; exit 1; }

DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out.*
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$DIR"' EXIT

"$BIN" init --data-dir "$DIR" >/dev/null
PRODUCT=$("$BIN" product create --data-dir "$DIR" --name "Profile" --slug profile --max-activations 1 | head -1)
SELLER=$("$BIN" apikey create --data-dir "$DIR" --name seller --scope CREATE_LICENSE)
APP=$("$BIN" apikey create --data-dir "$DIR" --name app --scope VALIDATE_ONLY)

WRAP=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$OUT/callgrind.out.%p")
[ "$MODE" = syscalls ] && WRAP=()
"${WRAP[@]}" "$BIN" serve --data-dir "$DIR" --bind "127.0.0.1:$PORT" --rate-limit-per-ip 1000000000 \
    --rate-limit-per-license-key 1000000000 >"$OUT/server.log" 2>&1 &
SERVER=$!

python3 - "$PORT" "$PRODUCT" "$SELLER" "$APP" "$N" "$LICENSES" "$SERVER" "$OUT/server.log" "$MODE" "$OUT" <<'PY'
import http.client, json, os, re, signal, subprocess, sys, time

port, product, seller, app, n, licenses, server, server_log, mode, out = sys.argv[1:]
n, licenses = int(n), int(licenses)

def connect():
    for _ in range(600):
        try:
            c = http.client.HTTPConnection("127.0.0.1", int(port), timeout=300)
            c.request("GET", "/api/health")
            c.getresponse().read()
            return c
        except OSError:
            time.sleep(0.2)
    sys.exit("the server under valgrind did not answer")

conn = connect()

def call(method, path, body=None, headers=None, ok=None):
    global conn
    payload = None if body is None else json.dumps(body)
    headers = {"content-type": "application/json", **(headers or {})}
    try:
        conn.request(method, path, payload, headers)
        r = conn.getresponse()
    except (http.client.RemoteDisconnected, ConnectionError):
        # The server closes a connection idle for 5 s; a dump on a busy machine takes longer.
        conn = connect()
        conn.request(method, path, payload, headers)
        r = conn.getresponse()
    data = r.read()
    if r.status >= 300 or (ok is not None and ok not in data):
        sys.exit(f"{method} {path} → {r.status} {data[:300]!r}")
    return data

def control(*args):
    subprocess.run(["callgrind_control", *args, server], check=True, stdout=subprocess.DEVNULL)

def switches():
    """Context switches of all the server's threads, voluntary and not."""
    total = 0
    for tid in os.listdir(f"/proc/{server}/task"):
        for line in open(f"/proc/{server}/task/{tid}/status"):
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[-1])
    return total

# Vendor face: licenses, each activated on its own machine.
vendor = []
for i in range(licenses):
    lic = json.loads(call("POST", "/api/v1/license/create", {"productId": product, "customerEmail": f"buyer{i}@example.com"},
                           {"X-API-Key": seller}))
    key, machine = lic["license"]["key"], f"profile-machine-{i:05}"
    call("POST", "/api/v1/license/activate", {"licenseKey": key, "machineId": machine}, {"X-API-Key": app})
    vendor.append((key, machine))

# Key/HWID face: an operator (the setup URL the server printed at its start), a project, keys,
# and a session per key.
setup_token = re.search(r"setup\?token=([A-Za-z0-9_-]+)", open(server_log).read()).group(1)
call("POST", "/api/auth/register", {"email": "profile@example.com", "password": "a long passphrase",
                                     "setupToken": setup_token})
token = json.loads(call("POST", "/api/auth/login", {"email": "profile@example.com",
                                                     "password": "a long passphrase"}))["data"]["token"]
auth = {"Authorization": f"Bearer {token}"}
project = json.loads(call("POST", "/api/projects", {"name": "Profile game"}, auth))["data"]["project"]
kv = []
while len(kv) < licenses:
    made = json.loads(call("POST", "/api/keys", {"plan": "LIFETIME", "count": min(50, licenses - len(kv)),
                                                 "projectId": project["id"], "maxSessions": 1}, auth))
    kv += [k["key"] for k in made["data"]["keys"]]
sessions = []
for i, key in enumerate(kv):
    opened = json.loads(call("POST", "/api/validate", {"key": key, "hwid": f"profile-hwid-{i:05}",
                                                       "secret": project["secret"]}))
    sessions.append(opened["data"]["sessionId"])

def vendor_validate(i):
    key, machine = vendor[i % len(vendor)]
    call("POST", "/api/v1/license/validate",
         {"licenseKey": key, "machineId": machine, "nonce": f"profile-nonce-{i:08}"},
         {"X-API-Key": app}, ok=b'"valid":true')

def kv_validate(i):
    k = i % len(kv)
    call("POST", "/api/validate", {"key": kv[k], "hwid": f"profile-hwid-{k:05}", "secret": project["secret"],
                                   "sessionId": sessions[k], "clientNonce": f"c-{i}"}, ok=b'"valid":true')

def health(i):
    call("GET", "/api/health", ok=b'"status":"ok"')

for name, one in [("health", health), ("validate", vendor_validate), ("kv-validate", kv_validate)]:
    for i in range(200):  # warm up, uncounted
        one(i)
    if mode == "callgrind":
        control("--instr=on")
        control("--zero")
        for i in range(n):
            one(i)
        control(f"--dump={name}")
        control("--instr=off")
    else:
        # Context switches untraced (ptrace stops would add their own), then system calls.
        before = switches()
        for i in range(n):
            one(i)
        print(f"{name}: {(switches() - before) / n:.2f} context switches per request", flush=True)
        tids = ",".join(os.listdir(f"/proc/{server}/task"))
        tracer = subprocess.Popen(["strace", "-c", "-f", "-o", f"{out}/strace.{name}.txt", "-p", tids],
                                  stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # strace attaches to every thread
        for i in range(n):
            one(i)
        tracer.send_signal(signal.SIGINT)
        tracer.wait()
    print(f"{name}: {n} requests counted", flush=True)
PY

kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
if [ "$MODE" = syscalls ]; then
    for phase in health validate kv-validate; do
        echo "== $phase: system calls per request (strace -c, all threads)"
        awk -v n="$N" '$1 ~ /^[0-9.]+$/ && NF >= 5 { calls = $4; name = $NF; if (name != "total") printf "  %-16s %6.2f\n", name, calls / n }' \
            "$OUT/strace.$phase.txt" | sort -k2 -nr | head -12
    done
    exit 0
fi
for phase in health validate kv-validate; do
    file=$(grep -l "^desc: Trigger: dump $phase\$" "$OUT"/callgrind.out.* | head -1)
    [ -n "$file" ] || { echo "no profile was dumped for $phase" >&2; exit 1; }
    total=$(sed -n 's/^summary: //p' "$file")
    echo "== $phase: $((total / N)) instructions per request ($file)"
    callgrind_annotate --inclusive=yes "$file" 2>/dev/null | sed -n '/file:function/,$p' | head -40 || true
done
