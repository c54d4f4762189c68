#!/usr/bin/env bash
# Provisions a Strongroom deployment for the OpenID Foundation conformance
# suite (docs/conformance.md): generates two private_key_jwt + DPoP clients
# and two tls_client_auth + mTLS clients (ES256 keys, client certificates
# from a fresh CA), and for the FAPI-CIBA plan one pair per client_auth_type
# (private_key_jwt, mtls) and ciba_mode (poll, ping), with MTLS-bound tokens
# and, for ping, the suite's ciba-notification-endpoint, and for the FAPI 1.0
# Advanced plan one pair per fapi_profile (plain_fapi, openbanking_uk) and
# client_auth_type, each with a certificate (MTLS-bound tokens) and its own
# fapi_profile; then writes into OUT (default conformance/oidf/generated):
#   <plan>-<variant>.json     one plan configuration per plan/variant, with
#                             the clients' private JWKs and certificates,
#                             to paste/upload into the suite
#   plans.json                which plan name and variant string each file is for
#   strongroom-clients.toml   the matching [[clients]] for strongroom.toml
#   client-ca.pem             the CA of the suite's client certificates
#                             (add it to [tls] client_ca)
#
#   conformance/oidf/provision.sh --issuer https://as.bank.example \
#       [--mtls-base https://mtls.as.bank.example] [--alias bank-fapi2] [--out DIR]
#
# The files hold private keys for test clients: keep them out of version
# control (generated/ is ignored) and out of production configurations.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=conformance/oidf/generated
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --out) out=$2; shift 2 ;;
    --issuer|--mtls-base|--alias) args+=("$1" "$2"); shift 2 ;;
    *) echo "usage: $0 [--issuer URL] [--mtls-base URL] [--alias NAME] [--out DIR]" >&2; exit 2 ;;
  esac
done
cargo build -q -p conformance
target/debug/conformance kit --out "$out" "${args[@]}"
echo "next: append $out/strongroom-clients.toml to your strongroom.toml, add"
echo "      $out/client-ca.pem to [tls] client_ca, restart, then load the JSONs into the suite"
