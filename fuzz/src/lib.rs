//! What the fuzz targets share: one store (SQLite in a temp dir), the
//! provider's keys, a client with known keys, a directory, a runtime.
//! Built once per process; each input then runs against it.

use std::sync::LazyLock;

use oauth_core::client::Client;
use oauth_core::jwks_resolver::{FetchError, JwksFetcher, JwksResolver};
use oauth_core::keys::{KeyEncryptionKey, KeySet, Keys};
use oauth_core::policy::{Policy, Profile};
use oauth_core::sender_constraint::nonce::DpopNonces;
use oauth_core::storage::ClientRepository as _;
use serde_json::json;
use token_store::Store;

pub const ISSUER: &str = "https://as.example";
pub const CLIENT_ID: &str = "fuzz-client";
pub const NOW: i64 = 1_900_000_000;

/// No network: every `jwks_uri` is unreachable.
pub struct NoFetch;

impl JwksFetcher for NoFetch {
    async fn fetch(&self, _url: &str) -> Result<Vec<u8>, FetchError> {
        Err(FetchError::Timeout)
    }
}

pub struct World {
    pub rt: tokio::runtime::Runtime,
    pub store: Store,
    pub keys: Keys,
    pub policy: Policy,
    pub client: Client,
    pub jwks: JwksResolver<NoFetch>,
    pub nonces: DpopNonces,
    pub registrar: dcr::Registrar,
    _dir: tempfile::TempDir,
}

/// A P-256 public key (RFC 7517 appendix A.1) the client registers.
pub fn client_jwk() -> serde_json::Value {
    json!({"kty": "EC", "crv": "P-256", "kid": "fuzz-1", "use": "sig", "alg": "ES256",
           "x": "MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4",
           "y": "4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"})
}

pub static WORLD: LazyLock<World> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("fuzz.db").display());
    let store = Store::connect(&url, 2).unwrap();
    let kek = KeyEncryptionKey::from_bytes([3; 32]);
    let records = oauth_core::keys::missing_keys(&[], &kek, NOW).unwrap();
    let keys = Keys::new(KeySet::build(records, &kek, NOW).unwrap());
    let policy = Policy::new(ISSUER, Profile::default());
    let metadata = serde_json::from_value(json!({
        "client_id": CLIENT_ID,
        "redirect_uris": ["https://tpp.example/cb"],
        "grant_types": ["authorization_code", "client_credentials"],
        "scope": "openid accounts",
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "ES256",
        "request_object_signing_alg": "ES256",
        "jwks": {"keys": [client_jwk()]},
        "dpop_bound_access_tokens": true,
    }))
    .unwrap();
    let client = Client::new(metadata, None).unwrap();
    rt.block_on(async {
        store.migrate().await.unwrap();
        store
            .put_client(client.to_record("static", NOW))
            .await
            .unwrap();
    });
    let directory = serde_json::from_value(json!({
        "name": "fuzz", "issuer": "Fuzz Directory",
        "jwks": {"keys": [client_jwk()]}, "rules": "uk-ob",
        "role_scopes": {"AISP": ["accounts"]},
    }))
    .unwrap();
    let registrar = dcr::Registrar::new(
        ISSUER,
        &format!("{ISSUER}/register"),
        &[directory],
        serde_json::from_value(json!({})).unwrap(),
    )
    .unwrap();
    World {
        rt,
        store,
        keys,
        policy,
        client,
        jwks: JwksResolver::new(NoFetch),
        nonces: DpopNonces::new(&[9; 32]),
        registrar,
        _dir: dir,
    }
});

/// The input as text, if it is UTF-8 (HTTP carries these as text).
pub fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}
