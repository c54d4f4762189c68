//! Dynamic client registration (RFC 7591) and management (RFC 7592) with
//! software statements from regulatory directories: UK Open Banking DCR
//! v3.3, Brazil Open Finance, the AU CDR register, plain RFC 7591, and
//! initial access tokens for deployments without a directory.
//!
//! No HTTP framework here: the server hands over the body, its content
//! type, the bearer token and the client certificate of the connection, and
//! renders the [`Registered`] document or the [`DcrError`].
//!
//! One pipeline ([`Registrar::evaluate`]) serves registration and update, so
//! a PUT re-validates everything a POST did. Nothing is written unless every
//! check passed; the request JWT's `jti` is spent just before the write.

pub mod config;
mod limiter;
pub mod rules;
mod ssa;

use std::borrow::Cow;

use oauth_core::cert::{DistinguishedName, PeerCertificate};
use oauth_core::client::{AuthMethod, Client, ClientMetadata};
use oauth_core::client_auth::certificate_key_registered;
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::jwks_resolver::{JwksFetcher, JwksResolver, KeyLookupError};
use oauth_core::keys::JwsAlg;
use oauth_core::policy::Profile;
use oauth_core::secret::{constant_time_eq, hash_secret, new_secret, time_ordered};
use oauth_core::storage::{
    ClientRecord, ClientRepository, ReplayCache, ReplayEntry, ReplayKind, TokenKind,
    TokenRepository,
};
use serde_json::{Map, Value, json};

pub use config::{DirectoryConfig, RegistrationConfig, RequestFormat};
pub use rules::{Management, RulePack, Rules};

use ssa::{Directory, SoftwareStatement};

/// Origin recorded for registered clients ([`ClientRecord::origin`]).
pub const ORIGIN: &str = "dynamic";

/// Grant types a registered client may ask for: those the server serves.
const GRANT_TYPES: [&str; 3] = ["authorization_code", "refresh_token", "client_credentials"];
/// CIBA's grant (CIBA Core §4), registrable when the server serves CIBA.
const CIBA_GRANT: &str = oauth_core::client::CIBA_GRANT;

/// A registration failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DcrError {
    /// An RFC 7591 §3.2.2 / RFC 6750 §3.1 error, rendered as JSON.
    Protocol(OAuthError),
    /// Too many registrations for one `software_id`: HTTP 429 with `Retry-After`.
    RateLimited {
        software_id: String,
        retry_after_secs: i64,
    },
}

impl From<OAuthError> for DcrError {
    fn from(e: OAuthError) -> Self {
        DcrError::Protocol(e)
    }
}

impl DcrError {
    /// The error code string, e.g. `invalid_redirect_uri` (tests pin these).
    pub fn code(&self) -> &'static str {
        match self {
            DcrError::Protocol(e) => e.code.as_str(),
            DcrError::RateLimited { .. } => "rate_limited",
        }
    }
}

pub(crate) fn metadata_error(d: impl Into<Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, d)
}
pub(crate) fn redirect_error(d: impl Into<Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidRedirectUri, d)
}
pub(crate) fn ssa_error(d: impl Into<Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidSoftwareStatement, d)
}
pub(crate) fn unapproved(d: impl Into<Cow<'static, str>>) -> OAuthError {
    OAuthError::new(ErrorCode::UnapprovedSoftwareStatement, d)
}
fn unauthorized(d: &'static str) -> DcrError {
    DcrError::Protocol(OAuthError::new(ErrorCode::InvalidToken, d))
}

/// What the server hands over for a POST or PUT.
#[derive(Debug, Clone, Copy)]
pub struct RegistrationRequest<'a> {
    pub body: &'a [u8],
    /// The `Content-Type` header.
    pub content_type: Option<&'a str>,
    /// The bearer token of the `Authorization` header (an initial access
    /// token on POST; the management token on PUT).
    pub bearer: Option<&'a str>,
    /// The client certificate of the connection (RFC 8705).
    pub certificate: Option<&'a PeerCertificate>,
}

/// A successful answer: the HTTP status and the client information
/// response (RFC 7591 §3.2.1, RFC 7592 §3).
#[derive(Debug, Clone, PartialEq)]
pub struct Registered {
    pub status: u16,
    pub client_id: String,
    pub body: Value,
}

/// The registration endpoint's logic, built once from the configuration.
pub struct Registrar {
    issuer: String,
    /// Where `registration_client_uri`s point (the endpoint's URL).
    endpoint_url: String,
    directories: Vec<Directory>,
    settings: RegistrationConfig,
    limiter: limiter::RateLimiter,
    /// Whether the server serves CIBA: then its grant and metadata
    /// (CIBA Core §4) are registrable.
    ciba: bool,
    /// The deployment's profile, which a client follows unless it
    /// registers a `fapi_profile`.
    profile: Profile,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("issuer", &self.issuer)
            .field("directories", &self.directories.len())
            .finish_non_exhaustive()
    }
}

/// The validated outcome of the pipeline, not yet stored.
struct Evaluated {
    metadata: ClientMetadata,
    rules: Rules,
    ssa: Option<SoftwareStatement>,
    /// The request JWT's `jti` and `exp`, spent just before the write.
    jti: Option<(String, i64)>,
}

/// The parsed body.
struct Body {
    format: RequestFormat,
    claims: Map<String, Value>,
    jwt: Option<String>,
}

impl Registrar {
    /// `endpoint_url` is the registration endpoint's absolute URL (the
    /// mTLS alias when there is one).
    pub fn new(
        issuer: &str,
        endpoint_url: &str,
        directories: &[DirectoryConfig],
        settings: RegistrationConfig,
    ) -> Result<Registrar, String> {
        config::validate(directories, &settings).map_err(|(k, p)| format!("{k}: {p}"))?;
        Ok(Registrar {
            issuer: issuer.to_owned(),
            endpoint_url: endpoint_url.trim_end_matches('/').to_owned(),
            directories: directories
                .iter()
                .map(Directory::new)
                .collect::<Result<_, _>>()?,
            limiter: limiter::RateLimiter::new(
                settings.rate_limit_per_software,
                settings.rate_limit_window_secs,
            ),
            settings,
            ciba: false,
            profile: Profile::default(),
        })
    }

    /// The deployment's profile (see [`Rules::fapi1_profile`]).
    #[must_use]
    pub fn with_profile(mut self, profile: Profile) -> Registrar {
        self.profile = profile;
        self
    }

    /// Registrations may ask for the CIBA grant and its metadata.
    #[must_use]
    pub fn with_ciba(mut self, served: bool) -> Registrar {
        self.ciba = served;
        self
    }

    /// Whether registration is offered at all (a directory or initial
    /// access tokens are configured): only then is it advertised.
    pub fn enabled(directories: &[DirectoryConfig], settings: &RegistrationConfig) -> bool {
        !directories.is_empty() || !settings.initial_access_tokens_sha256.is_empty()
    }

    pub fn max_body_bytes(&self) -> usize {
        self.settings.max_body_bytes
    }

    /// RFC 7591 §3: registers a client. 201 with the client information.
    pub async fn register<S, F>(
        &self,
        store: &S,
        resolver: &JwksResolver<F>,
        req: RegistrationRequest<'_>,
        now: i64,
    ) -> Result<Registered, DcrError>
    where
        S: ClientRepository + ReplayCache + TokenRepository,
        F: JwksFetcher,
    {
        let client_id = time_ordered(18);
        let ev = self
            .evaluate(store, resolver, req, now, None, &client_id)
            .await?;
        let software_id = ev.metadata.software_id.clone();
        if let Some(sid) = &software_id {
            self.limiter
                .check(sid, now)
                .map_err(|retry| DcrError::RateLimited {
                    software_id: sid.clone(),
                    retry_after_secs: retry,
                })?;
        }
        let client = Client::new(ev.metadata.clone(), None)?;
        let rat = (ev.rules.management == Management::RegistrationAccessToken).then(new_secret);
        let mut rec = client.to_record(ORIGIN, now);
        rec.registration_token_hash = rat.as_deref().map(hash_secret);
        store
            .put_client_spending(rec.clone(), jti_entry(&ev, now), now)
            .await
            .map_err(OAuthError::from)?;
        if let Some(sid) = &software_id {
            self.limiter.record(sid, now);
        }
        tracing::info!(client_id = %client_id, software_id = software_id.as_deref().unwrap_or(""),
            directory = ev.ssa.as_ref().map_or("", |s| s.directory.as_str()), "client registered");
        Ok(Registered {
            status: 201,
            body: self.document(
                &rec,
                &ev.metadata,
                ev.ssa.as_ref(),
                &ev.rules,
                rat.as_deref(),
            ),
            client_id,
        })
    }

    /// RFC 7592 §2.1: the current client information.
    pub async fn read<S>(
        &self,
        store: &S,
        client_id: &str,
        bearer: Option<&str>,
        certificate: Option<&PeerCertificate>,
        now: i64,
    ) -> Result<Registered, DcrError>
    where
        S: ClientRepository + TokenRepository,
    {
        let rec = self
            .authorize(store, client_id, bearer, certificate, now)
            .await?;
        let metadata = Client::from_record(&rec)?.metadata;
        let rules = rules_for(&rec);
        // RFC 7592 §3: the response carries the (unchanged) registration
        // access token the caller just proved it holds.
        let rat = bearer.filter(|_| rec.registration_token_hash.is_some());
        Ok(Registered {
            status: 200,
            body: self.document(&rec, &metadata, None, &rules, rat),
            client_id: rec.client_id,
        })
    }

    /// RFC 7592 §2.2: replaces the metadata after validating everything
    /// again, as at registration. Tokens already issued stay valid.
    pub async fn update<S, F>(
        &self,
        store: &S,
        resolver: &JwksResolver<F>,
        client_id: &str,
        req: RegistrationRequest<'_>,
        now: i64,
    ) -> Result<Registered, DcrError>
    where
        S: ClientRepository + ReplayCache + TokenRepository,
        F: JwksFetcher,
    {
        let old = self
            .authorize(store, client_id, req.bearer, req.certificate, now)
            .await?;
        let ev = self
            .evaluate(store, resolver, req, now, Some(&old), client_id)
            .await?;
        if old.software_id.is_some() && ev.metadata.software_id != old.software_id {
            return Err(metadata_error(
                "software_id cannot change: register the other software separately",
            )
            .into());
        }
        let client = Client::new(ev.metadata.clone(), None)?;
        let mut rec = client.to_record(ORIGIN, now);
        rec.created_at = old.created_at;
        rec.registration_token_hash = old.registration_token_hash.clone();
        store
            .put_client_spending(rec.clone(), jti_entry(&ev, now), now)
            .await
            .map_err(OAuthError::from)?;
        if let Ok(prev) = Client::from_record(&old)
            && let Some(uri) = prev.metadata.jwks_uri
        {
            resolver.invalidate(&uri);
        }
        tracing::info!(client_id = %client_id, "client registration updated");
        Ok(Registered {
            status: 200,
            body: self.document(
                &rec,
                &ev.metadata,
                ev.ssa.as_ref(),
                &ev.rules,
                req.bearer.filter(|_| rec.registration_token_hash.is_some()),
            ),
            client_id: client_id.to_owned(),
        })
    }

    /// RFC 7592 §2.3: deletes the client; its grants and tokens are revoked
    /// in the same transaction.
    pub async fn delete<S>(
        &self,
        store: &S,
        client_id: &str,
        bearer: Option<&str>,
        certificate: Option<&PeerCertificate>,
        now: i64,
    ) -> Result<(), DcrError>
    where
        S: ClientRepository + TokenRepository,
    {
        let rec = self
            .authorize(store, client_id, bearer, certificate, now)
            .await?;
        store
            .delete_client(&rec.client_id, now)
            .await
            .map_err(OAuthError::from)?;
        tracing::info!(client_id = %client_id, "client registration deleted");
        Ok(())
    }

    /// Authenticates a management call (RFC 7592 §3): the registration
    /// access token of the client, or (UK OB DCR v3.3) an access token of
    /// a client_credentials grant of that client. A token that belongs to
    /// another client, or names an unknown client, is revoked. Every
    /// failure is the same 401, so the answer does not tell which clients
    /// exist.
    async fn authorize<S>(
        &self,
        store: &S,
        client_id: &str,
        bearer: Option<&str>,
        certificate: Option<&PeerCertificate>,
        now: i64,
    ) -> Result<ClientRecord, DcrError>
    where
        S: ClientRepository + TokenRepository,
    {
        const DENIED: &str = "the access token is not valid for this client registration";
        let Some(token) = bearer.filter(|t| !t.is_empty()) else {
            return Err(unauthorized(
                "a bearer token is required (the registration access token, or a client_credentials access token of this client)",
            ));
        };
        let hash = hash_secret(token);
        let rec = store
            .get_client(client_id)
            .await
            .map_err(OAuthError::from)?
            .filter(|r| r.origin == ORIGIN);
        if let Some(r) = &rec
            && let Some(expected) = &r.registration_token_hash
        {
            return if constant_time_eq(hash.as_bytes(), expected.as_bytes()) {
                Ok(r.clone())
            } else {
                Err(unauthorized(DENIED))
            };
        }
        let Some(tok) = store
            .get_active_token(&hash, now)
            .await
            .map_err(OAuthError::from)?
        else {
            return Err(unauthorized(DENIED));
        };
        let cert_ok = match &tok.cnf_x5t {
            Some(x5t) => {
                certificate.is_some_and(|c| constant_time_eq(c.x5t_s256.as_bytes(), x5t.as_bytes()))
            }
            None => true,
        };
        match rec {
            Some(r)
                if tok.client_id == r.client_id
                    && tok.kind == TokenKind::Access
                    && tok.sub.is_none()
                    && tok.grant_id.is_none()
                    && cert_ok =>
            {
                Ok(r)
            }
            _ => {
                if tok.client_id != client_id {
                    tracing::warn!(token_client = %tok.client_id, path_client = %client_id,
                        "registration management with another client's token; revoking it");
                    store
                        .revoke_token(&hash, false, now)
                        .await
                        .map_err(OAuthError::from)?;
                }
                Err(unauthorized(DENIED))
            }
        }
    }

    /// The client information response (RFC 7591 §3.2.1).
    fn document(
        &self,
        rec: &ClientRecord,
        metadata: &ClientMetadata,
        ssa: Option<&SoftwareStatement>,
        rules: &Rules,
        rat: Option<&str>,
    ) -> Value {
        let mut doc = match serde_json::to_value(metadata) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        };
        doc.remove("fapi");
        doc.insert("client_id_issued_at".into(), json!(rec.created_at));
        doc.insert(
            "registration_client_uri".into(),
            json!(format!("{}/{}", self.endpoint_url, rec.client_id)),
        );
        if let Some(rat) = rat {
            doc.insert("registration_access_token".into(), json!(rat));
        }
        if let Some(ssa) = ssa {
            doc.insert("software_statement".into(), json!(ssa.jwt));
            if rules.flatten_ssa_claims {
                for (k, v) in &ssa.claims {
                    if !matches!(k.as_str(), "iss" | "iat" | "exp" | "jti") {
                        doc.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
            }
        }
        Value::Object(doc)
    }

    /// The request's claims, as JSON or a JWS's payload; like all text from
    /// outside (`oauth_core::text`), its strings may hold no control
    /// character, since its identifiers become database keys.
    fn parse_body(&self, req: &RegistrationRequest<'_>) -> Result<Body, OAuthError> {
        let body = self.parse_body_format(req)?;
        if !body
            .claims
            .iter()
            .all(|(k, v)| oauth_core::text::is_clean(k) && oauth_core::text::json_is_clean(v))
        {
            return Err(metadata_error(
                "the registration request holds a control character",
            ));
        }
        Ok(body)
    }

    fn parse_body_format(&self, req: &RegistrationRequest<'_>) -> Result<Body, OAuthError> {
        if req.body.len() > self.settings.max_body_bytes {
            return Err(OAuthError::invalid_request(format!(
                "the registration request is {} bytes; at most {} are accepted",
                req.body.len(),
                self.settings.max_body_bytes
            )));
        }
        let ct = req
            .content_type
            .and_then(|c| c.split(';').next())
            .map(|c| c.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match ct.as_str() {
            "application/jwt" | "application/jose" => {
                let text = std::str::from_utf8(req.body)
                    .map_err(|_| metadata_error("the registration request JWT is not text"))?
                    .trim();
                let claims = ssa::unverified_claims(text).ok_or_else(|| {
                    metadata_error(
                        "the registration request is not a JWS compact serialisation with a JSON object payload",
                    )
                })?;
                Ok(Body {
                    format: RequestFormat::Jwt,
                    claims,
                    jwt: Some(text.to_owned()),
                })
            }
            "application/json" => match serde_json::from_slice::<Value>(req.body) {
                Ok(Value::Object(claims)) => Ok(Body {
                    format: RequestFormat::Json,
                    claims,
                    jwt: None,
                }),
                _ => Err(metadata_error(
                    "the registration request is not a JSON object (RFC 7591 §3.1)",
                )),
            },
            _ => Err(OAuthError::invalid_request(
                "Content-Type must be application/jwt (signed request) or application/json (RFC 7591)",
            )),
        }
    }

    fn initial_access_token_ok(&self, bearer: Option<&str>) -> bool {
        let Some(t) = bearer else { return false };
        let h = hash_secret(t);
        self.settings
            .initial_access_tokens_sha256
            .iter()
            .fold(false, |ok, want| {
                ok | constant_time_eq(h.as_bytes(), want.as_bytes())
            })
    }

    /// The one validation pipeline of POST and PUT: the request and its
    /// software statement, then the connection's certificate against the
    /// keys being registered for `self_signed_tls_client_auth`.
    async fn evaluate<S, F>(
        &self,
        store: &S,
        resolver: &JwksResolver<F>,
        req: RegistrationRequest<'_>,
        now: i64,
        existing: Option<&ClientRecord>,
        client_id: &str,
    ) -> Result<Evaluated, DcrError>
    where
        S: ClientRepository + ReplayCache + TokenRepository,
        F: JwksFetcher,
    {
        let _ = store;
        let ev = self
            .evaluate_request(resolver, req, now, existing, client_id)
            .await?;
        self_signed_certificate(resolver, &ev.metadata, req.certificate, now).await?;
        oauth_core::subject::check_sector_identifier_uri(resolver.fetcher(), &ev.metadata).await?;
        Ok(ev)
    }

    async fn evaluate_request<F: JwksFetcher>(
        &self,
        resolver: &JwksResolver<F>,
        req: RegistrationRequest<'_>,
        now: i64,
        existing: Option<&ClientRecord>,
        client_id: &str,
    ) -> Result<Evaluated, DcrError> {
        let body = self.parse_body(&req)?;
        if let Some(id) = body.claims.get("client_id")
            && existing.is_some()
            && id.as_str() != Some(client_id)
        {
            return Err(metadata_error("client_id in the body does not match the URL").into());
        }
        let Some(ssa_jwt) = body.claims.get("software_statement") else {
            return self.evaluate_without_ssa(&req, body, existing, client_id);
        };
        let ssa_jwt = ssa_jwt
            .as_str()
            .ok_or_else(|| ssa_error("software_statement must be a JWT string"))?;
        let (dir, ssa) = ssa::verify(&self.directories, resolver, ssa_jwt, now).await?;
        let rules = dir.rules.clone();
        if dir.cfg.format() != body.format {
            return Err(metadata_error(match dir.cfg.format() {
                RequestFormat::Jwt => format!(
                    "software from directory {} registers with a signed JWT (Content-Type application/jwt)",
                    dir.cfg.name
                ),
                RequestFormat::Json => format!(
                    "software from directory {} registers with RFC 7591 JSON (Content-Type application/json)",
                    dir.cfg.name
                ),
            })
            .into());
        }
        if dir.cfg.require_initial_access_token && !self.initial_access_token_ok(req.bearer) {
            return Err(unauthorized(
                "an initial access token is required (RFC 7591 §3)",
            ));
        }
        let cert = certificate(req.certificate, now)?;
        ssa::check_certificate(&rules, &ssa, cert)?;
        let (claims, jti) = match &body.jwt {
            Some(jwt) => {
                let verified = ssa::verify_request(
                    dir,
                    &ssa,
                    resolver,
                    jwt,
                    &[
                        Some(self.issuer.as_str()),
                        Some(self.endpoint_url.as_str()),
                        dir.cfg.aspsp_id.as_deref(),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>(),
                    now,
                )
                .await?;
                let jti = verified
                    .get("jti")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .zip(verified.get("exp").and_then(Value::as_i64));
                (verified, jti)
            }
            None => (body.claims, None),
        };
        let allowed = ssa.allowed_scopes(&dir.cfg);
        let metadata = build_metadata(
            &rules,
            Some(&ssa),
            &claims,
            Some(cert),
            client_id,
            &dir.algs,
            &allowed,
            self.ciba,
            self.profile,
        )?;
        Ok(Evaluated {
            metadata,
            rules,
            ssa: Some(ssa),
            jti,
        })
    }

    /// RFC 7591 without a software statement: only with an initial access
    /// token (POST) or the management token (PUT of such a client).
    fn evaluate_without_ssa(
        &self,
        req: &RegistrationRequest<'_>,
        body: Body,
        existing: Option<&ClientRecord>,
        client_id: &str,
    ) -> Result<Evaluated, DcrError> {
        if existing.is_some_and(|r| r.software_id.is_some()) {
            return Err(ssa_error(
                "this client was registered with a software statement: send a current software_statement with the update",
            )
            .into());
        }
        if self.settings.initial_access_tokens_sha256.is_empty() {
            return Err(ssa_error(
                "a software_statement signed by a trusted directory is required",
            )
            .into());
        }
        if existing.is_none() && !self.initial_access_token_ok(req.bearer) {
            return Err(unauthorized(
                "without a software_statement, registration needs a valid initial access token (RFC 7591 §3)",
            ));
        }
        if body.format != RequestFormat::Json {
            return Err(metadata_error(
                "without a software statement, send RFC 7591 JSON (Content-Type application/json)",
            )
            .into());
        }
        let rules = RulePack::Rfc7591.rules();
        let algs = [JwsAlg::PS256, JwsAlg::ES256];
        let metadata = build_metadata(
            &rules,
            None,
            &body.claims,
            req.certificate,
            client_id,
            &algs,
            &self.settings.initial_access_scopes,
            self.ciba,
            self.profile,
        )?;
        Ok(Evaluated {
            metadata,
            rules,
            ssa: None,
            jti: None,
        })
    }
}

/// The management rules of a stored client: RAT when it has one.
fn rules_for(rec: &ClientRecord) -> Rules {
    if rec.registration_token_hash.is_some() {
        RulePack::Rfc7591.rules()
    } else {
        RulePack::UkOb.rules()
    }
}

/// RFC 8705 §2.2 at registration: a `self_signed_tls_client_auth` client
/// registers over a connection with its certificate, whose public key must
/// be one of the keys being registered (`jwks`, or the set at `jwks_uri`),
/// tested as client authentication will test it
/// ([`certificate_key_registered`]). Whether the certificate chains to a CA
/// does not matter. Nothing to check for other methods.
async fn self_signed_certificate<F: JwksFetcher>(
    resolver: &JwksResolver<F>,
    metadata: &ClientMetadata,
    cert: Option<&PeerCertificate>,
    now: i64,
) -> Result<(), OAuthError> {
    if metadata.token_endpoint_auth_method != AuthMethod::SelfSignedTlsClientAuth {
        return Ok(());
    }
    let cert = cert.ok_or_else(|| {
        metadata_error(
            "self_signed_tls_client_auth needs the client certificate on this connection (use the mTLS endpoint)",
        )
    })?;
    let client = Client::new(metadata.clone(), None)?;
    match certificate_key_registered(resolver, &client, cert, now).await {
        Ok(()) => Ok(()),
        Err(KeyLookupError::Unavailable) => Err(metadata_error(format!(
            "jwks_uri {} could not be fetched, so the certificate on this connection cannot be checked against its keys",
            metadata.jwks_uri.as_deref().unwrap_or("")
        ))),
        Err(KeyLookupError::NoKeys) => Err(metadata_error(
            "self_signed_tls_client_auth needs jwks or jwks_uri holding the public key of the client certificate",
        )),
        Err(_) => Err(metadata_error(format!(
            "self_signed_tls_client_auth: the public key of the certificate on this connection ({}, x5t#S256 {}) is not among the keys registered in {}",
            cert.subject_dn,
            cert.x5t_s256,
            if metadata.jwks_uri.is_some() {
                "jwks_uri"
            } else {
                "jwks"
            }
        ))),
    }
}

/// The connection's certificate, which SSA registrations require: chained to
/// the configured client CA and within its validity.
fn certificate(cert: Option<&PeerCertificate>, now: i64) -> Result<&PeerCertificate, OAuthError> {
    let cert = cert.ok_or_else(|| {
        OAuthError::invalid_request(
            "registration requires the TPP's transport certificate on the TLS connection (use the mTLS endpoint)",
        )
    })?;
    if !cert.ca_verified || !cert.is_valid_at(now) {
        return Err(OAuthError::invalid_request(
            "the client certificate on this connection is not trusted (unknown issuer, or expired)",
        ));
    }
    Ok(cert)
}

fn opt_str<'a>(claims: &'a Map<String, Value>, k: &str) -> Result<Option<&'a str>, OAuthError> {
    match claims.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(metadata_error(format!("{k} must be a string"))),
    }
}

fn opt_str_list(claims: &Map<String, Value>, k: &str) -> Result<Option<Vec<String>>, OAuthError> {
    match claims.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| metadata_error(format!("{k} must be an array of strings")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(metadata_error(format!("{k} must be an array of strings"))),
    }
}

fn opt_bool(claims: &Map<String, Value>, k: &str) -> Result<Option<bool>, OAuthError> {
    match claims.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(metadata_error(format!("{k} must be true or false"))),
    }
}

/// Request claims + SSA → client metadata, with the rule pack's checks.
/// Everything the client would otherwise only learn at its first flow is
/// refused here, with a description of what to fix.
#[allow(clippy::too_many_arguments)]
fn build_metadata(
    rules: &Rules,
    ssa: Option<&SoftwareStatement>,
    claims: &Map<String, Value>,
    cert: Option<&PeerCertificate>,
    client_id: &str,
    algs: &[JwsAlg],
    allowed_scopes: &[String],
    ciba: bool,
    deployment: Profile,
) -> Result<ClientMetadata, OAuthError> {
    let alg_names: Vec<&str> = algs.iter().map(|a| a.as_str()).collect();
    let mut m = Map::new();
    m.insert("client_id".into(), json!(client_id));

    // software_id (UK: if present, must equal the SSA's).
    if let Some(ssa) = ssa {
        if let Some(sid) = opt_str(claims, "software_id")?
            && sid != ssa.software_id
        {
            return Err(metadata_error(format!(
                "software_id {sid} differs from the software statement's ({})",
                ssa.software_id
            )));
        }
        m.insert("software_id".into(), json!(ssa.software_id));
        if let Some(v) = ssa.str_claim("software_version") {
            m.insert("software_version".into(), json!(v));
        }
    }

    // Redirect URIs: https, within the SSA's.
    let ssa_uris = ssa.map(|s| s.redirect_uris()).unwrap_or_default();
    let uris = match opt_str_list(claims, "redirect_uris")? {
        Some(u) => u,
        None if rules.redirect_uris_default_from_ssa => ssa_uris.clone(),
        None => Vec::new(),
    };
    for uri in &uris {
        let u = url::Url::parse(uri)
            .map_err(|_| redirect_error(format!("redirect_uri {uri} is not an absolute URL")))?;
        if u.scheme() != "https" {
            return Err(redirect_error(format!("redirect_uri {uri} must use https")));
        }
        if rules.forbid_localhost_redirects
            && matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
        {
            return Err(redirect_error(format!(
                "redirect_uri {uri} points to localhost, which this ecosystem forbids"
            )));
        }
        if uri.len() > 256 && rules.forbid_localhost_redirects {
            return Err(redirect_error(format!(
                "redirect_uri {uri} is longer than 256 characters"
            )));
        }
        if ssa.is_some() && !ssa_uris.contains(uri) {
            return Err(redirect_error(format!(
                "redirect_uri {uri} is not among the software statement's software_redirect_uris"
            )));
        }
    }
    m.insert("redirect_uris".into(), json!(uris));

    // Token endpoint authentication.
    let method_name = opt_str(claims, "token_endpoint_auth_method")?.ok_or_else(|| {
        metadata_error(format!(
            "token_endpoint_auth_method is required ({})",
            methods_list(rules)
        ))
    })?;
    let method: AuthMethod = serde_json::from_value(json!(method_name))
        .ok()
        .filter(|m| rules.auth_methods.contains(m))
        .ok_or_else(|| {
            metadata_error(format!(
                "token_endpoint_auth_method {method_name} is not allowed: use {}",
                methods_list(rules)
            ))
        })?;
    m.insert("token_endpoint_auth_method".into(), json!(method_name));
    for name in [
        "token_endpoint_auth_signing_alg",
        "id_token_signed_response_alg",
        "request_object_signing_alg",
        "authorization_signed_response_alg",
        "userinfo_signed_response_alg",
    ] {
        if let Some(alg) = opt_str(claims, name)? {
            if !alg_names.contains(&alg) {
                return Err(metadata_error(format!(
                    "{name} {alg} is not allowed: use {}",
                    alg_names.join(" or ")
                )));
            }
            m.insert(name.into(), json!(alg));
        }
    }
    // OIDC Registration §2 response encryption; the algorithms and the
    // client's use:enc key are checked with the rest by `Client::new`.
    for name in [
        "id_token_encrypted_response_alg",
        "id_token_encrypted_response_enc",
        "userinfo_encrypted_response_alg",
        "userinfo_encrypted_response_enc",
    ] {
        if let Some(v) = opt_str(claims, name)? {
            m.insert(name.into(), json!(v));
        }
    }
    if method == AuthMethod::PrivateKeyJwt
        && rules.require_auth_signing_alg
        && !m.contains_key("token_endpoint_auth_signing_alg")
    {
        return Err(metadata_error(format!(
            "token_endpoint_auth_signing_alg is required with private_key_jwt ({})",
            alg_names.join(" or ")
        )));
    }
    if method == AuthMethod::TlsClientAuth {
        let dn_text = opt_str(claims, "tls_client_auth_subject_dn")?.ok_or_else(|| {
            metadata_error("tls_client_auth_subject_dn is required with tls_client_auth")
        })?;
        let dn = DistinguishedName::parse_rfc4514(dn_text).map_err(|_| {
            metadata_error(format!(
                "tls_client_auth_subject_dn {dn_text} is not an RFC 4514 distinguished name"
            ))
        })?;
        let cert = cert.ok_or_else(|| {
            metadata_error("tls_client_auth needs the client certificate on this connection")
        })?;
        // RFC 8705 §2.1: PKI authentication, so only a certificate that
        // chains to the client CA vouches for the subject.
        if !cert.ca_verified {
            return Err(metadata_error(format!(
                "tls_client_auth needs a client certificate issued by a trusted CA; the one on this connection ({}, issued by {}) is not",
                cert.subject_dn, cert.issuer_dn
            )));
        }
        if !cert.subject.matches(&dn) {
            return Err(metadata_error(format!(
                "tls_client_auth_subject_dn {dn_text} does not match the subject of the certificate on this connection ({})",
                cert.subject_dn
            )));
        }
        m.insert("tls_client_auth_subject_dn".into(), json!(dn_text));
    }

    // Grants and response types.
    let grants =
        opt_str_list(claims, "grant_types")?.unwrap_or_else(|| vec!["authorization_code".into()]);
    if grants.is_empty() {
        return Err(metadata_error("grant_types must not be empty"));
    }
    let mut offered = GRANT_TYPES.to_vec();
    if ciba {
        offered.push(CIBA_GRANT);
    }
    for g in &grants {
        if !offered.contains(&g.as_str()) {
            return Err(metadata_error(format!(
                "grant_type {g} is not supported: use {}",
                offered.join(", ")
            )));
        }
    }
    m.insert("grant_types".into(), json!(grants));
    // CIBA Core §4 client metadata, checked with the rest by
    // `ClientMetadata::validate` (modes, endpoint, FAPI-CIBA's no push).
    if ciba {
        for k in [
            "backchannel_token_delivery_mode",
            "backchannel_client_notification_endpoint",
            "backchannel_authentication_request_signing_alg",
        ] {
            if let Some(v) = opt_str(claims, k)? {
                m.insert(k.into(), json!(v));
            }
        }
        if let Some(b) = opt_bool(claims, "backchannel_user_code_parameter")? {
            m.insert("backchannel_user_code_parameter".into(), json!(b));
        }
    }
    // Strongroom's fapi_profile: asked for, or the rule pack's on a FAPI
    // 1.0 deployment; the response types follow from it (UK DCR 3.3:
    // `code id_token` by default).
    let fapi_profile = match opt_str(claims, "fapi_profile")? {
        Some(p) => Some(
            serde_json::from_value::<Profile>(json!(p)).map_err(|_| {
                metadata_error(format!(
                    "fapi_profile {p} is not known (fapi2, fapi2-message-signing, fapi1-advanced or uk-ob)"
                ))
            })?,
        ),
        None if !deployment.is_fapi2() => rules.fapi1_profile,
        None => None,
    };
    let profile = fapi_profile.unwrap_or(deployment);
    let served = profile.response_types();
    let response_types = opt_str_list(claims, "response_types")?.unwrap_or_else(|| {
        let default = if served.contains(&"code") {
            "code"
        } else {
            served[0]
        };
        vec![default.into()]
    });
    for r in &response_types {
        if !served.contains(&r.as_str()) {
            return Err(metadata_error(format!(
                "response_type {r} is not supported under profile {}: use {}",
                profile.as_str(),
                served.join(" or ")
            )));
        }
    }
    m.insert("response_types".into(), json!(response_types));
    if let Some(p) = fapi_profile {
        m.insert("fapi_profile".into(), json!(p.as_str()));
    }

    // Scope within what the roles allow.
    let scope = match opt_str(claims, "scope")? {
        Some(s) => {
            let requested: Vec<&str> = s.split_whitespace().collect();
            for sc in &requested {
                if !allowed_scopes.iter().any(|a| a == sc) {
                    return Err(metadata_error(match ssa.and_then(|s| s.role_for(sc)) {
                        Some(role) => format!(
                            "scope {sc} needs the software role {role}, which the software statement does not grant"
                        ),
                        None => format!(
                            "scope {sc} is not available to this software (allowed: {})",
                            allowed_scopes.join(" ")
                        ),
                    }));
                }
            }
            requested.join(" ")
        }
        None => allowed_scopes.join(" "),
    };
    m.insert("scope".into(), json!(scope));

    if let Some(t) = opt_str(claims, "application_type")? {
        if !matches!(t, "web" | "mobile" | "native") {
            return Err(metadata_error(format!(
                "application_type {t} is not supported: use web or mobile"
            )));
        }
        m.insert("application_type".into(), json!(t));
    }

    // The subject (OIDC Registration §2 `subject_type`,
    // `sector_identifier_uri`; Strongroom's `subject`), checked by
    // ClientMetadata::validate and, for the sector document, in `evaluate`.
    for name in ["subject_type", "sector_identifier_uri", "subject"] {
        if let Some(v) = opt_str(claims, name)? {
            m.insert(name.into(), json!(v));
        }
    }
    if let Some(s) = m.get("subject").and_then(Value::as_str)
        && serde_json::from_value::<oauth_core::subject::SubjectKind>(json!(s)).is_err()
    {
        return Err(metadata_error(format!(
            "subject {s} is not known (customer, pairwise or consent)"
        )));
    }

    // Keys: from the directory (jwks_uri of the SSA) or, where allowed, inline.
    let ssa_jwks_uri = ssa.and_then(|s| s.jwks_uri());
    if claims.get("jwks").is_some_and(|v| !v.is_null()) && rules.forbid_jwks_by_value {
        return Err(metadata_error(
            "jwks by value is not accepted: the keys come from the software statement's software_jwks_endpoint",
        ));
    }
    let req_jwks_uri = opt_str(claims, "jwks_uri")?;
    if let Some(u) = req_jwks_uri
        && rules.jwks_uri_must_match_ssa
        && Some(u) != ssa_jwks_uri.as_deref()
    {
        return Err(metadata_error(format!(
            "jwks_uri {u} must be the software statement's software_jwks_endpoint ({})",
            ssa_jwks_uri.as_deref().unwrap_or("none")
        )));
    }
    if let Some(u) = req_jwks_uri.map(str::to_owned).or(ssa_jwks_uri) {
        m.insert("jwks_uri".into(), json!(u));
    } else if let Some(j) = claims.get("jwks").filter(|v| !v.is_null()) {
        m.insert("jwks".into(), j.clone());
    } else if let Some(j) = ssa.and_then(|s| s.claims.get("software_jwks")) {
        m.insert("jwks".into(), j.clone());
    }

    // Descriptive members: the request's, else the SSA's.
    for (name, ssa_name) in [
        ("client_name", "software_client_name"),
        ("client_uri", "software_client_uri"),
        ("logo_uri", "software_logo_uri"),
        ("policy_uri", "software_policy_uri"),
        ("tos_uri", "software_tos_uri"),
    ] {
        let v = opt_str(claims, name)?
            .map(str::to_owned)
            .or_else(|| ssa.and_then(|s| s.str_claim(ssa_name)));
        if let Some(v) = v {
            m.insert(name.into(), json!(v));
        }
    }
    if let Some(c) = opt_str_list(claims, "contacts")? {
        m.insert("contacts".into(), json!(c));
    }

    // Sender constraint: DPoP if asked for, else certificate-bound tokens.
    let dpop = opt_bool(claims, "dpop_bound_access_tokens")?.unwrap_or(false);
    m.insert("dpop_bound_access_tokens".into(), json!(dpop));
    let mtls_bound =
        opt_bool(claims, "tls_client_certificate_bound_access_tokens")?.unwrap_or(!dpop);
    m.insert(
        "tls_client_certificate_bound_access_tokens".into(),
        json!(mtls_bound),
    );
    if let Some(b) = opt_bool(claims, "require_pushed_authorization_requests")? {
        m.insert("require_pushed_authorization_requests".into(), json!(b));
    }

    let metadata: ClientMetadata = serde_json::from_value(Value::Object(m))
        .map_err(|e| metadata_error(format!("client metadata is not acceptable: {e}")))?;
    metadata.validate_for(deployment)?;
    Ok(metadata)
}

fn methods_list(rules: &Rules) -> String {
    rules
        .auth_methods
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(" or ")
}

/// The signed request's `jti` as a replay entry (keyed by software, so two
/// programs' `jti`s never collide), kept until a minute after the request
/// expires; none for an unsigned request.
fn jti_entry(ev: &Evaluated, now: i64) -> Vec<ReplayEntry> {
    ev.jti
        .iter()
        .map(|(jti, exp)| ReplayEntry {
            kind: ReplayKind::Registration,
            value: format!("{}:{jti}", ev.metadata.software_id.as_deref().unwrap_or("")),
            expires_at: (*exp).max(now) + 60,
        })
        .collect()
}

#[cfg(test)]
mod tests;
