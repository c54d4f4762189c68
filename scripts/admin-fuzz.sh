#!/usr/bin/env bash
# Fuzzes the admin API from its own OpenAPI document with schemathesis
# (PyPI): a dev-mode server on SQLite in a temp dir, the dev admin client's
# DPoP-bound token on every request (scripts/admin_fuzz_hooks.py), and one
# check: no answer is a 5xx. ADMIN_FUZZ_SECS bounds the run (default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${ADMIN_FUZZ_SECS:-60}
bin=target/debug/strongroom
[ -x "$bin" ] || cargo build -q -p strongroom --bin strongroom
tmp=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
main=$(free_port); mtls=$(free_port); admin=$(free_port)
# [tokens] is file-owned here: a fuzzed change of the token rules (a DPoP
# nonce demanded, a one-second lifetime) would lock the fuzzer itself out.
printf 'dev_mode = true\n[admin]\nfile_owned = ["tokens"]\n[log]\nlevel = "warn"\n' > "$tmp/strongroom.toml"
export STRONGROOM_CONFIG="$tmp/strongroom.toml" STRONGROOM_DATA_DIR="$tmp/data" \
  STRONGROOM_ISSUER="https://localhost:$main" STRONGROOM_LISTEN="127.0.0.1:$main" \
  STRONGROOM_MTLS_LISTEN="127.0.0.1:$mtls" STRONGROOM_ADMIN_LISTEN="127.0.0.1:$admin" \
  STRONGROOM_DATABASE_URL="sqlite://$tmp/data/strongroom.db"
"$bin" serve > "$tmp/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$admin/healthz" >/dev/null && break
  kill -0 $pid 2>/dev/null || { cat "$tmp/serve.log"; exit 1; }
  sleep 0.1
done
"$bin" admin openapi > "$tmp/openapi.json"
export FUZZ_DATA_DIR="$tmp/data" FUZZ_TOKEN_URL="https://localhost:$mtls/token" \
  FUZZ_ADMIN_URL="http://127.0.0.1:$admin" SCHEMATHESIS_HOOKS=admin_fuzz_hooks
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}"
status=0
# One worker: schemathesis' workers are threads, and CPython 3.11's ast
# module keeps one recursion counter per interpreter, so two threads in
# hypothesis' ast.parse (it describes lambdas in strategy reprs) can fail
# with "SystemError: AST constructor recursion depth mismatch" (CPython
# gh-106905), an error of the fuzzer and not of the server.
st run "$tmp/openapi.json" --url "http://127.0.0.1:$admin" --checks not_a_server_error \
  --max-time "$secs" --workers 1 --suppress-health-check all --warnings off \
  --request-timeout 10 || status=$?
# The fuzzer must have got past the token check: the audit log (every
# call, refused ones included) shows what the server answered.
"$bin" admin audit tail --json --lines 100000 > "$tmp/audit.json"
python3 - "$tmp/audit.json" <<'PY' || status=1
import collections, json, sys
lines = json.load(open(sys.argv[1]))
by = collections.Counter(l["status"] for l in lines)
print("admin-fuzz: answers by status (audit log):", dict(sorted(by.items())))
ok = sum(n for s, n in by.items() if 200 <= s < 300)
# Schemathesis also sends calls without or with broken credentials on
# purpose; most must still reach the handlers.
if any(s >= 500 for s in by) or ok == 0 or by.get(401, 0) > 0.75 * len(lines):
    sys.exit("admin-fuzz: a 5xx, no success, or mostly refused tokens")
PY
if grep -q '"level":"ERROR"\|panicked' "$tmp/serve.log"; then
  echo "admin-fuzz: the server logged errors:"; grep '"level":"ERROR"\|panicked' "$tmp/serve.log" | head -20
  status=1
fi
exit $status
