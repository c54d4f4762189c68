//! Pushed authorization requests against the real store: token-store on a
//! temporary SQLite file. One test binary for the crate.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth_core::authorization::DpopProof;
use oauth_core::client::{AuthMethod, AuthenticatedClient, Client};
use oauth_core::jwks_resolver::{FetchError, JwksFetcher, JwksResolver};
use oauth_core::policy::{Policy, Profile};
use oauth_core::secret::hash_secret;
use oauth_core::storage::PushedRequestRepository;
use par::{REQUEST_URI_PREFIX, complete, push, resolve};
use serde_json::{Value, json};
use tempfile::TempDir;
use token_store::Store;

const NOW: i64 = 1_700_000_000;
const ISSUER: &str = "https://op.example";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const JKT_A: &str = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs";
const JKT_B: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Clients' keys are inline, so nothing is ever fetched.
struct NoFetch;

impl JwksFetcher for NoFetch {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, FetchError> {
        Err(FetchError::Status(404))
    }
}

struct Env {
    store: Store,
    jwks: JwksResolver<NoFetch>,
    keys: oauth_core::keys::Keys,
    _dir: TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("par.db").display());
    let store = Store::connect(&url, 2).unwrap();
    store.migrate().await.unwrap();
    // The provider's keys, as a first start makes them.
    let kek = oauth_core::keys::KeyEncryptionKey::from_bytes([3u8; 32]);
    let records = oauth_core::keys::missing_keys(&[], &kek, NOW).unwrap();
    let keys =
        oauth_core::keys::Keys::new(oauth_core::keys::KeySet::build(records, &kek, NOW).unwrap());
    Env {
        store,
        jwks: JwksResolver::new(NoFetch),
        keys,
        _dir: dir,
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A client's P-256 signing key.
struct ClientKey {
    pair: EcdsaKeyPair,
    jwk: Value,
}

impl ClientKey {
    fn new(kid: &str) -> ClientKey {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
        let p = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                         "x": b64(&p[1..33]), "y": b64(&p[33..])});
        ClientKey { pair, jwk }
    }

    fn request_object(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "oauth-authz-req+jwt", "kid": self.jwk["kid"]});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

fn client(id: &str, key: &ClientKey) -> AuthenticatedClient {
    let meta = json!({
        "client_id": id,
        "redirect_uris": ["https://tpp.example/cb?dummy1=lorem&dummy2=ipsum"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.jwk.clone()]},
        "scope": "openid accounts",
    });
    AuthenticatedClient {
        client: Client::new(serde_json::from_value(meta).unwrap(), None).unwrap(),
        method: AuthMethod::PrivateKeyJwt,
    }
}

fn policy() -> Policy {
    Policy::new(ISSUER, Profile::Fapi2)
}

fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn params() -> Vec<(String, String)> {
    form(&[
        ("client_id", "tpp-1"),
        ("response_type", "code"),
        (
            "redirect_uri",
            "https://tpp.example/cb?dummy1=lorem&dummy2=ipsum",
        ),
        ("scope", "openid accounts"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ])
}

fn proof(jkt: &str) -> DpopProof {
    DpopProof {
        jkt: jkt.into(),
        jti: "proof-1".into(),
        iat: NOW,
    }
}

fn code(r: Result<impl std::fmt::Debug, oauth_core::error::OAuthError>) -> &'static str {
    r.unwrap_err().code.as_str()
}

#[tokio::test]
async fn push_resolve_twice_complete_once() {
    let e = env().await;
    let key = ClientKey::new("k1");
    let tpp1 = client("tpp-1", &key);
    let p = policy();
    let resp = push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &params(), None, NOW)
        .await
        .unwrap();
    assert_eq!(resp.expires_in, 60);
    assert_eq!(
        serde_json::to_value(&resp).unwrap()["expires_in"],
        json!(60)
    );
    let random = resp.request_uri.strip_prefix(REQUEST_URI_PREFIX).unwrap();
    assert!(
        random.len() >= 43,
        "at least 256 bits of base64url: {random}"
    );
    assert!(
        random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    // Stored under the hash only.
    assert!(
        e.store
            .get_pushed_request(&hash_secret(&resp.request_uri), NOW)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        e.store
            .get_pushed_request(&resp.request_uri, NOW)
            .await
            .unwrap()
            .is_none()
    );

    // The authorization endpoint may be visited twice before login completes.
    for t in [NOW + 1, NOW + 30] {
        let r = resolve(&e.store, "tpp-1", &resp.request_uri, t)
            .await
            .unwrap();
        assert_eq!(r.client_id, "tpp-1");
        assert_eq!(r.state.as_deref(), Some("st-1"));
        assert_eq!(r.nonce.as_deref(), Some("n-1"));
        assert_eq!(r.scope, ["openid", "accounts"]);
        assert_eq!(r.code_challenge, CHALLENGE);
        assert_eq!(
            r.redirect_uri,
            "https://tpp.example/cb?dummy1=lorem&dummy2=ipsum"
        );
    }
    complete(&e.store, &hash_secret(&resp.request_uri), NOW + 40)
        .await
        .unwrap();
    assert_eq!(
        code(complete(&e.store, &hash_secret(&resp.request_uri), NOW + 41).await),
        "invalid_request_uri"
    );
    assert_eq!(
        code(resolve(&e.store, "tpp-1", &resp.request_uri, NOW + 41).await),
        "invalid_request_uri"
    );

    // Every push gets its own URI.
    let again = push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &params(), None, NOW)
        .await
        .unwrap();
    assert_ne!(again.request_uri, resp.request_uri);
}

#[tokio::test]
async fn expired_unknown_and_foreign_request_uris() {
    let e = env().await;
    let key = ClientKey::new("k1");
    let tpp1 = client("tpp-1", &key);
    let resp = push(
        &e.store,
        &e.jwks,
        &e.keys,
        &policy(),
        &tpp1,
        &params(),
        None,
        NOW,
    )
    .await
    .unwrap();
    // Another client's client_id with tpp-1's request_uri.
    let e2 = resolve(&e.store, "tpp-2", &resp.request_uri, NOW + 1)
        .await
        .unwrap_err();
    assert_eq!(e2.code.as_str(), "invalid_request_uri");
    // Unknown.
    assert_eq!(
        code(resolve(&e.store, "tpp-1", &format!("{REQUEST_URI_PREFIX}nope"), NOW).await),
        "invalid_request_uri"
    );
    assert_eq!(
        code(complete(&e.store, &hash_secret("urn:x"), NOW).await),
        "invalid_request_uri"
    );
    // Expired after expires_in.
    assert_eq!(
        code(resolve(&e.store, "tpp-1", &resp.request_uri, NOW + 60).await),
        "invalid_request_uri"
    );
    assert_eq!(
        code(complete(&e.store, &hash_secret(&resp.request_uri), NOW + 61).await),
        "invalid_request_uri"
    );
    // Still fine just before.
    assert!(
        resolve(&e.store, "tpp-1", &resp.request_uri, NOW + 59)
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn refused_pushes() {
    let e = env().await;
    let key = ClientKey::new("k1");
    let tpp1 = client("tpp-1", &key);
    let p = policy();
    let try_push = |f: Vec<(String, String)>, dpop: Option<DpopProof>| {
        let (e, tpp1, p) = (&e, &tpp1, &p);
        async move { push(&e.store, &e.jwks, &e.keys, p, tpp1, &f, dpop.as_ref(), NOW).await }
    };

    // request_uri sent to PAR (RFC 9126 §2.1).
    let mut f = params();
    f.push(("request_uri".into(), format!("{REQUEST_URI_PREFIX}abc")));
    assert_eq!(code(try_push(f, None).await), "invalid_request");
    // client_id of another client.
    let mut f: Vec<_> = params()
        .into_iter()
        .filter(|(k, _)| k != "client_id")
        .collect();
    f.push(("client_id".into(), "tpp-2".into()));
    assert_eq!(code(try_push(f, None).await), "invalid_request");
    // Duplicate parameter.
    let mut f = params();
    f.push(("scope".into(), "openid".into()));
    assert_eq!(code(try_push(f, None).await), "invalid_request");
    // No PKCE.
    let f: Vec<_> = params()
        .into_iter()
        .filter(|(k, _)| k != "code_challenge")
        .collect();
    assert_eq!(code(try_push(f, None).await), "invalid_request");
    // Plain PKCE.
    let mut f: Vec<_> = params()
        .into_iter()
        .filter(|(k, _)| k != "code_challenge_method")
        .collect();
    f.push(("code_challenge_method".into(), "plain".into()));
    assert_eq!(code(try_push(f, None).await), "invalid_request");
    // Hybrid response type.
    let mut f: Vec<_> = params()
        .into_iter()
        .filter(|(k, _)| k != "response_type")
        .collect();
    f.push(("response_type".into(), "code id_token".into()));
    assert_eq!(code(try_push(f, None).await), "unsupported_response_type");
    // dpop_jkt that is not the key of the DPoP proof.
    let mut f = params();
    f.push(("dpop_jkt".into(), JKT_A.into()));
    assert_eq!(
        code(try_push(f.clone(), Some(proof(JKT_B))).await),
        "invalid_dpop_proof"
    );
    // Matching: accepted, and the code will be bound to it.
    let resp = try_push(f, Some(proof(JKT_A))).await.unwrap();
    let r = resolve(&e.store, "tpp-1", &resp.request_uri, NOW)
        .await
        .unwrap();
    assert_eq!(r.dpop_jkt.as_deref(), Some(JKT_A));
    // A proof alone binds too.
    let resp = try_push(params(), Some(proof(JKT_B))).await.unwrap();
    let r = resolve(&e.store, "tpp-1", &resp.request_uri, NOW)
        .await
        .unwrap();
    assert_eq!(r.dpop_jkt.as_deref(), Some(JKT_B));
}

fn ro_claims(jti: &str) -> Value {
    json!({
        "iss": "tpp-1", "aud": ISSUER, "client_id": "tpp-1",
        "exp": NOW + 300, "nbf": NOW, "iat": NOW, "jti": jti,
        "response_type": "code",
        "redirect_uri": "https://tpp.example/cb?dummy1=lorem&dummy2=ipsum",
        "scope": "accounts", "state": "inside",
        "code_challenge": CHALLENGE, "code_challenge_method": "S256",
    })
}

#[tokio::test]
async fn signed_request_objects_when_required() {
    let e = env().await;
    let key = ClientKey::new("k1");
    let tpp1 = client("tpp-1", &key);
    let p = Policy::new(ISSUER, Profile::Fapi2MessageSigning);
    assert!(p.require_signed_request_object);

    // Plain parameters: refused.
    let err = push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &params(), None, NOW)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_request");
    assert_eq!(
        err.description.as_deref(),
        Some("signed request object required")
    );

    // Signed: accepted, only the object's claims count.
    let ro = key.request_object(&ro_claims("jti-1"));
    let f = form(&[
        ("client_id", "tpp-1"),
        ("request", &ro),
        ("state", "outside"),
    ]);
    let resp = push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &f, None, NOW)
        .await
        .unwrap();
    let r = resolve(&e.store, "tpp-1", &resp.request_uri, NOW)
        .await
        .unwrap();
    assert_eq!(r.state.as_deref(), Some("inside"));
    assert_eq!(r.scope, ["accounts"]);

    // The same object again: its jti is spent.
    let err = push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &f, None, NOW)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_request_object");

    // request_uri inside the object.
    let mut c = ro_claims("jti-2");
    c["request_uri"] = json!(format!("{REQUEST_URI_PREFIX}x"));
    let f = form(&[("request", &key.request_object(&c))]);
    assert_eq!(
        code(push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &f, None, NOW).await),
        "invalid_request_object"
    );
    // Expired object.
    let mut c = ro_claims("jti-3");
    c["exp"] = json!(NOW - 60);
    c["nbf"] = json!(NOW - 120);
    let f = form(&[("request", &key.request_object(&c))]);
    assert_eq!(
        code(push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &f, None, NOW).await),
        "invalid_request_object"
    );
    // Signed by another client's key.
    let other = ClientKey::new("k1");
    let f = form(&[("request", &other.request_object(&ro_claims("jti-4")))]);
    assert_eq!(
        code(push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &f, None, NOW).await),
        "invalid_request_object"
    );
    // request_uri form parameter alongside a valid object.
    let f = form(&[
        ("request", &key.request_object(&ro_claims("jti-5"))),
        ("request_uri", "urn:ietf:params:oauth:request_uri:x"),
    ]);
    assert_eq!(
        code(push(&e.store, &e.jwks, &e.keys, &p, &tpp1, &f, None, NOW).await),
        "invalid_request"
    );
    // Under plain FAPI 2 a signed object is accepted too.
    let f = form(&[("request", &key.request_object(&ro_claims("jti-6")))]);
    assert!(
        push(&e.store, &e.jwks, &e.keys, &policy(), &tpp1, &f, None, NOW)
            .await
            .is_ok()
    );
}
