//! The back-channel endpoints: PAR, token, userinfo, introspection,
//! revocation. Each handler extracts the typed inputs (form parameters,
//! client-authentication evidence, the client certificate, DPoP proofs),
//! calls one protocol function and maps the outcome.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use oauth_core::cert::PeerCertificate;
use oauth_core::client::AuthenticatedClient;
use oauth_core::client_auth::{ClientAuthRequest, Endpoint};
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::replay::DeferredReplay;
use oauth_core::secret::now;
use oauth_core::sender_constraint::dpop::DpopCheck;
use oauth_core::storage::{ClientRepository, ReplayCache, StoreError};
use oauth_core::userinfo::{AuthScheme, ResourceError};

use crate::http::{ApiError, AppState};

/// The form body as an ordered multimap (duplicates are the pipeline's to
/// refuse, RFC 6749 §3.1); badly encoded text and control characters are
/// refused here, where parameters enter (`oauth_core::text`).
pub fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, OAuthError> {
    oauth_core::text::parse_form(body)
}

/// The one value of parameter `name` (empty counts as absent); repeated is
/// `invalid_request` (RFC 6749 §3.1).
pub(crate) fn single<'a>(
    form: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, OAuthError> {
    let mut values = form
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str());
    let first = values.next();
    if values.next().is_some() {
        return Err(OAuthError::invalid_request(format!(
            "parameter {name} is repeated"
        )));
    }
    Ok(first.filter(|v| !v.is_empty()))
}

/// Every value of the `DPoP` header (there must be at most one).
fn dpop_headers(req: &HttpRequest) -> Vec<&str> {
    req.headers()
        .get_all("dpop")
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// Authenticates the client at `endpoint` from the request's evidence;
/// `store` is the state's, or a [`DeferredReplay`] over it.
async fn authenticate<S: ClientRepository + ReplayCache>(
    state: &AppState,
    store: &S,
    req: &HttpRequest,
    form: &[(String, String)],
    endpoint: Endpoint,
    cert: Option<&PeerCertificate>,
) -> Result<AuthenticatedClient, OAuthError> {
    let basic = match req.headers().get(header::AUTHORIZATION) {
        Some(v) => oauth_core::client_auth::decode_basic_authorization(
            v.to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?,
        )?,
        None => None,
    };
    let url = state.urls.request_url(req);
    let token_urls: Vec<&str> = state
        .urls
        .token_endpoint_urls()
        .iter()
        .map(String::as_str)
        .collect();
    let auth = ClientAuthRequest {
        endpoint,
        endpoint_url: &url,
        token_endpoint_urls: &token_urls,
        client_id: single(form, "client_id")?,
        client_assertion_type: single(form, "client_assertion_type")?,
        client_assertion: single(form, "client_assertion")?,
        basic: basic.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
        client_secret: single(form, "client_secret")?,
        certificate: cert,
    };
    oauth_core::client_auth::authenticate(store, &state.jwks, &state.policy(), auth).await
}

async fn verify_dpop<S: ReplayCache>(
    state: &AppState,
    store: &S,
    req: &HttpRequest,
    access_token: Option<&str>,
) -> Result<Option<oauth_core::authorization::DpopProof>, OAuthError> {
    let proofs = dpop_headers(req);
    let url = state.urls.request_url(req);
    let check = DpopCheck {
        proofs: &proofs,
        htm: req.method().as_str(),
        htu: &url,
        access_token,
        nonce_required: state.policy().require_dpop_nonce,
    };
    oauth_core::sender_constraint::dpop::verify_proof(
        store,
        &state.policy(),
        &state.dpop_nonces,
        check,
        now(),
    )
    .await
}

pub(crate) fn json_no_store(
    status: actix_web::http::StatusCode,
    body: &impl serde::Serialize,
) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body)
}

/// RFC 6749 §5.2: a client that tried HTTP Basic gets its 401 with a
/// `WWW-Authenticate: Basic` challenge.
fn client_error(req: &HttpRequest, e: OAuthError) -> ApiError {
    let tried_basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    ApiError {
        basic_challenge: tried_basic && e.code == ErrorCode::InvalidClient,
        error: e,
        retry_after: None,
    }
}

/// The start of every client-authenticated endpoint: the form, the client
/// certificate on this connection, and the authenticated client.
pub(crate) struct Caller {
    pub(crate) form: Vec<(String, String)>,
    pub(crate) cert: Option<std::sync::Arc<PeerCertificate>>,
    pub(crate) client: AuthenticatedClient,
}

async fn caller<S: ClientRepository + ReplayCache>(
    state: &AppState,
    store: &S,
    req: &HttpRequest,
    body: &[u8],
    endpoint: Endpoint,
) -> Result<Caller, ApiError> {
    check_source(state, req)?;
    caller_with(state, store, req, parse_form(body)?, endpoint).await
}

/// The source address's share of the rate limits (`crate::limits`),
/// taken before any signature (DPoP proof, client assertion) is checked.
pub(crate) fn check_source(state: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    state.limits.check_source(req.peer_addr().map(|a| a.ip()))
}

/// [`caller`] with the form already parsed and the source's share taken.
async fn caller_with<S: ClientRepository + ReplayCache>(
    state: &AppState,
    store: &S,
    req: &HttpRequest,
    form: Vec<(String, String)>,
    endpoint: Endpoint,
) -> Result<Caller, ApiError> {
    let cert = crate::tls::peer_certificate(req);
    let client = match authenticate(state, store, req, &form, endpoint, cert.as_deref()).await {
        Ok(client) => client,
        Err(e) => {
            crate::telemetry::client_auth_failed(endpoint.as_str());
            // The client_id only when it names a registered client: the
            // request's own value is client-supplied text.
            tracing::warn!(
                target: "strongroom::security",
                event = "client_authentication_failed",
                endpoint = endpoint.as_str(),
                error = e.code.as_str(),
                "client authentication failed"
            );
            return Err(client_error(req, e));
        }
    };
    tracing::Span::current().record("client_id", client.client.id());
    crate::telemetry::record_client(req, client.client.id());
    state.limits.check_client(client.client.id())?;
    Ok(Caller { form, cert, client })
}

/// The start of the token and PAR endpoints: the DPoP proof and the client
/// checked, and a store that records both `jti`s with the request's first
/// write (`Store::carrying_replay`); end the request with [`settled`].
pub(crate) async fn single_use_caller(
    state: &AppState,
    req: &HttpRequest,
    body: &[u8],
    endpoint: Endpoint,
) -> Result<
    (
        Option<oauth_core::authorization::DpopProof>,
        Caller,
        token_store::Store,
    ),
    ApiError,
> {
    check_source(state, req)?;
    let replay = DeferredReplay::new(&state.store);
    let dpop = verify_dpop(state, &replay, req, None).await?;
    let caller = caller_with(state, &replay, req, parse_form(body)?, endpoint).await?;
    let store = state.store.carrying_replay(replay.into_entries(), now());
    Ok((dpop, caller, store))
}

/// The `token` and `token_type_hint` of introspection and revocation.
fn token_param(form: &[(String, String)]) -> Result<(&str, Option<&str>), OAuthError> {
    let token =
        single(form, "token")?.ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    Ok((token, single(form, "token_type_hint")?))
}

/// `POST /par` (RFC 9126 §2).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn par(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (dpop, Caller { form, client, .. }, store) =
        single_use_caller(&state, &req, &body, Endpoint::Par).await?;
    let outcome = par::push(
        &store,
        &state.jwks,
        &state.keys,
        &state.policy(),
        &client,
        &form,
        dpop.as_ref(),
        now(),
    )
    .await;
    let res = settled(&store, outcome).await?;
    Ok(json_no_store(actix_web::http::StatusCode::CREATED, &res))
}

/// `POST /token` (RFC 6749 §3.2).
#[tracing::instrument(skip_all, fields(client_id, grant_type))]
pub async fn token(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The store records the jtis with the grant's first write (the code's
    // redemption, the refresh token's rotation, the new token), and before
    // the bank's claims hook is asked.
    let (dpop, Caller { form, cert, client }, store) =
        single_use_caller(&state, &req, &body, Endpoint::Token).await?;
    if single(&form, "grant_type").ok().flatten() == Some(ciba::GRANT_TYPE) {
        tracing::Span::current().record("grant_type", ciba::GRANT_TYPE);
        let binding = oauth_core::grant::Binding {
            dpop,
            x5t_s256: cert.as_ref().map(|c| c.x5t_s256.clone()),
        };
        let outcome = crate::ciba::redeem(&state, &store, &client, &form, binding).await;
        let res = settled(&store, outcome).await?;
        crate::telemetry::token_issued(ciba::GRANT_TYPE, client.client.id());
        return Ok(json_no_store(actix_web::http::StatusCode::OK, &res));
    }
    let mut grant_type = None;
    let outcome = async {
        let token_request = oauth_core::grant::TokenRequest::from_form(&form)?;
        grant_type = Some(token_request.grant_type.as_str());
        tracing::Span::current().record("grant_type", token_request.grant_type.as_str());
        let binding = oauth_core::grant::Binding {
            dpop,
            x5t_s256: cert.as_ref().map(|c| c.x5t_s256.clone()),
        };
        let hook = SettledFirst {
            store: &store,
            bridge: state.bridge(),
        };
        oauth_core::grant::exchange_with_claims(
            &store,
            &state.keys,
            &state.policy(),
            &client,
            token_request,
            binding,
            &hook,
            // Asked for the client's encryption key only when an id_token
            // is issued, before the code or refresh token is spent: a
            // client whose key is gone keeps them for after it fixed that.
            state.jwks.as_ref(),
            now(),
        )
        .await
    }
    .await;
    let res = settled(&store, outcome).await?;
    if let Some(grant_type) = grant_type {
        crate::telemetry::token_issued(grant_type, client.client.id());
    }
    Ok(json_no_store(actix_web::http::StatusCode::OK, &res))
}

/// The outcome of a request that passed client authentication, once its
/// single-use values are recorded. A request that failed before any write
/// (a malformed grant, a scope the client may not have) still spends its
/// client assertion and DPoP proof, so they cannot be replayed with
/// another body; a replay found now is the answer then.
pub(crate) async fn settled<T>(
    store: &token_store::Store,
    outcome: Result<T, OAuthError>,
) -> Result<T, OAuthError> {
    match (outcome, store.settle_replay().await) {
        (_, Err(replayed @ StoreError::Replayed(_))) => Err(replayed.into()),
        (Ok(v), Ok(())) => Ok(v),
        // Never a success whose values were not recorded.
        (Ok(_), Err(e)) => Err(e.into()),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(unrecorded)) => {
            tracing::warn!(error = %unrecorded, "single-use values of a failed request not recorded");
            Err(e)
        }
    }
}

/// The consent bridge's token-claims hook (docs/hooks.md §6a), asked only
/// once the request's single-use values are recorded: the bank never hears
/// of a request that is refused as a replay.
pub(crate) struct SettledFirst<'a> {
    pub(crate) store: &'a token_store::Store,
    pub(crate) bridge: Option<Arc<consent_bridge::Bridge>>,
}

impl oauth_core::token::claims::ClaimsHook for SettledFirst<'_> {
    async fn token_claims(
        &self,
        query: &oauth_core::token::claims::ClaimsQuery<'_>,
    ) -> Result<Option<oauth_core::token::claims::ExtraClaims>, OAuthError> {
        let Some(bridge) = &self.bridge else {
            return Ok(None);
        };
        self.store.settle_replay().await?;
        bridge.token_claims(query).await
    }
}

/// `POST /introspect` (RFC 7662 §2).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn introspect(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // Nothing is read or answered before the caller is authenticated: a
    // caller that fails gets `invalid_client` whatever it asked. Its client
    // assertion's `jti` is then recorded in the same trip to the database
    // as the token is read (`Store::token_reads`), or on its own when the
    // request has no usable token.
    let replay = DeferredReplay::new(&state.store);
    let Caller { form, client, .. } =
        caller(&state, &replay, &req, &body, Endpoint::Introspection).await?;
    let now = now();
    let store = state.store.carrying_replay(replay.into_entries(), now);
    let reads = match token_param(&form) {
        Ok((token, _)) => store
            .token_reads(&oauth_core::secret::hash_secret(token), now, false)
            .await
            .map_err(OAuthError::from),
        Err(e) => settled(&store, Err(e)).await,
    }?;
    let res = oauth_core::introspection::answer(&state.policy(), &client, reads.token.as_ref());
    Ok(json_no_store(actix_web::http::StatusCode::OK, &res))
}

/// `POST /revoke` (RFC 7009 §2).
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn revoke(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    // The assertion's `jti` is recorded once the client's share of the
    // rate limits is taken: a request refused by them writes nothing.
    let replay = DeferredReplay::new(&state.store);
    let Caller { form, client, .. } =
        caller(&state, &replay, &req, &body, Endpoint::Revocation).await?;
    let store = state.store.carrying_replay(replay.into_entries(), now());
    settled(&store, Ok(())).await?;
    let (token, hint) = token_param(&form)?;
    let notice = revocation_notice(&state, client.client.id(), token).await;
    oauth_core::revocation::revoke(&state.store, &client, token, hint, now()).await?;
    // RFC 7009 §2.2: answered 200 whether or not the token was the
    // client's or active; the event records the request, not its effect.
    tracing::info!(
        target: "strongroom::security",
        event = "token_revocation",
        client_id = client.client.id(),
        token_type_hint = match hint {
            Some("access_token") => "access_token",
            Some("refresh_token") => "refresh_token",
            _ => "none",
        },
        "a client revoked a token"
    );
    if let (Some(bridge), Some(notice)) = (state.bridge(), notice) {
        // Never blocks or fails the TPP's revocation (docs/hooks.md §7a).
        actix_web::rt::spawn(async move {
            bridge.notify_revocation(&notice).await;
        });
    }
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish())
}

/// The consent bridge's revocation notice for `token`, when a webhook is
/// configured and the token is the caller's own, active, and issued under a
/// consent. Looked up before the revocation (afterwards it is inactive);
/// a failed look-up only means no notice.
async fn revocation_notice(
    state: &AppState,
    caller: &str,
    token: &str,
) -> Option<consent_bridge::RevocationNotice> {
    use oauth_core::storage::{TokenKind, TokenRepository};
    if !state.bridge()?.notifies_revocations() || token.is_empty() {
        return None;
    }
    let t = state
        .store
        .get_active_token(&oauth_core::secret::hash_secret(token), now())
        .await
        .ok()??;
    if t.client_id != caller {
        return None;
    }
    let details: oauth_core::token::TokenDetails = serde_json::from_str(&t.details).ok()?;
    Some(consent_bridge::RevocationNotice {
        event: "token_revoked".into(),
        jti: oauth_core::secret::random_token(16),
        iat: now(),
        consent_id: details.consent_id?,
        client_id: t.client_id,
        token_type: match t.kind {
            TokenKind::Refresh => "refresh_token",
            TokenKind::Access => "access_token",
        }
        .into(),
    })
}

/// `GET|POST /userinfo` (OIDC Core §5.3, RFC 6750 §2, RFC 9449 §7).
#[tracing::instrument(skip_all)]
pub async fn userinfo(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    let mut res = match userinfo_inner(&state, &req).await {
        Ok(oauth_core::userinfo::UserinfoBody::Json(claims)) => {
            json_no_store(actix_web::http::StatusCode::OK, &claims)
        }
        Ok(oauth_core::userinfo::UserinfoBody::Jwt(jwt)) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("application/jwt")
            .body(jwt),
        Err(e) => resource_error(&e),
    };
    if let Ok(v) = header::HeaderValue::from_str(&interaction_id(&req)) {
        res.headers_mut()
            .insert(header::HeaderName::from_static(INTERACTION_ID), v);
    }
    res
}

/// FAPI 1.0 Part 1 §6.2.1-11 (and FAPI 2.0's resource servers): every
/// answer of a protected resource carries `x-fapi-interaction-id`.
const INTERACTION_ID: &str = "x-fapi-interaction-id";

/// The client's `x-fapi-interaction-id` echoed (when it is one value of
/// at most 128 visible ASCII characters, as a UUID is), else a fresh
/// RFC 4122 version 4 UUID.
fn interaction_id(req: &HttpRequest) -> String {
    let mut sent = req.headers().get_all(INTERACTION_ID);
    if let (Some(v), None) = (sent.next(), sent.next())
        && (1..=128).contains(&v.len())
        && v.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b))
        && let Ok(s) = v.to_str()
    {
        return s.to_string();
    }
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("system CSPRNG failed");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

async fn userinfo_inner(
    state: &AppState,
    req: &HttpRequest,
) -> Result<oauth_core::userinfo::UserinfoBody, ResourceError> {
    // RFC 6750 §2.3 / FAPI: access tokens in the query string are refused.
    if url::form_urlencoded::parse(req.query_string().as_bytes()).any(|(k, _)| k == "access_token")
    {
        return Err(OAuthError::invalid_request(
            "access tokens in the query string are not accepted",
        )
        .into());
    }
    let Some(auth) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ResourceError::invalid_token(
            AuthScheme::Bearer,
            "an access token is required",
        ));
    };
    let (scheme, token) = auth
        .split_once(' ')
        .and_then(|(s, t)| Some((AuthScheme::parse(s)?, t.trim())))
        .ok_or_else(|| {
            ResourceError::invalid_token(AuthScheme::Bearer, "unsupported authorization scheme")
        })?;
    // The proof's `jti` is recorded in the same trip to the database as
    // the token and its grant are read (`Store::token_reads`).
    let replay = DeferredReplay::new(&state.store);
    let dpop = match scheme {
        AuthScheme::DPoP => Some(
            verify_dpop(state, &replay, req, Some(token))
                .await?
                .ok_or_else(|| ResourceError::invalid_dpop_proof("a DPoP proof is required"))?,
        ),
        AuthScheme::Bearer => None,
    };
    // Refused before anything is recorded: no token (a proof's `ath` binds
    // it to that empty token, so it cannot serve another).
    oauth_core::userinfo::presented(token, scheme, dpop.is_some())?;
    let now = now();
    let reads = state
        .store
        .carrying_replay(replay.into_entries(), now)
        .token_reads(&oauth_core::secret::hash_secret(token), now, true)
        .await?;
    let cert = crate::tls::peer_certificate(req);
    let claims = oauth_core::userinfo::answer(
        reads.token,
        reads.grant,
        scheme,
        dpop.as_ref(),
        cert.as_ref().map(|c| c.x5t_s256.as_str()),
    )?;
    // Refused now only by the client's registration (its encryption key
    // gone): answered in the scheme the token was presented with.
    userinfo_as_registered(state, reads.client, claims, now)
        .await
        .map_err(|e| ResourceError {
            scheme,
            ..ResourceError::from(e)
        })
}

/// OIDC Core §5.3.2: the UserInfo claims as the token's client registered
/// them (JSON, or a signed and/or encrypted JWT).
async fn userinfo_as_registered(
    state: &AppState,
    record: Option<oauth_core::storage::ClientRecord>,
    claims: serde_json::Value,
    now: i64,
) -> Result<oauth_core::userinfo::UserinfoBody, OAuthError> {
    let Some(record) = record.filter(|r| oauth_core::userinfo::registered_for_jwt(&r.metadata))
    else {
        return Ok(oauth_core::userinfo::UserinfoBody::Json(claims));
    };
    let client = oauth_core::client::Client::from_record(&record).map_err(|e| {
        tracing::error!(client_id = %record.client_id, error = ?e, "stored client does not load");
        OAuthError::server_error()
    })?;
    let encrypter = match client.metadata.userinfo_encryption() {
        None => None,
        Some(pair) => Some(
            state
                .jwks
                .encrypter(&client, pair, ErrorCode::InvalidRequest, now)
                .await?,
        ),
    };
    oauth_core::userinfo::userinfo_body(
        &state.keys,
        &state.policy().issuer,
        &client,
        claims,
        encrypter.as_ref(),
    )
}

/// RFC 6750 §3 / RFC 9449 §7.1 error answers with `WWW-Authenticate`.
fn resource_error(e: &ResourceError) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(e.status())
        .unwrap_or(actix_web::http::StatusCode::UNAUTHORIZED);
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(challenge) = e.www_authenticate() {
        res.insert_header((header::WWW_AUTHENTICATE, challenge));
    }
    if let Some(n) = &e.dpop_nonce {
        res.insert_header(("DPoP-Nonce", n.as_str()));
    }
    let mut res = res.json(e.to_json());
    res.extensions_mut()
        .insert(crate::telemetry::ErrorLabel::of(e.code));
    res
}

/// Paths, shared by the router and discovery.
pub const PAR_PATH: &str = "/par";
pub const TOKEN_PATH: &str = "/token";
pub const USERINFO_PATH: &str = "/userinfo";
pub const INTROSPECTION_PATH: &str = "/introspect";
pub const REVOCATION_PATH: &str = "/revoke";

/// Registers the back-channel routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(PAR_PATH, web::post().to(par))
        .route(TOKEN_PATH, web::post().to(token))
        .route(INTROSPECTION_PATH, web::post().to(introspect))
        .route(REVOCATION_PATH, web::post().to(revoke))
        .route(USERINFO_PATH, web::get().to(userinfo))
        .route(USERINFO_PATH, web::post().to(userinfo));
}
