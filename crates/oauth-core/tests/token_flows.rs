//! Token endpoint, introspection, revocation and userinfo against the real
//! store (token_store::Store on a temporary SQLite file).
//!
//! These live here rather than beside the code because token-store depends
//! on oauth-core: inside the crate's own unit tests `token_store::Store`
//! implements the library's traits, not the test build's.

use std::sync::OnceLock;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth_core::authorization::{Authentication, AuthorizationRequest, DpopProof, GrantDetails};
use oauth_core::client::{AuthMethod, AuthenticatedClient, Client};
use oauth_core::error::OAuthError;
use oauth_core::grant::{Binding, TokenRequest, exchange, issue_code};
use oauth_core::introspection::introspect;
use oauth_core::keys::{
    KeyEncryptionKey, KeySet, Keys, ProviderAlg, VerifyOptions, generate_key, peek_header,
};
use oauth_core::policy::{AccessTokenFormat, Policy, Profile};
use oauth_core::revocation::revoke;
use oauth_core::storage::{GrantRepository, KeyRecord};
use oauth_core::token::TokenResponse;
use oauth_core::userinfo::{AuthScheme, ResourceError, userinfo};
use serde_json::{Value, json};
use token_store::Store;

const ISSUER: &str = "https://op.example";
const T0: i64 = 1_700_000_000;
const REDIRECT: &str = "https://tpp.example/cb";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const CERT_A: &str = "x5t-of-certificate-a";
const CERT_B: &str = "x5t-of-certificate-b";

// ------------------------------------------------------------------ fixtures

struct Env {
    store: Store,
    keys: Keys,
    policy: Policy,
    _dir: tempfile::TempDir,
}

fn key_material() -> &'static (KeyEncryptionKey, Vec<KeyRecord>) {
    static K: OnceLock<(KeyEncryptionKey, Vec<KeyRecord>)> = OnceLock::new();
    K.get_or_init(|| {
        let kek = KeyEncryptionKey::generate();
        let records = vec![
            generate_key(ProviderAlg::PS256, &kek, T0 - 100).unwrap(),
            generate_key(ProviderAlg::ES256, &kek, T0 - 100).unwrap(),
        ];
        (kek, records)
    })
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("sr.db").display());
    let store = Store::connect(&url, 4).unwrap();
    store.migrate().await.unwrap();
    let (kek, records) = key_material();
    let keys = Keys::new(KeySet::build(records, kek, T0).unwrap());
    Env {
        store,
        keys,
        policy: Policy::new(ISSUER, Profile::Fapi2),
        _dir: dir,
    }
}

fn client(id: &str, extra: Value) -> AuthenticatedClient {
    let mut m = json!({
        "client_id": id,
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": []},
        "scope": "openid profile email accounts payments",
    });
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    let client = Client::new(serde_json::from_value(m).unwrap(), None).unwrap();
    let method = client.auth_method();
    AuthenticatedClient { client, method }
}

/// A private_key_jwt client whose tokens are DPoP-bound.
fn dpop_client() -> AuthenticatedClient {
    client("tpp-dpop", json!({}))
}

/// A tls_client_auth client with certificate-bound tokens.
fn mtls_client() -> AuthenticatedClient {
    let c = client(
        "tpp-mtls",
        json!({
            "token_endpoint_auth_method": "tls_client_auth",
            "tls_client_auth_subject_dn": "CN=tpp-mtls,O=TPP,C=GB",
            "tls_client_certificate_bound_access_tokens": true,
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
        }),
    );
    assert_eq!(c.method, AuthMethod::TlsClientAuth);
    c
}

fn proof(jkt: &str) -> Binding {
    Binding {
        dpop: Some(DpopProof {
            jkt: jkt.into(),
            jti: oauth_core::secret::random_token(8),
            iat: T0,
        }),
        x5t_s256: None,
    }
}

fn cert(x5t: &str) -> Binding {
    Binding {
        dpop: None,
        x5t_s256: Some(x5t.into()),
    }
}

fn auth_request(client_id: &str, scope: &str) -> AuthorizationRequest {
    AuthorizationRequest {
        client_id: client_id.into(),
        response_type: "code".into(),
        redirect_uri: REDIRECT.into(),
        scope: scope.split(' ').map(str::to_owned).collect(),
        state: Some("st".into()),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: CHALLENGE.into(),
        code_challenge_method: "S256".into(),
        response_mode: None,
        claims: Some(json!({
            "id_token": {
                "openbanking_intent_id": {"essential": true, "value": "intent-1"},
                "acr": {"essential": true, "value": "urn:openbanking:psd2:sca"}
            },
            "userinfo": {"openbanking_intent_id": null}
        })),
        acr_values: vec![],
        max_age: None,
        prompt: vec![],
        authorization_details: None,
        dpop_jkt: None,
        login_hint: None,
        ui_locales: None,
    }
}

fn authentication() -> Authentication {
    Authentication {
        sub: "user-1".into(),
        auth_time: T0 - 20,
        acr: Some("urn:openbanking:psd2:sca".into()),
        amr: vec!["pwd".into(), "otp".into()],
    }
}

fn grant_details() -> GrantDetails {
    serde_json::from_value(json!({
        "user_claims": {
            "name": "Ada Lovelace", "email": "ada@example.com", "email_verified": true
        },
        "accounts": ["acc-1", "acc-2"],
    }))
    .unwrap()
}

async fn code_for(e: &Env, c: &AuthenticatedClient, req: &AuthorizationRequest) -> String {
    issue_code(
        &e.store,
        &e.keys,
        &e.policy,
        &c.client,
        req,
        &authentication(),
        grant_details(),
        Some("intent-1".into()),
        None,
        None,
        T0,
    )
    .await
    .unwrap()
    .expect("no interaction to end")
    .code
}

fn form(pairs: &[(&str, &str)]) -> TokenRequest {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
    TokenRequest::from_form(&pairs).unwrap()
}

fn code_form(code: &str) -> TokenRequest {
    form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ])
}

fn refresh_form(rt: &str, scope: Option<&str>) -> TokenRequest {
    let mut p = vec![("grant_type", "refresh_token"), ("refresh_token", rt)];
    if let Some(s) = scope {
        p.push(("scope", s));
    }
    form(&p)
}

async fn redeem(
    e: &Env,
    c: &AuthenticatedClient,
    req: TokenRequest,
    b: Binding,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    exchange(&e.store, &e.keys, &e.policy, c, req, b, now).await
}

/// A full code flow for the DPoP client, bound to `jkt`.
async fn dpop_tokens(e: &Env, jkt: &str) -> TokenResponse {
    let c = dpop_client();
    let code = code_for(e, &c, &auth_request("tpp-dpop", "openid accounts")).await;
    redeem(e, &c, code_form(&code), proof(jkt), T0 + 1)
        .await
        .unwrap()
}

/// A full code flow for the mTLS client over certificate A.
async fn mtls_tokens(e: &Env) -> TokenResponse {
    let c = mtls_client();
    let code = code_for(e, &c, &auth_request("tpp-mtls", "openid accounts")).await;
    redeem(e, &c, code_form(&code), cert(CERT_A), T0 + 1)
        .await
        .unwrap()
}

async fn inspect(e: &Env, token: &str, now: i64) -> Value {
    introspect(&e.store, &e.policy, &dpop_client(), token, None, now)
        .await
        .unwrap()
}

/// `err` is `invalid_grant` and its description says `says`.
fn assert_invalid_grant(err: &OAuthError, says: &str) {
    assert_eq!(err.code.as_str(), "invalid_grant");
    let description = err.description.as_deref().unwrap_or_default();
    assert!(description.contains(says), "{err:?}");
}

fn code_of(r: Result<TokenResponse, OAuthError>) -> &'static str {
    r.expect_err("must fail").code.as_str()
}

fn b64_left_half_sha256(s: &str) -> String {
    let d = digest::digest(&digest::SHA256, s.as_bytes());
    URL_SAFE_NO_PAD.encode(&d.as_ref()[..16])
}

// -------------------------------------------------- authorization code grant

#[tokio::test]
async fn code_flow_with_pkce_and_dpop_binding() {
    let e = env().await;
    let t = dpop_tokens(&e, "jkt-1").await;
    assert_eq!(t.token_type, "DPoP");
    assert_eq!(t.expires_in, 600);
    assert_eq!(t.scope, "openid accounts");
    assert!(t.access_token.len() >= 43);
    assert!(t.refresh_token.is_some());
    assert!(t.id_token.is_some());
    assert_eq!(t.authorization_details, None);

    let body = serde_json::to_value(&t).unwrap();
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "id_token",
            "refresh_token",
            "scope",
            "token_type"
        ]
    );

    let i = inspect(&e, &t.access_token, T0 + 2).await;
    assert_eq!(i["active"], true);
    assert_eq!(i["token_type"], "DPoP");
    assert_eq!(i["cnf"], json!({"jkt": "jkt-1"}));
}

#[tokio::test]
async fn id_token_claims_are_complete_and_verifiable() {
    let e = env().await;
    let t = dpop_tokens(&e, "jkt-1").await;
    let id_token = t.id_token.unwrap();
    let header = peek_header(&id_token).unwrap();
    assert_eq!(header["alg"], "PS256");
    assert_eq!(header["typ"], "JWT");
    let claims = e
        .keys
        .verify_own(
            &id_token,
            &VerifyOptions::new(T0 + 1)
                .typ("JWT")
                .issuer(ISSUER)
                .audience(["tpp-dpop"]),
        )
        .unwrap();
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["aud"], "tpp-dpop");
    assert_eq!(claims["iat"], T0 + 1);
    assert_eq!(claims["exp"], T0 + 1 + 600);
    assert_eq!(claims["auth_time"], T0 - 20);
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["acr"], "urn:openbanking:psd2:sca");
    assert_eq!(claims["amr"], json!(["pwd", "otp"]));
    assert_eq!(claims["at_hash"], b64_left_half_sha256(&t.access_token));
    assert_eq!(claims["openbanking_intent_id"], "intent-1");
    // Scope-based claims belong to userinfo, not the id_token.
    assert!(claims.get("email").is_none());
    assert!(claims.get("name").is_none());
}

#[tokio::test]
async fn id_token_has_no_nonce_when_none_was_sent() {
    let e = env().await;
    let c = dpop_client();
    let mut req = auth_request("tpp-dpop", "openid accounts");
    req.nonce = None;
    let code = code_for(&e, &c, &req).await;
    let t = redeem(&e, &c, code_form(&code), proof("k"), T0 + 1)
        .await
        .unwrap();
    let claims = e
        .keys
        .verify_own(&t.id_token.unwrap(), &VerifyOptions::new(T0 + 1))
        .unwrap();
    assert!(claims.get("nonce").is_none());
}

#[tokio::test]
async fn plain_oauth_gets_no_id_token_and_rar_is_returned() {
    let e = env().await;
    let c = dpop_client();
    let mut req = auth_request("tpp-dpop", "accounts");
    let rar = json!([{"type": "account_information", "actions": ["read"]}]);
    req.authorization_details = Some(rar.clone());
    let code = code_for(&e, &c, &req).await;
    let t = redeem(&e, &c, code_form(&code), proof("k"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(t.id_token, None);
    assert_eq!(t.authorization_details, Some(rar.clone()));
    let i = inspect(&e, &t.access_token, T0 + 2).await;
    assert_eq!(i["authorization_details"], rar);
}

#[tokio::test]
async fn code_flow_with_mtls_binding() {
    let e = env().await;
    let t = mtls_tokens(&e).await;
    assert_eq!(t.token_type, "Bearer");
    let i = inspect(&e, &t.access_token, T0 + 2).await;
    assert_eq!(i["cnf"], json!({"x5t#S256": CERT_A}));
    assert_eq!(i["token_type"], "Bearer");
}

#[tokio::test]
async fn missing_code_verifier_is_invalid_grant() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    let req = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
    ]);
    assert_eq!(
        code_of(redeem(&e, &c, req, proof("k"), T0 + 1).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn wrong_code_verifier_is_invalid_grant() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    let req = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", &"x".repeat(43)),
    ]);
    let err = redeem(&e, &c, req, proof("k"), T0 + 1).await.unwrap_err();
    assert_invalid_grant(&err, "code_challenge");
    // The failed try did not spend the code: whoever holds the code but
    // not the verifier cannot burn it. The client's own try succeeds, once.
    let ok = redeem(&e, &c, code_form(&code), proof("k"), T0 + 2)
        .await
        .unwrap();
    assert!(!ok.access_token.is_empty());
    let err = redeem(&e, &c, code_form(&code), proof("k"), T0 + 3)
        .await
        .unwrap_err();
    assert_invalid_grant(&err, "already been used");
}

#[tokio::test]
async fn wrong_redirect_uri_is_invalid_grant() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    let req = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "https://tpp.example/cb?dummy=1"),
        ("code_verifier", VERIFIER),
    ]);
    assert_eq!(
        code_of(redeem(&e, &c, req, proof("k"), T0 + 1).await),
        "invalid_grant"
    );
    let req = form(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("code_verifier", VERIFIER),
    ]);
    assert_eq!(
        code_of(redeem(&e, &c, req, proof("k"), T0 + 1).await),
        "invalid_request"
    );
}

#[tokio::test]
async fn code_of_another_client_is_invalid_grant() {
    let e = env().await;
    let owner = dpop_client();
    let code = code_for(&e, &owner, &auth_request("tpp-dpop", "openid")).await;
    let thief = client("tpp-other", json!({}));
    assert_eq!(
        code_of(redeem(&e, &thief, code_form(&code), proof("k"), T0 + 1).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn reused_code_is_refused_and_revokes_the_first_tokens() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid accounts")).await;
    let first = redeem(&e, &c, code_form(&code), proof("k"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(
        inspect(&e, &first.access_token, T0 + 2).await["active"],
        true
    );
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), proof("k"), T0 + 2).await),
        "invalid_grant"
    );
    assert_eq!(
        inspect(&e, &first.access_token, T0 + 3).await,
        json!({"active": false})
    );
    let rt = first.refresh_token.unwrap();
    assert_eq!(inspect(&e, &rt, T0 + 3).await, json!({"active": false}));
    assert_eq!(
        code_of(redeem(&e, &c, refresh_form(&rt, None), proof("k"), T0 + 3).await),
        "invalid_grant"
    );
}

/// Concurrent redemptions of one code: one spends it, every other is a
/// replay, and the replay revokes the grant. The one that spent it either got
/// tokens before the revocation (they are then inactive) or stores them after
/// it and is refused: either way nothing usable is issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_redemptions_of_one_code_issue_once() {
    let e = std::sync::Arc::new(env().await);
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid accounts")).await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (e, c, code, b) = (e.clone(), c.clone(), code.clone(), barrier.clone());
            tokio::spawn(async move {
                b.wait().await;
                redeem(&e, &c, code_form(&code), proof("k"), T0 + 1).await
            })
        })
        .collect();
    // The code is spent in the write that stores the tokens: exactly one
    // redemption is answered with tokens. A loser learns of the replay
    // from the code, or, when an earlier loser has already revoked the
    // grant, from the grant.
    let (mut issued, mut replays, mut refused) = (Vec::new(), 0, 0);
    for t in tasks {
        let err = match t.await.unwrap() {
            Ok(tokens) => {
                issued.push(tokens);
                continue;
            }
            Err(err) => err,
        };
        assert_eq!(err.code.as_str(), "invalid_grant", "{err:?}");
        match err.description.as_deref() {
            Some("the authorization code has already been used") => replays += 1,
            Some("the authorization grant has been revoked") => refused += 1,
            _ => panic!("{err:?}"),
        }
    }
    assert_eq!(issued.len(), 1, "exactly one redemption spends the code");
    assert_eq!(replays + refused, 7);
    assert!(replays >= 1, "the first loser sees the spent code");
    for tokens in &issued {
        assert_eq!(
            inspect(&e, &tokens.access_token, T0 + 2).await,
            json!({"active": false})
        );
    }
}

#[tokio::test]
async fn expired_code_is_invalid_grant() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), proof("k"), T0 + 61).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn code_lifetime_is_capped_at_60_seconds() {
    let mut e = env().await;
    e.policy.code_lifetime_secs = 600;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), proof("k"), T0 + 61).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn unknown_code_is_invalid_grant() {
    let e = env().await;
    assert_eq!(
        code_of(redeem(&e, &dpop_client(), code_form("nope"), proof("k"), T0).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn dpop_bound_code_needs_the_same_key() {
    let e = env().await;
    let c = dpop_client();
    let mut req = auth_request("tpp-dpop", "openid");
    req.dpop_jkt = Some("jkt-par".into());
    let code = code_for(&e, &c, &req).await;
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), proof("jkt-other"), T0 + 1).await),
        "invalid_grant"
    );
    let code = code_for(&e, &c, &req).await;
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), cert(CERT_A), T0 + 1).await),
        "invalid_grant"
    );
    let code = code_for(&e, &c, &req).await;
    let t = redeem(&e, &c, code_form(&code), proof("jkt-par"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(t.token_type, "DPoP");
}

#[tokio::test]
async fn fapi2_refuses_unbound_tokens() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    let err = redeem(&e, &c, code_form(&code), Binding::default(), T0 + 1)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_request");
    assert_eq!(
        err.description.as_deref(),
        Some("sender-constrained token required (DPoP or mTLS)")
    );
}

#[tokio::test]
async fn fapi2_private_key_jwt_client_may_bind_to_its_certificate() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    let t = redeem(&e, &c, code_form(&code), cert(CERT_A), T0 + 1)
        .await
        .unwrap();
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(
        inspect(&e, &t.access_token, T0 + 2).await["cnf"]["x5t#S256"],
        CERT_A
    );
}

#[tokio::test]
async fn certificate_bound_client_needs_a_certificate() {
    let e = env().await;
    let c = mtls_client();
    let code = code_for(&e, &c, &auth_request("tpp-mtls", "openid")).await;
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), Binding::default(), T0 + 1).await),
        "invalid_request"
    );
}

#[tokio::test]
async fn dpop_bound_client_needs_a_proof() {
    let e = env().await;
    let c = client("tpp-dpop-only", json!({"dpop_bound_access_tokens": true}));
    let code = code_for(&e, &c, &auth_request("tpp-dpop-only", "openid")).await;
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), cert(CERT_A), T0 + 1).await),
        "invalid_request"
    );
}

#[tokio::test]
async fn grant_not_registered_is_unauthorized_client() {
    let e = env().await;
    let c = client(
        "tpp-cc-only",
        json!({"grant_types": ["client_credentials"], "redirect_uris": []}),
    );
    assert_eq!(
        code_of(redeem(&e, &c, code_form("x"), proof("k"), T0).await),
        "unauthorized_client"
    );
    assert_eq!(
        code_of(redeem(&e, &c, refresh_form("x", None), proof("k"), T0).await),
        "unauthorized_client"
    );
    let c = dpop_client();
    assert_eq!(
        code_of(
            redeem(
                &e,
                &c,
                form(&[("grant_type", "client_credentials")]),
                proof("k"),
                T0
            )
            .await
        ),
        "unauthorized_client"
    );
}

#[tokio::test]
async fn no_refresh_token_without_the_refresh_grant() {
    let e = env().await;
    let c = client("tpp-no-rt", json!({"grant_types": ["authorization_code"]}));
    let code = code_for(&e, &c, &auth_request("tpp-no-rt", "openid")).await;
    let t = redeem(&e, &c, code_form(&code), proof("k"), T0 + 1)
        .await
        .unwrap();
    assert_eq!(t.refresh_token, None);
}

#[tokio::test]
async fn consent_revoked_before_redemption_is_invalid_grant() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    e.store.revoke_by_consent("intent-1", T0).await.unwrap();
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), proof("k"), T0 + 1).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn jwt_access_tokens_are_introspectable_and_revocable() {
    let mut e = env().await;
    e.policy.access_token_format = AccessTokenFormat::Jwt;
    let t = dpop_tokens(&e, "jkt-1").await;
    assert_eq!(peek_header(&t.access_token).unwrap()["typ"], "at+jwt");
    let claims = e
        .keys
        .verify_own(
            &t.access_token,
            &VerifyOptions::new(T0 + 1).typ("at+jwt").audience([ISSUER]),
        )
        .unwrap();
    assert_eq!(claims["cnf"]["jkt"], "jkt-1");
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["client_id"], "tpp-dpop");
    assert_eq!(claims["consent_id"], "intent-1");
    assert_eq!(inspect(&e, &t.access_token, T0 + 2).await["active"], true);
    revoke(&e.store, &dpop_client(), &t.access_token, None, T0 + 2)
        .await
        .unwrap();
    assert_eq!(
        inspect(&e, &t.access_token, T0 + 3).await,
        json!({"active": false})
    );
}

// -------------------------------------------------------- refresh token grant

#[tokio::test]
async fn refresh_issues_a_new_access_token_and_id_token() {
    let e = env().await;
    let c = dpop_client();
    let first = dpop_tokens(&e, "jkt-1").await;
    let rt = first.refresh_token.clone().unwrap();
    let t = redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 100)
        .await
        .unwrap();
    assert_ne!(t.access_token, first.access_token);
    assert_eq!(t.token_type, "DPoP");
    assert_eq!(t.scope, "openid accounts");
    assert_eq!(t.refresh_token, None, "no rotation by default");
    let claims = e
        .keys
        .verify_own(
            t.id_token.as_deref().unwrap(),
            &VerifyOptions::new(T0 + 100).audience(["tpp-dpop"]),
        )
        .unwrap();
    assert_eq!(claims["sub"], "user-1");
    assert_eq!(claims["auth_time"], T0 - 20);
    assert_eq!(claims["acr"], "urn:openbanking:psd2:sca");
    assert_eq!(claims["openbanking_intent_id"], "intent-1");
    assert!(claims.get("nonce").is_none());
    assert_eq!(claims["at_hash"], b64_left_half_sha256(&t.access_token));
    // Without rotation the refresh token stays valid.
    redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 200)
        .await
        .unwrap();
    // Both access tokens are live and belong to the same grant.
    assert_eq!(
        inspect(&e, &first.access_token, T0 + 201).await["active"],
        true
    );
    assert_eq!(inspect(&e, &t.access_token, T0 + 201).await["active"], true);
}

#[tokio::test]
async fn refresh_scope_may_narrow_but_not_widen() {
    let e = env().await;
    let c = dpop_client();
    let rt = dpop_tokens(&e, "jkt-1").await.refresh_token.unwrap();
    let t = redeem(
        &e,
        &c,
        refresh_form(&rt, Some("accounts")),
        proof("jkt-1"),
        T0 + 10,
    )
    .await
    .unwrap();
    assert_eq!(t.scope, "accounts");
    assert_eq!(
        inspect(&e, &t.access_token, T0 + 11).await["scope"],
        "accounts"
    );
    assert_eq!(
        code_of(
            redeem(
                &e,
                &c,
                refresh_form(&rt, Some("accounts payments")),
                proof("jkt-1"),
                T0 + 10
            )
            .await
        ),
        "invalid_scope"
    );
    // The narrowing did not shrink the refresh token itself.
    let t = redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 12)
        .await
        .unwrap();
    assert_eq!(t.scope, "openid accounts");
}

#[tokio::test]
async fn refresh_token_of_another_client_is_invalid_grant() {
    let e = env().await;
    let rt = dpop_tokens(&e, "jkt-1").await.refresh_token.unwrap();
    let other = client("tpp-other", json!({}));
    assert_eq!(
        code_of(redeem(&e, &other, refresh_form(&rt, None), proof("jkt-1"), T0 + 10).await),
        "invalid_grant"
    );
}

/// RFC 9449 §5, RFC 8705 §4: a confidential client's refresh token is bound
/// to the client (its authentication), not to a key; the new access token is
/// bound to the DPoP key or certificate of the refresh request, and under
/// FAPI to one of them.
#[tokio::test]
async fn confidential_refresh_binds_the_new_access_token_to_what_is_presented() {
    let e = env().await;
    let c = dpop_client();
    let rt = dpop_tokens(&e, "jkt-1").await.refresh_token.unwrap();
    assert!(inspect(&e, &rt, T0 + 2).await.get("cnf").is_none());
    let t = redeem(&e, &c, refresh_form(&rt, None), proof("jkt-2"), T0 + 10)
        .await
        .unwrap();
    assert_eq!(t.token_type, "DPoP");
    let i = inspect(&e, &t.access_token, T0 + 11).await;
    assert_eq!(i["cnf"], json!({"jkt": "jkt-2"}));
    let t = redeem(&e, &c, refresh_form(&rt, None), cert(CERT_A), T0 + 10)
        .await
        .unwrap();
    let i = inspect(&e, &t.access_token, T0 + 11).await;
    assert_eq!(i["cnf"], json!({"x5t#S256": CERT_A}));
    let err = redeem(&e, &c, refresh_form(&rt, None), Binding::default(), T0 + 10)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_request", "{err:?}");
}

/// A TPP renews its transport certificate: the refresh token it got over the
/// old one works over the new one, and the new access token is bound to it.
#[tokio::test]
async fn certificate_renewal_keeps_the_refresh_token() {
    let e = env().await;
    let c = mtls_client();
    let rt = mtls_tokens(&e).await.refresh_token.unwrap();
    for (b, cnf) in [
        (cert(CERT_A), json!({"x5t#S256": CERT_A})),
        (cert(CERT_B), json!({"x5t#S256": CERT_B})),
        (proof("jkt-1"), json!({"jkt": "jkt-1"})),
    ] {
        let t = redeem(&e, &c, refresh_form(&rt, None), b, T0 + 10)
            .await
            .unwrap();
        let i = inspect(&e, &t.access_token, T0 + 11).await;
        assert_eq!(i["cnf"], cnf);
    }
    // Certificate-bound tokens need a certificate to bind to.
    let err = redeem(&e, &c, refresh_form(&rt, None), Binding::default(), T0 + 10)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_request", "{err:?}");
}

/// RFC 9449 §5: a public client's refresh token stays bound to the DPoP key
/// of its first access token, also across rotation.
#[tokio::test]
async fn public_client_refresh_token_stays_bound_to_its_key() {
    let mut e = env().await;
    e.policy.rotate_refresh_tokens = true;
    let c = AuthenticatedClient {
        method: AuthMethod::None,
        ..dpop_client()
    };
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid accounts")).await;
    let rt = redeem(&e, &c, code_form(&code), proof("jkt-1"), T0 + 1)
        .await
        .unwrap()
        .refresh_token
        .unwrap();
    for b in [proof("jkt-2"), Binding::default(), cert(CERT_A)] {
        assert_eq!(
            code_of(redeem(&e, &c, refresh_form(&rt, None), b, T0 + 10).await),
            "invalid_grant"
        );
    }
    let t = redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 10)
        .await
        .unwrap();
    let new_rt = t.refresh_token.unwrap();
    assert_eq!(inspect(&e, &new_rt, T0 + 11).await["cnf"]["jkt"], "jkt-1");
    assert_eq!(
        code_of(redeem(&e, &c, refresh_form(&new_rt, None), proof("jkt-2"), T0 + 12).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn refresh_after_consent_revocation_is_invalid_grant() {
    let e = env().await;
    let c = dpop_client();
    let rt = dpop_tokens(&e, "jkt-1").await.refresh_token.unwrap();
    e.store.revoke_by_consent("intent-1", T0 + 5).await.unwrap();
    assert_eq!(
        code_of(redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 10).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn refresh_with_a_revoked_grant_is_invalid_grant() {
    let e = env().await;
    let c = dpop_client();
    let first = dpop_tokens(&e, "jkt-1").await;
    let rt = first.refresh_token.unwrap();
    let grant_id = e
        .store
        .list_grants(oauth_core::storage::GrantFilter {
            client_id: Some("tpp-dpop".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .remove(0)
        .grant_id;
    e.store.revoke_grant(&grant_id, T0 + 5).await.unwrap();
    assert_eq!(
        code_of(redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 10).await),
        "invalid_grant"
    );
}

#[tokio::test]
async fn expired_refresh_token_is_invalid_grant() {
    let e = env().await;
    let rt = dpop_tokens(&e, "jkt-1").await.refresh_token.unwrap();
    let later = T0 + 1 + e.policy.refresh_token_lifetime_secs;
    assert_eq!(
        code_of(
            redeem(
                &e,
                &dpop_client(),
                refresh_form(&rt, None),
                proof("jkt-1"),
                later
            )
            .await
        ),
        "invalid_grant"
    );
}

#[tokio::test]
async fn access_token_is_not_a_refresh_token() {
    let e = env().await;
    let at = dpop_tokens(&e, "jkt-1").await.access_token;
    assert_eq!(
        code_of(
            redeem(
                &e,
                &dpop_client(),
                refresh_form(&at, None),
                proof("jkt-1"),
                T0 + 5
            )
            .await
        ),
        "invalid_grant"
    );
}

#[tokio::test]
async fn rotation_replaces_the_refresh_token_once() {
    let mut e = env().await;
    e.policy.rotate_refresh_tokens = true;
    let c = dpop_client();
    let rt = dpop_tokens(&e, "jkt-1").await.refresh_token.unwrap();
    let t = redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 10)
        .await
        .unwrap();
    let new_rt = t.refresh_token.unwrap();
    assert_ne!(new_rt, rt);
    assert!(inspect(&e, &new_rt, T0 + 11).await.get("cnf").is_none());
    assert_eq!(
        code_of(redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 11).await),
        "invalid_grant"
    );
    redeem(&e, &c, refresh_form(&new_rt, None), proof("jkt-1"), T0 + 12)
        .await
        .unwrap();
}

#[tokio::test]
async fn concurrent_rotation_has_one_winner() {
    let mut e = env().await;
    e.policy.rotate_refresh_tokens = true;
    let c = dpop_client();
    let rt = dpop_tokens(&e, "jkt-1").await.refresh_token.unwrap();
    let (a, b) = tokio::join!(
        redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 10),
        redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 10),
    );
    let oks = [a.is_ok(), b.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(oks, 1);
    let loser = if a.is_ok() { b } else { a };
    assert_eq!(loser.unwrap_err().code.as_str(), "invalid_grant");
}

// ------------------------------------------------- client credentials grant

#[tokio::test]
async fn client_credentials_default_and_requested_scopes() {
    let e = env().await;
    let c = mtls_client();
    let t = redeem(
        &e,
        &c,
        form(&[("grant_type", "client_credentials")]),
        cert(CERT_A),
        T0,
    )
    .await
    .unwrap();
    assert_eq!(t.scope, "profile email accounts payments");
    assert_eq!(t.token_type, "Bearer");
    assert_eq!(t.refresh_token, None);
    assert_eq!(t.id_token, None);
    let i = inspect(&e, &t.access_token, T0 + 1).await;
    assert_eq!(i["client_id"], "tpp-mtls");
    assert!(i.get("sub").is_none());
    assert_eq!(i["cnf"]["x5t#S256"], CERT_A);

    let t = redeem(
        &e,
        &c,
        form(&[("grant_type", "client_credentials"), ("scope", "payments")]),
        cert(CERT_A),
        T0,
    )
    .await
    .unwrap();
    assert_eq!(t.scope, "payments");
    for bad in ["openid", "payments fundsconfirmations"] {
        assert_eq!(
            code_of(
                redeem(
                    &e,
                    &c,
                    form(&[("grant_type", "client_credentials"), ("scope", bad)]),
                    cert(CERT_A),
                    T0
                )
                .await
            ),
            "invalid_scope"
        );
    }
    assert_eq!(
        code_of(
            redeem(
                &e,
                &c,
                form(&[("grant_type", "client_credentials")]),
                Binding::default(),
                T0
            )
            .await
        ),
        "invalid_request"
    );
}

#[tokio::test]
async fn client_credentials_with_dpop() {
    let e = env().await;
    let c = client(
        "tpp-cc",
        json!({"grant_types": ["client_credentials"], "redirect_uris": [], "scope": "accounts"}),
    );
    let t = redeem(
        &e,
        &c,
        form(&[("grant_type", "client_credentials")]),
        proof("jkt-cc"),
        T0,
    )
    .await
    .unwrap();
    assert_eq!(t.token_type, "DPoP");
    assert_eq!(t.scope, "accounts");
}

// ----------------------------------------------------------- introspection

#[tokio::test]
async fn introspection_shapes() {
    let e = env().await;
    let t = dpop_tokens(&e, "jkt-1").await;
    let i = inspect(&e, &t.access_token, T0 + 2).await;
    assert_eq!(
        i,
        json!({
            "active": true,
            "iss": ISSUER,
            "client_id": "tpp-dpop",
            "scope": "openid accounts",
            "sub": "user-1",
            "iat": T0 + 1,
            "exp": T0 + 1 + 600,
            "token_type": "DPoP",
            "cnf": {"jkt": "jkt-1"},
            "consent_id": "intent-1",
            "acr": "urn:openbanking:psd2:sca",
            "auth_time": T0 - 20,
            "accounts": ["acc-1", "acc-2"],
        })
    );
    let rt = t.refresh_token.unwrap();
    let r = inspect(&e, &rt, T0 + 2).await;
    assert_eq!(r["active"], true);
    assert_eq!(r["token_type"], "refresh_token");

    // An API gateway (another authenticated client) sees access tokens,
    // never refresh tokens.
    let gateway = client("bank-gateway", json!({}));
    let g = introspect(&e.store, &e.policy, &gateway, &t.access_token, None, T0 + 2)
        .await
        .unwrap();
    assert_eq!(g["active"], true);
    let g = introspect(
        &e.store,
        &e.policy,
        &gateway,
        &rt,
        Some("refresh_token"),
        T0 + 2,
    )
    .await
    .unwrap();
    assert_eq!(g, json!({"active": false}));

    // Unknown, expired.
    assert_eq!(inspect(&e, "unknown", T0).await, json!({"active": false}));
    assert_eq!(
        inspect(&e, &t.access_token, T0 + 1 + 600).await,
        json!({"active": false})
    );
    let err = introspect(&e.store, &e.policy, &gateway, "", None, T0)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_request");
}

// -------------------------------------------------------------- revocation

#[tokio::test]
async fn revoking_a_refresh_token_cascades_to_the_grants_tokens() {
    let e = env().await;
    let c = dpop_client();
    let t = dpop_tokens(&e, "jkt-1").await;
    let rt = t.refresh_token.unwrap();
    let t2 = redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 5)
        .await
        .unwrap();
    revoke(&e.store, &c, &rt, Some("refresh_token"), T0 + 6)
        .await
        .unwrap();
    for tok in [&rt, &t.access_token, &t2.access_token] {
        assert_eq!(inspect(&e, tok, T0 + 7).await, json!({"active": false}));
    }
    // Idempotent.
    revoke(&e.store, &c, &rt, None, T0 + 8).await.unwrap();
}

#[tokio::test]
async fn revoking_an_access_token_revokes_only_it() {
    let e = env().await;
    let c = dpop_client();
    let t = dpop_tokens(&e, "jkt-1").await;
    revoke(&e.store, &c, &t.access_token, Some("access_token"), T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        inspect(&e, &t.access_token, T0 + 6).await,
        json!({"active": false})
    );
    let rt = t.refresh_token.unwrap();
    assert_eq!(inspect(&e, &rt, T0 + 6).await["active"], true);
    redeem(&e, &c, refresh_form(&rt, None), proof("jkt-1"), T0 + 7)
        .await
        .unwrap();
}

#[tokio::test]
async fn revocation_does_not_leak_or_touch_other_clients_tokens() {
    let e = env().await;
    let t = dpop_tokens(&e, "jkt-1").await;
    let other = client("tpp-other", json!({}));
    revoke(&e.store, &other, &t.access_token, None, T0 + 5)
        .await
        .unwrap();
    revoke(
        &e.store,
        &other,
        t.refresh_token.as_deref().unwrap(),
        None,
        T0 + 5,
    )
    .await
    .unwrap();
    assert_eq!(inspect(&e, &t.access_token, T0 + 6).await["active"], true);
    revoke(&e.store, &other, "never-issued", None, T0 + 5)
        .await
        .unwrap();
    let err = revoke(&e.store, &other, "", None, T0 + 5)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_request");
}

// ---------------------------------------------------------------- userinfo

async fn ui(
    e: &Env,
    token: &str,
    scheme: AuthScheme,
    jkt: Option<&str>,
    x5t: Option<&str>,
) -> Result<Value, ResourceError> {
    let dpop = jkt.map(|j| DpopProof {
        jkt: j.into(),
        jti: "j".into(),
        iat: T0,
    });
    userinfo(&e.store, token, scheme, dpop, x5t, T0 + 5).await
}

#[tokio::test]
async fn userinfo_returns_claims_for_a_dpop_token() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid email accounts")).await;
    let t = redeem(&e, &c, code_form(&code), proof("jkt-1"), T0 + 1)
        .await
        .unwrap();
    let v = ui(&e, &t.access_token, AuthScheme::DPoP, Some("jkt-1"), None)
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({
            "sub": "user-1",
            "email": "ada@example.com",
            "email_verified": true,
            "openbanking_intent_id": "intent-1",
        })
    );
}

#[tokio::test]
async fn userinfo_refuses_a_dpop_token_presented_as_bearer() {
    let e = env().await;
    let t = dpop_tokens(&e, "jkt-1").await;
    let err = ui(&e, &t.access_token, AuthScheme::Bearer, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_token");
    assert_eq!(err.status(), 401);
    assert!(
        err.www_authenticate()
            .unwrap()
            .starts_with("DPoP error=\"invalid_token\"")
    );

    let err = ui(&e, &t.access_token, AuthScheme::DPoP, Some("jkt-2"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_dpop_proof");
    assert_eq!(err.status(), 401);

    let err = ui(&e, &t.access_token, AuthScheme::DPoP, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_dpop_proof");
}

#[tokio::test]
async fn userinfo_refuses_a_certificate_bound_token_without_its_certificate() {
    let e = env().await;
    let t = mtls_tokens(&e).await;
    for x5t in [Some(CERT_B), None] {
        let err = ui(&e, &t.access_token, AuthScheme::Bearer, None, x5t)
            .await
            .unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_token");
        assert_eq!(err.status(), 401);
        assert!(
            err.www_authenticate()
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\"")
        );
    }
    let v = ui(&e, &t.access_token, AuthScheme::Bearer, None, Some(CERT_A))
        .await
        .unwrap();
    assert_eq!(v["sub"], "user-1");
    // An unbound-by-DPoP token presented with the DPoP scheme.
    let err = ui(
        &e,
        &t.access_token,
        AuthScheme::DPoP,
        Some("jkt-1"),
        Some(CERT_A),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_token");
}

#[tokio::test]
async fn userinfo_needs_the_openid_scope() {
    let e = env().await;
    let c = dpop_client();
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "accounts")).await;
    let t = redeem(&e, &c, code_form(&code), proof("jkt-1"), T0 + 1)
        .await
        .unwrap();
    let err = ui(&e, &t.access_token, AuthScheme::DPoP, Some("jkt-1"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "insufficient_scope");
    assert_eq!(err.status(), 403);
    assert!(err.www_authenticate().unwrap().contains("scope=\"openid\""));
}

#[tokio::test]
async fn userinfo_refuses_unknown_revoked_and_refresh_tokens() {
    let e = env().await;
    let c = dpop_client();
    let t = dpop_tokens(&e, "jkt-1").await;
    let rt = t.refresh_token.clone().unwrap();
    let err = ui(&e, &rt, AuthScheme::DPoP, Some("jkt-1"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_token");
    let err = ui(&e, "nope", AuthScheme::Bearer, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_token");
    revoke(&e.store, &c, &t.access_token, None, T0 + 2)
        .await
        .unwrap();
    let err = ui(&e, &t.access_token, AuthScheme::DPoP, Some("jkt-1"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_token");
    let err = ui(&e, "", AuthScheme::Bearer, None, None)
        .await
        .unwrap_err();
    assert_eq!(err.code.as_str(), "invalid_token");
}

/// FAPI 1.0 Advanced by value (§5.2.2-18): a request without PKCE takes
/// no code_verifier; a verifier without a challenge is refused.
#[tokio::test]
async fn a_request_without_pkce_redeems_without_a_verifier() {
    let e = env().await;
    let c = dpop_client();
    let mut req = auth_request("tpp-dpop", "openid");
    req.code_challenge = String::new();
    req.code_challenge_method = String::new();
    let without = |code: &str| {
        form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
        ])
    };
    let code = code_for(&e, &c, &req).await;
    let t = redeem(&e, &c, without(&code), proof("k"), T0 + 1)
        .await
        .unwrap();
    assert!(t.id_token.is_some());
    let code = code_for(&e, &c, &req).await;
    assert_eq!(
        code_of(redeem(&e, &c, code_form(&code), proof("k"), T0 + 1).await),
        "invalid_grant"
    );
    // With PKCE, still required.
    let code = code_for(&e, &c, &auth_request("tpp-dpop", "openid")).await;
    assert_eq!(
        code_of(redeem(&e, &c, without(&code), proof("k"), T0 + 1).await),
        "invalid_grant"
    );
}
