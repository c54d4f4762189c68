"""Schemathesis hooks for scripts/admin-fuzz.sh: every request to the admin
API carries the dev admin client's DPoP-bound token and a fresh DPoP proof
(RFC 9449) for its method and URL, so the fuzzer reaches the handlers, not
only the token check."""

import base64
import hashlib
import json
import os
import time
import uuid

import requests
import schemathesis
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

DATA = os.environ["FUZZ_DATA_DIR"]
TOKEN_URL = os.environ["FUZZ_TOKEN_URL"]
ADMIN_URL = os.environ["FUZZ_ADMIN_URL"]
KEY = ec.generate_private_key(ec.SECP256R1())


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwk() -> dict:
    n = KEY.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256", "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}


def proof(htm: str, htu: str, token: str | None) -> str:
    header = {"alg": "ES256", "typ": "dpop+jwt", "jwk": jwk()}
    claims = {"jti": uuid.uuid4().hex, "htm": htm, "htu": htu, "iat": int(time.time())}
    if token:
        claims["ath"] = b64(hashlib.sha256(token.encode()).digest())
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return signing_input + "." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


@schemathesis.auth()
class DevAdmin:
    def get(self, case, context):
        res = requests.post(
            TOKEN_URL,
            data={"grant_type": "client_credentials", "client_id": "dev-admin",
                  "scope": "admin:read admin:clients admin:directories admin:settings admin:keys admin:grants admin:audit"},
            headers={"DPoP": proof("POST", TOKEN_URL, None)},
            cert=(f"{DATA}/dev-admin/client.pem", f"{DATA}/dev-admin/client-key.pem"),
            verify=f"{DATA}/dev-ca.pem",
            timeout=10,
        )
        res.raise_for_status()
        return res.json()["access_token"]

    def set(self, case, data, context):
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"DPoP {data}"
        case.headers["DPoP"] = proof(case.method.upper(), ADMIN_URL + case.formatted_path, data)
