//! `/admin/v1/settings/{tokens,hooks}`: sections of the configuration file
//! that the admin API changes live.
//!
//! - `tokens`: the lifetimes and token rules of `[tokens]`;
//! - `hooks`: the consent bridge's `[hooks]` (the bank's login and consent
//!   apps, the consent service, tokens, the claims hook and webhooks);
//! - `ciba`: CIBA's `[ciba]` (the resolve and notify hooks, expiry,
//!   polling interval).
//!
//! Sections with secrets (`hooks`, `ciba`) are sealed in the database under
//! the key-encryption key, and the API never shows the secrets
//! (`"<redacted>"`; sending that value back keeps the secret).
//!
//! The file's section is the starting point; a change through the API is
//! kept in the database (`admin_settings`) and wins over the file on every
//! instance and across restarts until it is dropped (`DELETE`: the file's
//! values again). With `admin.file_owned = ["tokens"]` (or `"hooks"`) the
//! file keeps the last word and the API refuses with 409. One validator per
//! section, the one the file passes at start ([`TokensConfig::validate`],
//! `consent_bridge::Bridge::new`). The result is swapped in at once on this
//! instance and within `admin.propagation_ms` on the others; a request
//! already running keeps what it started with.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ciba::CibaConfig;
use consent_bridge::HooksConfig;
use oauth_core::keys::KeyEncryptionKey;
use oauth_core::secret::now;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use token_store::{ChangeOutcome, Store};

use super::{
    AdminState, Ctx, Done, Refusal, Route, check_if_match, etag, read_json, run, scope, stale,
};
use std::collections::BTreeMap;

use crate::config::{Config, ScopeConfig, TokensConfig};
use crate::http::AppState;

/// One section the admin API changes.
pub(crate) trait Section:
    Serialize + DeserializeOwned + Clone + PartialEq + Send + Sync + 'static
{
    /// Its name in `admin_settings`, `admin.file_owned` and the path.
    const NAME: &'static str;
    /// Fields that hold secrets: the stored document is sealed under the
    /// KEK when there are any, and the API shows them as `<redacted>`.
    const SECRETS: &'static [&'static str] = &[];
    /// Fields that discovery or the token claims follow from the start:
    /// changed only in the file, with a restart.
    const RESTART_FIELDS: &'static [&'static str] = &[];
    /// The scope that changes it.
    const SCOPE: &'static str;
    /// Members the view adds ([`Section::annotate`]) that a change drops.
    const VIEW_ONLY: &'static [&'static str] = &[];
    /// Adds read-only facts to the view.
    fn annotate(&self, _cfg: &Config, _view: &mut Value) {}
    /// The file's section, if the file has one.
    fn from_file(cfg: &Config) -> Option<Self>;
    /// The checks of the file, and what the section becomes in force.
    fn validate(&self, cfg: &Config, kek: &KeyEncryptionKey) -> Result<(), String>;
    /// Puts `self` in force on this instance.
    fn apply(&self, state: &AppState, cfg: &Config, kek: &KeyEncryptionKey);
}

/// Shown instead of a secret; sent back, it keeps the secret.
const REDACTED: &str = "<redacted>";

fn redact<S: Section>(doc: &mut Value) {
    for k in S::SECRETS {
        if doc
            .get(*k)
            .and_then(Value::as_str)
            .is_some_and(|v| !v.is_empty())
        {
            doc[*k] = Value::String(REDACTED.into());
        }
    }
}

/// A change's `doc` with the secrets it sent back redacted put back from
/// `before`; 409 when it changes a restart-only field.
fn merge_protected<S: Section>(doc: &mut Value, before: &S) -> Result<(), Refusal> {
    let before = serde_json::to_value(before).unwrap_or(Value::Null);
    for k in S::SECRETS {
        if doc.get(*k).and_then(Value::as_str) == Some(REDACTED) {
            doc[*k] = before[*k].clone();
        }
    }
    for k in S::RESTART_FIELDS {
        let sent = doc.get(*k).cloned().unwrap_or(Value::Null);
        if !sent.is_null() && sent != before[*k] {
            return Err(Refusal::conflict(format!(
                "{k} changes discovery or the id_token claims: change it in the file and restart"
            )));
        }
        doc[*k] = before[*k].clone();
    }
    Ok(())
}

impl Section for TokensConfig {
    const NAME: &'static str = "tokens";
    const SCOPE: &'static str = scope::SETTINGS;
    const VIEW_ONLY: &'static [&'static str] = &["profile"];
    fn from_file(cfg: &Config) -> Option<Self> {
        Some(cfg.tokens.clone())
    }
    fn validate(&self, _cfg: &Config, _kek: &KeyEncryptionKey) -> Result<(), String> {
        TokensConfig::validate(self).map_err(|e| e.to_string())
    }
    fn apply(&self, state: &AppState, cfg: &Config, kek: &KeyEncryptionKey) {
        state
            .policy_cell
            .store(std::sync::Arc::new(crate::startup::policy_with(
                cfg, self, kek,
            )));
    }
    /// The deployment's profile, read-only here: it decides the TLS
    /// suites and discovery, which only a restart changes.
    fn annotate(&self, cfg: &Config, view: &mut Value) {
        view["profile"] = json!(cfg.profile.as_str());
    }
}

impl Section for HooksConfig {
    const NAME: &'static str = "hooks";
    const SECRETS: &'static [&'static str] = &[
        "consent_service_token",
        "shared_secret",
        "revocation_webhook_token",
        "bank_api_token_sha256",
    ];
    const RESTART_FIELDS: &'static [&'static str] = &["acr_values", "consent_claim"];
    const SCOPE: &'static str = scope::HOOKS;
    fn from_file(cfg: &Config) -> Option<Self> {
        cfg.hooks.clone()
    }
    fn validate(&self, cfg: &Config, _kek: &KeyEncryptionKey) -> Result<(), String> {
        bridge_of(cfg, self).map(|_| ())
    }
    fn apply(&self, state: &AppState, cfg: &Config, _kek: &KeyEncryptionKey) {
        match bridge_of(cfg, self) {
            Ok(b) => state.bridge_cell.store(b),
            Err(e) => {
                tracing::error!(error = %e, "[hooks] from the admin API no longer builds; keeping the current")
            }
        }
    }
}

impl Section for CibaConfig {
    const NAME: &'static str = "ciba";
    const SECRETS: &'static [&'static str] = &["service_token"];
    const SCOPE: &'static str = scope::HOOKS;
    fn from_file(cfg: &Config) -> Option<Self> {
        cfg.ciba.clone()
    }
    fn validate(&self, cfg: &Config, kek: &KeyEncryptionKey) -> Result<(), String> {
        CibaConfig::validate(self)?;
        ciba_of(cfg, self, kek).map(|_| ())
    }
    fn apply(&self, state: &AppState, cfg: &Config, kek: &KeyEncryptionKey) {
        match ciba_of(cfg, self, kek) {
            Ok(h) => state.ciba_cell.store(h),
            Err(e) => {
                tracing::error!(error = %e, "[ciba] from the admin API no longer builds; keeping the current")
            }
        }
    }
}

/// `[scopes]`: the consent page's words for each scope.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(transparent)]
pub(crate) struct ScopeWords(BTreeMap<String, ScopeConfig>);

/// Scopes whose released claims the view lists besides the configured ones.
const STANDARD_SCOPES: [&str; 6] = [
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "offline_access",
];

impl Section for ScopeWords {
    const NAME: &'static str = "scopes";
    const SCOPE: &'static str = scope::SETTINGS;
    const VIEW_ONLY: &'static [&'static str] = &["released_claims"];
    fn from_file(cfg: &Config) -> Option<Self> {
        Some(ScopeWords(cfg.scopes.clone()))
    }
    fn validate(&self, _cfg: &Config, _kek: &KeyEncryptionKey) -> Result<(), String> {
        crate::theme::validate_scopes(&self.0).map_err(|e| e.to_string())
    }
    fn apply(&self, state: &AppState, _cfg: &Config, _kek: &KeyEncryptionKey) {
        state.theme.set_scopes(self.0.clone());
    }
    /// The claims each scope releases: OIDC Core §5.4's sets, fixed (the
    /// user's claims of `[[users]]` or the bank's login app are released
    /// by these scopes or by a `claims` request).
    fn annotate(&self, _cfg: &Config, view: &mut Value) {
        let names: std::collections::BTreeSet<&str> = self
            .0
            .keys()
            .map(String::as_str)
            .chain(STANDARD_SCOPES)
            .collect();
        let released: serde_json::Map<String, Value> = names
            .into_iter()
            .map(|n| (n.to_owned(), json!(oauth_core::userinfo::scope_claims(n))))
            .collect();
        view["released_claims"] = Value::Object(released);
    }
}

/// CIBA's hooks `ciba` builds.
pub fn ciba_of(
    cfg: &Config,
    ciba: &CibaConfig,
    kek: &KeyEncryptionKey,
) -> Result<Option<std::sync::Arc<ciba::hooks::Hooks>>, String> {
    let mut with = cfg.clone();
    with.ciba = Some(ciba.clone());
    crate::ciba::hooks(
        &with,
        crate::startup::material_dev_ca(cfg).as_deref(),
        crate::startup::ciba_delivery_key(kek),
    )
}

/// The consent bridge `hooks` builds (its validation included).
fn bridge_of(
    cfg: &Config,
    hooks: &HooksConfig,
) -> Result<Option<std::sync::Arc<consent_bridge::Bridge>>, String> {
    let mut with = cfg.clone();
    with.hooks = Some(hooks.clone());
    crate::bank_api::bridge(&with, crate::startup::material_dev_ca(cfg).as_deref())
}

fn file_owned<S: Section>(cfg: &Config) -> bool {
    cfg.admin.file_owned.iter().any(|s| s == S::NAME)
}

/// The stored override of `S`, if any, with its version.
async fn stored<S: Section>(
    store: &Store,
    kek: &KeyEncryptionKey,
) -> Result<Option<(S, i64)>, String> {
    let Some((text, version)) = store
        .get_setting(S::NAME)
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(None);
    };
    let plain = if !S::SECRETS.is_empty() {
        let sealed = URL_SAFE_NO_PAD.decode(&text).map_err(|e| e.to_string())?;
        let opened = kek
            .open_setting(S::NAME, &sealed)
            .map_err(|e| e.to_string())?;
        String::from_utf8(opened.to_vec()).map_err(|e| e.to_string())?
    } else {
        text
    };
    let section = serde_json::from_str(&plain)
        .map_err(|e| format!("the stored [{}] is unreadable: {e}", S::NAME))?;
    Ok(Some((section, version)))
}

fn stored_text<S: Section>(section: &S, kek: &KeyEncryptionKey) -> Result<String, Refusal> {
    let plain = serde_json::to_string(section).unwrap_or_default();
    if S::SECRETS.is_empty() {
        return Ok(plain);
    }
    kek.seal_setting(S::NAME, plain.as_bytes())
        .map(|b| URL_SAFE_NO_PAD.encode(b))
        .map_err(|e| {
            tracing::error!(error = %e, "admin API: sealing a setting failed");
            Refusal::unavailable()
        })
}

/// At start: `S` in force (the API's override unless the file owns it;
/// the fields that only a restart changes stay the file's).
pub(crate) async fn load<S: Section>(
    store: &Store,
    kek: &KeyEncryptionKey,
    cfg: &Config,
) -> Result<Option<S>, String> {
    let file = S::from_file(cfg);
    if file_owned::<S>(cfg) || file.is_none() {
        return Ok(file);
    }
    match stored::<S>(store, kek).await? {
        None => Ok(file),
        Some((section, _)) => {
            let mut doc = serde_json::to_value(&section).map_err(|e| e.to_string())?;
            if let Some(f) = &file {
                // The restart-only fields follow the file.
                let file_doc = serde_json::to_value(f).map_err(|e| e.to_string())?;
                for k in S::RESTART_FIELDS {
                    doc[*k] = file_doc[*k].clone();
                }
            }
            serde_json::from_value(doc)
                .map(Some)
                .map_err(|e| e.to_string())
        }
    }
}

/// After another instance's change: `S` in force again.
pub(crate) async fn reload<S: Section>(state: &AppState, kek: &KeyEncryptionKey, cfg: &Config) {
    match load::<S>(&state.store, kek, cfg).await {
        Ok(Some(section)) if section.validate(cfg, kek).is_ok() => section.apply(state, cfg, kek),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, setting = S::NAME, "settings reload failed"),
    }
}

fn view<S: Section>(cfg: &Config, s: &S, source: &str) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    redact::<S>(&mut v);
    s.annotate(cfg, &mut v);
    if let Value::Object(m) = &mut v {
        m.insert("source".into(), Value::String(source.into()));
    }
    v
}

fn tag<S: Section>(s: &S, version: Option<i64>) -> String {
    etag(&[
        S::NAME,
        &serde_json::to_string(s).unwrap_or_default(),
        &version.map_or_else(|| "file".to_owned(), |v| v.to_string()),
    ])
}

/// What is in force, the stored version, and where it comes from.
async fn current<S: Section>(st: &AdminState) -> Result<(S, Option<i64>, &'static str), Refusal> {
    let Some(file) = S::from_file(&st.cfg) else {
        return Err(Refusal::conflict(format!(
            "[{}] is not configured in the file: the admin API changes it only where the server started with it",
            S::NAME
        )));
    };
    if file_owned::<S>(&st.cfg) {
        return Ok((file, None, "file (file-owned)"));
    }
    match stored::<S>(&st.app.store, &st.kek).await.map_err(|e| {
        tracing::warn!(error = %e, setting = S::NAME, "admin API: settings");
        Refusal::unavailable()
    })? {
        Some((s, v)) => Ok((s, Some(v), "admin")),
        None => Ok((file, None, "file")),
    }
}

fn writable<S: Section>(st: &AdminState) -> Result<(), Refusal> {
    if file_owned::<S>(&st.cfg) {
        return Err(Refusal::conflict(format!(
            "[{}] is file-owned (admin.file_owned): change it in the configuration file",
            S::NAME
        )));
    }
    Ok(())
}

fn route<S: Section>(action: &'static str, write: bool) -> Route {
    Route {
        action,
        resource: "settings",
        scope: if write { S::SCOPE } else { scope::READ },
    }
}

async fn get<S: Section>(st: &AdminState, req: &HttpRequest) -> HttpResponse {
    run(
        st,
        req,
        route::<S>("settings.get", false),
        Some(S::NAME.into()),
        |_ctx| async {
            let (s, v, source) = current::<S>(st).await?;
            Ok(Done::read(view(&st.cfg, &s, source)).etag(tag(&s, v)))
        },
    )
    .await
}

async fn write<S: Section>(
    st: &AdminState,
    ctx: &Ctx,
    req: &HttpRequest,
    doc: Value,
) -> Result<Done, Refusal> {
    let (before, version, _) = current::<S>(st).await?;
    check_if_match(req, &tag(&before, version))?;
    let mut doc = doc;
    if let Value::Object(m) = &mut doc {
        m.remove("source");
        for k in S::VIEW_ONLY {
            m.remove(*k);
        }
    }
    merge_protected(&mut doc, &before)?;
    let section: S = serde_json::from_value(doc)
        .map_err(|e| Refusal::bad_request("invalid_request", e.to_string()))?;
    section
        .validate(&st.cfg, &st.kek)
        .map_err(|e| Refusal::bad_request("invalid_request", e))?;
    let audit = ctx.audit(
        StatusCode::OK,
        json!({"before": view(&st.cfg, &before, "before"), "after": view(&st.cfg, &section, "admin")}),
    );
    let text = stored_text(&section, &st.kek)?;
    match st
        .app
        .store
        .change_setting(S::NAME, version, text, audit, now())
        .await?
    {
        ChangeOutcome::Done => {}
        _ => return Err(stale()),
    }
    section.apply(&st.app, &st.cfg, &st.kek);
    tracing::info!(target: "strongroom::security", event = "settings_changed", setting = S::NAME,
        actor = %ctx.actor.sub, "settings changed through the admin API");
    let new_version = Some(version.map_or(1, |v| v + 1));
    Ok(
        Done::changed(StatusCode::OK, Some(view(&st.cfg, &section, "admin")))
            .etag(tag(&section, new_version)),
    )
}

async fn replace<S: Section>(
    st: &AdminState,
    req: &HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    run(
        st,
        req,
        route::<S>("settings.replace", true),
        Some(S::NAME.into()),
        |ctx| async move {
            writable::<S>(st)?;
            let doc = read_json(st, req, payload, "application/json").await?;
            write::<S>(st, &ctx, req, doc).await
        },
    )
    .await
}

async fn patch<S: Section>(
    st: &AdminState,
    req: &HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    run(
        st,
        req,
        route::<S>("settings.patch", true),
        Some(S::NAME.into()),
        |ctx| async move {
            writable::<S>(st)?;
            let patch = read_json(st, req, payload, "application/merge-patch+json").await?;
            if !patch.is_object() {
                return Err(Refusal::bad_request(
                    "invalid_request",
                    "a merge patch of a settings section is a JSON object",
                ));
            }
            let (before, _, _) = current::<S>(st).await?;
            let mut doc = serde_json::to_value(&before).unwrap_or(Value::Null);
            json_patch::merge(&mut doc, &patch);
            write::<S>(st, &ctx, req, doc).await
        },
    )
    .await
}

async fn delete<S: Section>(st: &AdminState, req: &HttpRequest) -> HttpResponse {
    run(
        st,
        req,
        route::<S>("settings.delete", true),
        Some(S::NAME.into()),
        |ctx| async move {
            writable::<S>(st)?;
            let (before, version, _) = current::<S>(st).await?;
            let Some(version) = version else {
                return Err(Refusal::not_found(
                    "change of this section through the admin API",
                ));
            };
            check_if_match(req, &tag(&before, Some(version)))?;
            let Some(file) = S::from_file(&st.cfg) else {
                return Err(Refusal::not_found("section in the file"));
            };
            let audit = ctx.audit(
                StatusCode::OK,
                json!({"before": view(&st.cfg, &before, "admin"), "after": view(&st.cfg, &file, "file")}),
            );
            match st.app.store.delete_setting(S::NAME, version, audit).await? {
                ChangeOutcome::Done => {}
                _ => return Err(stale()),
            }
            file.apply(&st.app, &st.cfg, &st.kek);
            Ok(Done::changed(StatusCode::OK, Some(view(&st.cfg, &file, "file"))).etag(tag(&file, None)))
        },
    )
    .await
}

/// The four routes of one section, `GET`/`PUT`/`PATCH`/`DELETE` on
/// `$path`: thin handlers over the generic ones above, one set per
/// section because the OpenAPI document names each route.
macro_rules! section_routes {
    ($section:ty, $path:literal, $name:literal, $schema:ident, $scope:literal,
     $get:ident, $replace:ident, $patch:ident, $delete:ident) => {
        #[doc = concat!("`[", $name, "]` in force (secrets `<redacted>`), with its `ETag` and where it comes from.")]
        #[utoipa::path(get, path = $path, tag = "settings",
            responses((status = 200, description = "in force", body = super::doc::$schema, headers(("ETag" = String))),
                (status = 409, body = super::doc::ErrorBody),
                (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
            security(("admin_token" = ["admin:read"])))]
        pub(crate) async fn $get(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
            get::<$section>(&st, &req).await
        }

        #[doc = concat!("Replace `[", $name, "]` (`If-Match` required; `<redacted>` keeps a secret).")]
        #[utoipa::path(put, path = $path, tag = "settings",
            params(("If-Match" = String, Header)),
            request_body(content = super::doc::$schema, content_type = "application/json"),
            responses((status = 200, description = "in force now", body = super::doc::$schema, headers(("ETag" = String))),
                (status = 400, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
                (status = 412, body = super::doc::ErrorBody), (status = 428, body = super::doc::ErrorBody),
                (status = 413, body = super::doc::ErrorBody), (status = 415, body = super::doc::ErrorBody),
                (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
            security(("admin_token" = [$scope])))]
        pub(crate) async fn $replace(
            st: web::Data<AdminState>,
            req: HttpRequest,
            payload: web::Payload,
        ) -> HttpResponse {
            replace::<$section>(&st, &req, payload).await
        }

        #[doc = concat!("Change `[", $name, "]` with an RFC 7396 merge patch (`If-Match` required).")]
        #[utoipa::path(patch, path = $path, tag = "settings",
            params(("If-Match" = String, Header)),
            request_body(content = super::doc::$schema, content_type = "application/merge-patch+json"),
            responses((status = 200, description = "in force now", body = super::doc::$schema, headers(("ETag" = String))),
                (status = 400, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
                (status = 412, body = super::doc::ErrorBody), (status = 428, body = super::doc::ErrorBody),
                (status = 413, body = super::doc::ErrorBody), (status = 415, body = super::doc::ErrorBody),
                (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
            security(("admin_token" = [$scope])))]
        pub(crate) async fn $patch(
            st: web::Data<AdminState>,
            req: HttpRequest,
            payload: web::Payload,
        ) -> HttpResponse {
            patch::<$section>(&st, &req, payload).await
        }

        #[doc = concat!("Drop the API's change of `[", $name, "]`: the file's again (`If-Match` required).")]
        #[utoipa::path(delete, path = $path, tag = "settings",
            params(("If-Match" = String, Header)),
            responses((status = 200, description = "the file's, in force now", body = super::doc::$schema, headers(("ETag" = String))),
                (status = 404, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
                (status = 412, body = super::doc::ErrorBody), (status = 428, body = super::doc::ErrorBody),
                (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
            security(("admin_token" = [$scope])))]
        pub(crate) async fn $delete(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
            delete::<$section>(&st, &req).await
        }
    };
}

section_routes!(
    TokensConfig,
    "/admin/v1/settings/tokens",
    "tokens",
    Tokens,
    "admin:settings",
    get_tokens,
    replace_tokens,
    patch_tokens,
    delete_tokens
);
section_routes!(
    ScopeWords,
    "/admin/v1/settings/scopes",
    "scopes",
    Scopes,
    "admin:settings",
    get_scopes,
    replace_scopes,
    patch_scopes,
    delete_scopes
);
section_routes!(
    HooksConfig,
    "/admin/v1/settings/hooks",
    "hooks",
    Hooks,
    "admin:hooks",
    get_hooks,
    replace_hooks,
    patch_hooks,
    delete_hooks
);
section_routes!(
    CibaConfig,
    "/admin/v1/settings/ciba",
    "ciba",
    Ciba,
    "admin:hooks",
    get_ciba,
    replace_ciba,
    patch_ciba,
    delete_ciba
);

/// The sections in force at start (the admin API's changes over the file's).
pub struct Sections {
    pub tokens: TokensConfig,
    pub scopes: BTreeMap<String, ScopeConfig>,
    pub hooks: Option<HooksConfig>,
    pub ciba: Option<CibaConfig>,
}

/// At start: `[tokens]`, `[hooks]` and `[ciba]` in force.
pub async fn load_sections(
    store: &Store,
    kek: &KeyEncryptionKey,
    cfg: &Config,
) -> Result<Sections, String> {
    Ok(Sections {
        tokens: load::<TokensConfig>(store, kek, cfg)
            .await?
            .unwrap_or_else(|| cfg.tokens.clone()),
        scopes: load::<ScopeWords>(store, kek, cfg)
            .await?
            .map_or_else(|| cfg.scopes.clone(), |w| w.0),
        hooks: load::<HooksConfig>(store, kek, cfg).await?,
        ciba: load::<CibaConfig>(store, kek, cfg).await?,
    })
}

/// After another instance's change: every section again.
pub async fn reload_sections(state: &AppState, kek: &KeyEncryptionKey, cfg: &Config) {
    reload::<TokensConfig>(state, kek, cfg).await;
    reload::<ScopeWords>(state, kek, cfg).await;
    if cfg.hooks.is_some() {
        reload::<HooksConfig>(state, kek, cfg).await;
    }
    if cfg.ciba.is_some() {
        reload::<CibaConfig>(state, kek, cfg).await;
    }
}
