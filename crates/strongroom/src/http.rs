//! Routes that belong to the server itself (discovery, JWKS, health) and the
//! one place where [`OAuthError`] becomes an HTTP response.

use std::sync::Arc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};
use oauth_core::error::OAuthError;
use oauth_core::jwks_resolver::JwksResolver;
use oauth_core::keys::Keys;
use oauth_core::policy::Policy;
use oauth_core::sender_constraint::nonce::DpopNonces;
use oauth_core::storage::HealthCheck;
use token_store::Store;

use crate::config::LoginConfig;
use crate::users::UserDirectory;

/// Shared state of every worker. Cheap to clone (Arcs inside).
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub keys: Arc<Keys>,
    /// The discovery document, serialised once at start.
    pub metadata: web::Bytes,
    /// The protocol policy; swapped when the admin API changes `[tokens]`
    /// (read it with [`AppState::policy`]).
    pub policy_cell: Arc<arc_swap::ArcSwap<Policy>>,
    /// Clients' public keys (inline or fetched from `jwks_uri`, cached).
    pub jwks: Arc<JwksResolver<crate::fetch::HttpFetcher>>,
    /// RFC 9449 §8 server nonces, shared by every instance.
    pub dpop_nonces: Arc<DpopNonces>,
    pub users: UserDirectory,
    pub login: Arc<LoginConfig>,
    /// The id_token claim that carries the bank's consent id.
    pub consent_claim: Arc<str>,
    /// The consent bridge (bank login/consent apps behind hooks), if configured.
    /// Swapped when the admin API changes `[hooks]` (read it with
    /// [`AppState::bridge`]).
    pub bridge_cell: Arc<arc_swap::ArcSwapOption<consent_bridge::Bridge>>,
    /// CIBA's outbound hooks and settings, if `[ciba]` is configured.
    /// Swapped when the admin API changes `[ciba]` (read it with
    /// [`AppState::ciba`]).
    pub ciba_cell: Arc<arc_swap::ArcSwapOption<ciba::hooks::Hooks>>,
    /// Dynamic client registration (RFC 7591/7592), if configured.
    /// Swapped when the admin API changes the directories.
    pub registrar: Arc<arc_swap::ArcSwapOption<dcr::Registrar>>,
    /// The configured public URLs a request's URL is built from (DPoP
    /// `htu`, FAPI 1.0 assertion audiences), never its headers, and the
    /// token endpoint's URLs on both listeners.
    pub urls: Arc<crate::public_url::PublicUrls>,
    /// The customer pages' templates, catalogs and assets, loaded at start.
    pub theme: Arc<crate::theme::Theme>,
    /// `[limits]` (`crate::limits`).
    pub limits: Arc<crate::limits::Limits>,
}

impl AppState {
    /// The key to encrypt `client`'s id_tokens to, when it registered
    /// `id_token_encrypted_response_alg` (OIDC Registration §2), resolved
    /// before anything one-time is spent: for the hybrid flow's
    /// front-channel id_token (the token endpoint's grants ask `jwks`,
    /// an `IdTokenEncryption`, only when they issue one). A client without such a key
    /// (or whose `jwks_uri` cannot be fetched) is told `invalid_request`:
    /// its registration, not this request's authentication, is at fault.
    pub async fn id_token_encrypter(
        &self,
        client: &oauth_core::client::Client,
    ) -> Result<Option<oauth_core::keys::ClientEncrypter>, oauth_core::error::OAuthError> {
        use oauth_core::jwks_resolver::IdTokenEncryption as _;
        self.jwks
            .id_token_encrypter(client, oauth_core::secret::now())
            .await
    }

    /// The protocol policy in force (lock-free; a request that read it
    /// keeps that version to its end).
    pub fn policy(&self) -> arc_swap::Guard<Arc<Policy>> {
        self.policy_cell.load()
    }

    /// CIBA's hooks in force, if `[ciba]` is configured.
    pub fn ciba(&self) -> Option<Arc<ciba::hooks::Hooks>> {
        self.ciba_cell.load_full()
    }

    /// The consent bridge in force, if `[hooks]` is configured.
    pub fn bridge(&self) -> Option<Arc<consent_bridge::Bridge>> {
        self.bridge_cell.load_full()
    }
}

/// Renders OAuth errors: JSON body, the spec's status, `no-store`, the
/// `DPoP-Nonce` header when one is due (RFC 9449 §8), and a Basic challenge
/// for clients that tried HTTP Basic (RFC 6749 §5.2).
pub struct ApiError {
    pub error: OAuthError,
    pub basic_challenge: bool,
    /// Over a rate limit (`crate::limits`): 429 with this `Retry-After`.
    pub retry_after: Option<u64>,
}

impl From<OAuthError> for ApiError {
    fn from(error: OAuthError) -> Self {
        ApiError {
            error,
            basic_challenge: false,
            retry_after: None,
        }
    }
}

impl std::fmt::Debug for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        if self.retry_after.is_some() {
            return StatusCode::TOO_MANY_REQUESTS;
        }
        StatusCode::from_u16(self.error.status()).unwrap_or(StatusCode::BAD_REQUEST)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        res.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(nonce) = &self.error.dpop_nonce {
            res.insert_header(("DPoP-Nonce", nonce.as_str()));
        }
        if self.basic_challenge {
            res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"strongroom\""));
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        let mut res = res.json(self.error.to_json());
        res.extensions_mut()
            .insert(crate::telemetry::ErrorLabel::of(self.error.code));
        res
    }
}

/// `GET /.well-known/openid-configuration` and
/// `/.well-known/oauth-authorization-server` (RFC 8414 §3).
pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .body(state.metadata.clone())
}

/// `GET /jwks`: the provider's public keys (RFC 7517 §5), including keys
/// published ahead of activation and retired keys still valid for
/// verification, as the deployment profile's relying parties see them
/// (`KeySet::jwks_json_for`: a UK deployment publishes its RSA keys only).
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((header::CACHE_CONTROL, "public, max-age=60"))
        .body(web::Bytes::copy_from_slice(
            &state.keys.jwks_json_for(state.policy().profile),
        ))
}

/// `GET /healthz`: the process is alive.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body("ok")
}

/// How long `/readyz` waits for the database: a load balancer's probe
/// (typically 1 to 2 s) gets an answer, 503 when the database is slow or
/// gone, rather than its own timeout after the pool's 5 s.
pub const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(800);

/// The readiness check in progress, shared by the workers: while one is
/// still waiting on the database, later probes answer 503 at once instead
/// of tying up another blocking thread on a database that does not answer.
#[derive(Debug, Default)]
pub struct Readiness {
    checking: Arc<std::sync::atomic::AtomicBool>,
}

impl Readiness {
    /// Pings the database within [`READY_TIMEOUT`].
    pub async fn check(&self, store: &Store) -> Result<(), String> {
        use std::sync::atomic::Ordering;
        if self.checking.swap(true, Ordering::AcqRel) {
            return Err("the previous check is still waiting for the database".into());
        }
        let checking = self.checking.clone();
        let store = store.clone();
        // Spawned, so the flag clears when the ping ends, also after a
        // timeout here.
        let ping = actix_web::rt::spawn(async move {
            let r = store.ping().await;
            checking.store(false, Ordering::Release);
            r
        });
        match tokio::time::timeout(READY_TIMEOUT, ping).await {
            Ok(Ok(r)) => r.map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", READY_TIMEOUT.as_millis())),
        }
    }
}

/// `GET /readyz`: the database answers within [`READY_TIMEOUT`]; 503
/// otherwise.
pub async fn readyz(state: web::Data<AppState>, readiness: web::Data<Readiness>) -> HttpResponse {
    match readiness.check(&state.store).await {
        Ok(()) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body("ready"),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            HttpResponse::ServiceUnavailable()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body("database unavailable")
        }
    }
}

/// Refuses a request whose path or query string does not decode to clean
/// text (`oauth_core::text`): UTF-8 with no control character. The router
/// and the extractors would hand a `%00` on to storage keys (PostgreSQL
/// refuses NUL in `text`), so it stops here, before routing, for every
/// route: a bad path is no resource of ours (404), a bad query an
/// `invalid_request` (the error page on the browser's routes, JSON on the
/// others).
pub async fn refuse_unclean_uri(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let query = req.query_string();
    let browser = req.path() == "/authorize" || req.path().starts_with("/interaction/");
    let refusal = if !oauth_core::text::path_is_clean(req.path()) {
        tracing::debug!("request refused: its path is not clean text");
        Some(if browser {
            // A person sees a page, not the browser's bare 404.
            crate::interaction::error_page(
                req.request(),
                StatusCode::NOT_FOUND,
                &OAuthError::invalid_request("there is no such page"),
            )
        } else {
            HttpResponse::NotFound()
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .finish()
        })
    } else if let Err(e) = (!query.is_empty())
        .then(|| oauth_core::text::parse_form(query.as_bytes()))
        .transpose()
    {
        tracing::debug!("request refused: its query string is not clean text");
        Some(if browser {
            crate::interaction::error_page(req.request(), StatusCode::BAD_REQUEST, &e)
        } else {
            ApiError::from(e).error_response()
        })
    } else {
        None
    };
    match refusal {
        Some(res) => Ok(req.into_response(res).map_into_right_body()),
        None => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

/// `GET /assets/{name}`: a static file of the theme (docs/theming.md).
/// Only names the theme loaded at start are served, so no path reaches the
/// file system; a name that is not a plain file name is 404 like an unknown
/// one. Pages link to `/assets/{name}?v=<digest>`: that URL is cached for a
/// year, any other for five minutes; `If-None-Match` gets a 304.
pub async fn asset(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let name = path.into_inner();
    let found = crate::theme::is_plain_name(&name)
        .then(|| state.theme.asset(&name))
        .flatten();
    let Some(a) = found else {
        return HttpResponse::NotFound()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish();
    };
    let versioned = req
        .query_string()
        .strip_prefix("v=")
        .is_some_and(|v| v == a.etag.trim_matches('"'));
    let cache = if versioned {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    res.insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, a.etag.as_str()))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        // An SVG opened on its own is a document: nothing in it may run.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; sandbox",
        ));
    if fresh {
        return res.finish();
    }
    res.insert_header((header::CONTENT_TYPE, a.content_type))
        .body(a.body.clone())
}

/// Paths of the routes above, shared by the router and discovery.
pub const JWKS_PATH: &str = "/jwks";

/// Registers the routes that every listener serves.
pub fn configure_common(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/.well-known/openid-configuration",
        web::get().to(discovery),
    )
    .route(
        "/.well-known/oauth-authorization-server",
        web::get().to(discovery),
    )
    .route(JWKS_PATH, web::get().to(jwks))
    .route("/healthz", web::get().to(healthz))
    .route("/readyz", web::get().to(readyz));
}

/// The `Content-Security-Policy` of a customer page (CSP Level 3).
///
/// Nothing runs and nothing loads but the page's own styles; the page cannot
/// be framed, and its forms may be sent only where that page's forms can
/// lead.
///
/// **Why `form-action` names the interaction's redirect targets.** Chromium
/// enforces `form-action` on every redirect that follows a form submission,
/// not only on the form's `action` (an open question of the spec,
/// w3c/webappsec-csp#8; Firefox does not, WebKit is adding it).
/// With `form-action 'self'` alone, Approve (POST to `/interaction/{id}/
/// consent`, answered by a correct 303 to the client's `redirect_uri`) ends
/// in `net::ERR_ABORTED`, and so do Deny and Cancel (303 to the
/// `redirect_uri` with `error=access_denied`) and any POST that leads on to
/// the bank's own login or consent app (hooks). So each page lists `'self'`
/// plus exactly the URLs its own POSTs can be redirected to: that
/// interaction's registered and validated `redirect_uri` and, when the
/// interaction uses the bank's apps, the configured `hooks.login_url` and
/// `hooks.consent_url`. Never a wildcard, a bare scheme (`https:`) or
/// another client's URI: a page injected with a form still cannot post the
/// customer's data anywhere else. CSP matches only the origin of a URL
/// reached through a redirect (CSP3, "Does url match expression in origin
/// with redirect count?": the path is ignored after a redirect, so that a
/// policy cannot probe where a redirect went): the exact URL is listed
/// anyway, and its origin is what takes effect.
///
/// The alternative, answering the POST with a page that is not a form
/// submission (a link or a `<meta refresh>` to the client), was rejected: it
/// adds a page and a click (or a refresh delay) to every flow, and a meta
/// refresh is itself what `navigate-to` was meant to restrict; listing the
/// one known target keeps the 303 the specs describe (RFC 6749 §4.1.2) and
/// a policy no broader than the flow.
#[derive(Debug, Clone, Default)]
pub struct PageCsp {
    /// `None`: the page has no form (`form-action 'none'`).
    form_targets: Option<Vec<String>>,
    /// Images other than the page's own (`img-src 'self'`), e.g. the
    /// client's `logo_uri`.
    images: Vec<String>,
    /// The one inline script the page may run, as its CSP hash source
    /// (`'sha256-…'`); none otherwise (`default-src 'none'`).
    script: Option<String>,
}

impl PageCsp {
    /// A page without forms.
    pub fn no_forms() -> PageCsp {
        PageCsp::default()
    }

    /// A page whose forms post to itself and may be redirected to `targets`
    /// (absolute URLs; one that cannot be written as a CSP source is left
    /// out, which blocks it rather than widening the policy).
    pub fn forms_to<'a>(targets: impl IntoIterator<Item = &'a str>) -> PageCsp {
        let mut list: Vec<String> = Vec::new();
        for t in targets {
            match csp_source(t) {
                Some(s) if !list.contains(&s) => list.push(s),
                Some(_) => {}
                None => tracing::warn!("a form target cannot be written as a CSP source"),
            }
        }
        PageCsp {
            form_targets: Some(list),
            images: Vec::new(),
            script: None,
        }
    }

    /// Also runs the inline script whose text is exactly `source` (CSP
    /// Level 2 hash source), and no other.
    pub fn inline_script(mut self, source: &str) -> PageCsp {
        use base64::Engine as _;
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, source.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(d.as_ref());
        self.script = Some(format!("'sha256-{b64}'"));
        self
    }

    /// Also allows the image at `url` (an `https` URL only).
    pub fn image(mut self, url: &str) -> PageCsp {
        if url.starts_with("https://")
            && let Some(s) = csp_source(url)
            && !self.images.contains(&s)
        {
            self.images.push(s);
        }
        self
    }

    /// The header value.
    pub fn header_value(&self) -> String {
        let forms = match &self.form_targets {
            None => "'none'".to_string(),
            Some(t) => std::iter::once("'self'")
                .chain(t.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" "),
        };
        let images = std::iter::once("'self'")
            .chain(self.images.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let script = self
            .script
            .as_ref()
            .map(|s| format!("script-src {s}; "))
            .unwrap_or_default();
        format!(
            "default-src 'none'; {script}style-src {PAGE_STYLE_SRC}; img-src {images}; form-action {forms}; frame-ancestors 'none'; base-uri 'none'"
        )
    }
}

/// Where the pages' styles come from: the theme's stylesheets under
/// `/assets/`, no inline style (the bank's colour is the generated
/// `/assets/theme.css`, so no nonce is needed).
const PAGE_STYLE_SRC: &str = "'self'";

/// `url` as a CSP source expression (CSP3 §2.3.1): for `http`/`https` the
/// URL without query and fragment, `;` and `,` percent-encoded (they would
/// end the directive or the policy); for another scheme (a native app's
/// private-use URI, RFC 8252 §7.1) its scheme-source, which is all CSP can
/// say about it. `None` for what CSP cannot express (an IPv6 literal host,
/// a URL with credentials) or what is not a URL.
pub fn csp_source(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    match u.scheme() {
        "http" | "https" => {}
        s => {
            return (s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .then(|| format!("{s}:"));
        }
    }
    if !u.username().is_empty() || u.password().is_some() {
        return None;
    }
    let host = match u.host()? {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(ip) => ip.to_string(),
        url::Host::Ipv6(_) => return None,
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = u.path().replace(';', "%3B").replace(',', "%2C");
    Some(format!("{}://{host}{port}{path}", u.scheme()))
}

#[cfg(test)]
mod csp_tests {
    use super::*;

    #[test]
    fn sources_are_exact_urls_without_query() {
        assert_eq!(
            csp_source("https://tpp.example/cb?x=1#f").as_deref(),
            Some("https://tpp.example/cb")
        );
        assert_eq!(
            csp_source("https://tpp.example:8443/a;b,c").as_deref(),
            Some("https://tpp.example:8443/a%3Bb%2Cc")
        );
        assert_eq!(
            csp_source("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
        assert_eq!(csp_source("http://[::1]:8080/cb"), None);
        assert_eq!(csp_source("https://u:p@tpp.example/cb"), None);
        assert_eq!(csp_source("not a url"), None);
    }

    #[test]
    fn policy_lists_self_and_the_targets_only() {
        let v = PageCsp::forms_to(["https://tpp.example/cb", "https://tpp.example/cb"])
            .image("https://tpp.example/logo.png")
            .image("http://tpp.example/insecure.png")
            .header_value();
        assert!(
            v.contains("form-action 'self' https://tpp.example/cb;"),
            "{v}"
        );
        assert!(
            v.contains("img-src 'self' https://tpp.example/logo.png;"),
            "{v}"
        );
        assert!(!v.contains("insecure"), "{v}");
        assert!(
            PageCsp::no_forms()
                .header_value()
                .contains("form-action 'none'")
        );
    }
}
