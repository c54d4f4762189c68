//! The admin API (`/admin/v1`, docs/admin.md): clients, keys, grants and
//! consents, and the audit log, on the internal listener only
//! (`server.admin_listen`), never on the Internet-facing ones.
//!
//! Every call goes through [`run`]: the caller's access token is checked
//! ([`auth`]) for the route's scope, the handler runs, and the call is
//! appended to the audit log with who, what, when and from where, whatever
//! its outcome. A change carries its audit line into its own transaction
//! (`token_store::Store::carrying_audit`, `Store::change_client`), so a
//! change and its line land together or not at all; a refusal changes
//! nothing and is appended on its own.
//!
//! The OpenAPI 3.1 document is generated from the handlers' annotations
//! ([`doc::ApiDoc`]) and served at `/admin/v1/openapi.json`; a server test
//! checks that every documented route is mounted and nothing else is.

mod audit;
pub mod auth;
mod clients;
mod directories;
mod doc;
mod grants;
mod keys;
mod settings;

use std::borrow::Cow;
use std::sync::Arc;

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use oauth_core::keys::KeyEncryptionKey;
use serde_json::{Value, json};
use token_store::AuditEntry;

use crate::config::Config;
use crate::http::AppState;

pub use directories::{load_directories, reload_directories};
pub use doc::openapi_json;
pub use settings::{Sections, ciba_of, load_sections, reload_sections};

/// What the admin listener's handlers share.
pub struct AdminState {
    pub app: AppState,
    pub cfg: Arc<Config>,
    pub kek: Arc<KeyEncryptionKey>,
    /// `admin.url` (or the one derived from `server.admin_listen`): the
    /// base of the `htu` DPoP proofs must name.
    pub base_url: String,
    /// External issuers' keys, fetched and cached like clients' `jwks_uri`.
    pub issuers: auth::TrustedIssuers,
    /// `admin.client_subject_dns`, parsed (validated with the configuration).
    pub client_dns: Vec<oauth_core::cert::DistinguishedName>,
}

impl AdminState {
    pub fn new(app: AppState, cfg: Arc<Config>, kek: Arc<KeyEncryptionKey>) -> AdminState {
        AdminState {
            base_url: cfg.admin_url(),
            issuers: auth::TrustedIssuers::new(&cfg.admin.trusted_issuers, app.jwks.clone()),
            client_dns: cfg
                .admin
                .client_subject_dns
                .iter()
                .filter_map(|dn| oauth_core::cert::DistinguishedName::parse_rfc4514(dn).ok())
                .collect(),
            app,
            cfg,
            kek,
        }
    }
}

/// The scopes of the admin API (docs/admin.md): one to read, one per
/// resource to change it, one for the audit log.
pub mod scope {
    pub const READ: &str = "admin:read";
    pub const CLIENTS: &str = "admin:clients";
    pub const DIRECTORIES: &str = "admin:directories";
    pub const HOOKS: &str = "admin:hooks";
    /// Lifetimes and token rules (`[tokens]`).
    pub const SETTINGS: &str = "admin:settings";
    pub const KEYS: &str = "admin:keys";
    pub const GRANTS: &str = "admin:grants";
    pub const AUDIT: &str = "admin:audit";
}

/// One admin route as the audit log names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    /// `clients.create`, `keys.rotate`, …
    pub action: &'static str,
    pub resource: &'static str,
    /// The scope the token needs.
    pub scope: &'static str,
}

/// A refused admin call: the status, an OAuth-style error code and a
/// description that says what to fix (naming the field for a bad body).
#[derive(Debug)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: Cow<'static, str>,
    /// `WWW-Authenticate` for 401 and 403.
    pub challenge: Option<String>,
    /// RFC 9449 §8: a nonce the caller's next DPoP proof must carry.
    pub dpop_nonce: Option<String>,
    /// What the refused call was about, when only the handler knew it (a
    /// create's `client_id`).
    pub resource_id: Option<String>,
}

impl Refusal {
    pub fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Refusal {
        Refusal {
            status,
            error,
            description: description.into(),
            challenge: None,
            dpop_nonce: None,
            resource_id: None,
        }
    }

    /// This refusal about `id`.
    pub fn about(mut self, id: &str) -> Refusal {
        self.resource_id = Some(id.to_owned());
        self
    }

    pub fn bad_request(error: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, error, description)
    }

    pub fn not_found(what: &str) -> Refusal {
        Refusal::new(StatusCode::NOT_FOUND, "not_found", format!("no {what}"))
    }

    pub fn conflict(description: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::new(StatusCode::CONFLICT, "conflict", description)
    }

    pub fn unavailable() -> Refusal {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the database is unavailable; try again",
        )
    }

    fn response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(c) = &self.challenge {
            res.insert_header((header::WWW_AUTHENTICATE, c.as_str()));
        }
        if let Some(n) = &self.dpop_nonce {
            res.insert_header(("DPoP-Nonce", n.as_str()));
        }
        res.json(json!({"error": self.error, "error_description": describe(&self.description)}))
    }
}

/// A description in the character set of RFC 6749 §5.2 (`%x20-21 /
/// %x23-5B / %x5D-7E`), as every other error of Strongroom: `§` reads
/// "section", anything else outside it becomes `?`.
fn describe(d: &str) -> String {
    d.replace('§', "section ")
        .chars()
        .map(|c| match c {
            '\x20'..='\x21' | '\x23'..='\x5B' | '\x5D'..='\x7E' => c,
            _ => '?',
        })
        .collect()
}

impl From<oauth_core::storage::StoreError> for Refusal {
    fn from(e: oauth_core::storage::StoreError) -> Refusal {
        tracing::warn!(error = %e, "admin API: store failure");
        Refusal::unavailable()
    }
}

/// A handler's answer.
pub(crate) struct Done {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub etag: Option<String>,
    pub location: Option<String>,
    /// Whether the handler's write already appended the audit line.
    pub audited: bool,
    /// What the audit line records of a read (ignored once audited).
    pub detail: Value,
}

impl Done {
    /// A read answered with `body`.
    pub fn read(body: Value) -> Done {
        Done {
            status: StatusCode::OK,
            body: Some(body),
            etag: None,
            location: None,
            audited: false,
            detail: json!({}),
        }
    }

    /// A change whose transaction appended its audit line.
    pub fn changed(status: StatusCode, body: Option<Value>) -> Done {
        Done {
            audited: true,
            ..Done::read(Value::Null)
        }
        .with(status, body)
    }

    fn with(mut self, status: StatusCode, body: Option<Value>) -> Done {
        self.status = status;
        self.body = body;
        self
    }

    pub fn etag(mut self, etag: String) -> Done {
        self.etag = Some(etag);
        self
    }
}

/// What a handler gets: the caller and the audit line of its call, to
/// complete and carry into its write ([`Ctx::audit`]).
pub(crate) struct Ctx {
    pub actor: auth::Actor,
    entry: AuditEntry,
}

impl Ctx {
    /// The audit line of this call, answered with `status`, recording
    /// `detail` (before / after, secrets redacted).
    pub fn audit(&self, status: StatusCode, detail: Value) -> AuditEntry {
        AuditEntry {
            status: i64::from(status.as_u16()),
            detail: detail.to_string(),
            ..self.entry.clone()
        }
    }
}

/// Authenticates the call for `route`, runs `f`, appends the audit line
/// unless the handler's write did, and renders the answer.
pub(crate) async fn run<F, Fut>(
    st: &AdminState,
    req: &HttpRequest,
    route: Route,
    resource_id: Option<String>,
    f: F,
) -> HttpResponse
where
    F: FnOnce(Ctx) -> Fut,
    Fut: std::future::Future<Output = Result<Done, Refusal>>,
{
    let mut entry = AuditEntry {
        audit_id: oauth_core::secret::time_ordered(8),
        at_ms: now_ms(),
        actor: "anonymous".into(),
        actor_client: None,
        source: req
            .peer_addr()
            .map_or_else(|| "unknown".into(), |a| a.ip().to_string()),
        action: route.action.into(),
        resource: route.resource.into(),
        resource_id,
        status: 0,
        detail: "{}".into(),
    };
    let outcome = match auth::authenticate(st, req).await {
        Ok(actor) => {
            entry.actor.clone_from(&actor.sub);
            entry.actor_client.clone_from(&actor.client_id);
            match auth::require_scope(&actor, route.scope) {
                Ok(()) => {
                    f(Ctx {
                        actor,
                        entry: entry.clone(),
                    })
                    .await
                }
                Err(r) => Err(r),
            }
        }
        Err(r) => Err(r),
    };
    match outcome {
        Ok(done) => {
            if !done.audited {
                entry.status = i64::from(done.status.as_u16());
                entry.detail = done.detail.to_string();
                if let Err(e) = st.app.store.append_audit(entry).await {
                    // No answer without its audit line.
                    return Refusal::from(e).response();
                }
            }
            render(done)
        }
        Err(refusal) => {
            if refusal.resource_id.is_some() {
                entry.resource_id.clone_from(&refusal.resource_id);
            }
            entry.status = i64::from(refusal.status.as_u16());
            entry.detail =
                json!({"refused": refusal.error, "reason": refusal.description}).to_string();
            tracing::info!(
                target: "strongroom::security",
                event = "admin_refused",
                action = route.action,
                actor = %entry.actor,
                status = refusal.status.as_u16(),
                "admin call refused"
            );
            if let Err(e) = st.app.store.append_audit(entry).await {
                tracing::error!(error = %e, "admin API: a refusal could not be audited");
            }
            refusal.response()
        }
    }
}

fn render(done: Done) -> HttpResponse {
    let mut res = HttpResponse::build(done.status);
    res.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(e) = &done.etag {
        res.insert_header((header::ETAG, e.as_str()));
    }
    if let Some(l) = &done.location {
        res.insert_header((header::LOCATION, l.as_str()));
    }
    match done.body {
        Some(b) => res.json(b),
        None => res.finish(),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The request body as JSON, at most `admin.max_body_bytes` (413 beyond),
/// of the media type `want` (415 otherwise).
pub(crate) async fn read_json(
    st: &AdminState,
    req: &HttpRequest,
    payload: web::Payload,
    want: &'static str,
) -> Result<Value, Refusal> {
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some(want) {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request",
            format!("the body must be {want}"),
        ));
    }
    let limit = st.cfg.admin.max_body_bytes;
    let too_large = || {
        Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("the body is larger than {limit} bytes"),
        )
    };
    if req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit)
    {
        return Err(too_large());
    }
    let body = match payload.to_bytes_limited(limit).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            return Err(Refusal::bad_request(
                "invalid_request",
                "the body could not be read",
            ));
        }
        Err(_) => return Err(too_large()),
    };
    serde_json::from_slice(&body)
        .map_err(|e| Refusal::bad_request("invalid_request", format!("the body is not JSON: {e}")))
}

/// The `If-Match` of a change (RFC 9110 §13.1.1): 428 without one, 412
/// unless it names `current` (or is `*`).
pub(crate) fn check_if_match(req: &HttpRequest, current: &str) -> Result<(), Refusal> {
    let Some(v) = req
        .headers()
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(Refusal::new(
            StatusCode::PRECONDITION_REQUIRED,
            "precondition_required",
            "If-Match is required: send the ETag of the resource you read",
        ));
    };
    let matches = v
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current);
    if matches { Ok(()) } else { Err(stale()) }
}

pub(crate) fn stale() -> Refusal {
    Refusal::new(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        "the resource changed since it was read: read it again",
    )
}

/// A strong ETag over `parts`.
pub(crate) fn etag(parts: &[&str]) -> String {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p.as_bytes());
    }
    use base64::Engine as _;
    let d = ctx.finish();
    format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&d.as_ref()[..18])
    )
}

/// The paging limit of a list: 50 by default, 1 to 200.
pub(crate) fn page_limit(limit: Option<i64>) -> Result<i64, Refusal> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=200).contains(&n) => Ok(n),
        Some(_) => Err(Refusal::bad_request(
            "invalid_request",
            "limit must be between 1 and 200",
        )),
    }
}

/// The query of a list, refused with 400 (not actix's plain-text answer)
/// when a parameter is malformed or unknown.
pub(crate) fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, Refusal> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| Refusal::bad_request("invalid_request", format!("query: {e}")))
}

/// The admin routes: one list that both mounts them ([`configure`]) and
/// names them ([`MOUNTED`]), so a test can hold the OpenAPI document
/// against exactly what is mounted.
macro_rules! admin_routes {
    ($(($method:ident, $path:literal, $handler:path)),* $(,)?) => {
        /// Every mounted admin route: (method, path under `/admin/v1`).
        pub const MOUNTED: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// Mounts `/admin/v1` (the internal listener only).
        pub fn configure(cfg: &mut web::ServiceConfig) {
            cfg.service(
                web::scope("/admin/v1")
                    $(.route($path, web::$method().to($handler)))*
                    .default_service(web::to(|| async {
                        HttpResponse::NotFound().json(
                            json!({"error": "not_found", "error_description": "no such admin route"}),
                        )
                    })),
            );
        }
    };
}

admin_routes![
    (get, "/openapi.json", doc::serve),
    (get, "/clients", clients::list),
    (post, "/clients", clients::create),
    (get, "/clients/{client_id}", clients::get),
    (put, "/clients/{client_id}", clients::replace),
    (patch, "/clients/{client_id}", clients::patch),
    (delete, "/clients/{client_id}", clients::delete),
    (get, "/directories", directories::list),
    (post, "/directories", directories::create),
    (get, "/directories/{name}", directories::get),
    (put, "/directories/{name}", directories::replace),
    (patch, "/directories/{name}", directories::patch),
    (delete, "/directories/{name}", directories::delete),
    (get, "/settings/tokens", settings::get_tokens),
    (put, "/settings/tokens", settings::replace_tokens),
    (patch, "/settings/tokens", settings::patch_tokens),
    (delete, "/settings/tokens", settings::delete_tokens),
    (get, "/settings/scopes", settings::get_scopes),
    (put, "/settings/scopes", settings::replace_scopes),
    (patch, "/settings/scopes", settings::patch_scopes),
    (delete, "/settings/scopes", settings::delete_scopes),
    (get, "/settings/hooks", settings::get_hooks),
    (put, "/settings/hooks", settings::replace_hooks),
    (patch, "/settings/hooks", settings::patch_hooks),
    (delete, "/settings/hooks", settings::delete_hooks),
    (get, "/settings/ciba", settings::get_ciba),
    (put, "/settings/ciba", settings::replace_ciba),
    (patch, "/settings/ciba", settings::patch_ciba),
    (delete, "/settings/ciba", settings::delete_ciba),
    (get, "/keys", keys::list),
    (post, "/keys/rotate", keys::rotate),
    (post, "/keys/{kid}/retire", keys::retire),
    (get, "/grants", grants::list),
    (
        post,
        "/consents/{consent_id}/revoke",
        grants::revoke_consent
    ),
    (get, "/audit", audit::list),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    /// The OpenAPI document names exactly the mounted routes.
    #[test]
    fn the_document_names_exactly_the_mounted_routes() {
        let doc: serde_json::Value = serde_json::from_str(&super::openapi_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let mounted: BTreeSet<(String, String)> = super::MOUNTED
            .iter()
            .map(|(m, p)| ((*m).to_owned(), format!("/admin/v1{p}")))
            .collect();
        assert_eq!(documented, mounted);
    }
}
