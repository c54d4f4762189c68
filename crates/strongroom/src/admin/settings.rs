//! `/admin/v1/settings/tokens`: the lifetimes and token rules of
//! `[tokens]` (codes, access, refresh and ID tokens, request URIs, refresh
//! rotation, the access-token format, DPoP nonces), changed live.
//!
//! The file's `[tokens]` is the starting point; a change through the API
//! is kept in the database (`admin_settings`, `tokens`) and wins over the
//! file from then on, on every instance and across restarts, until it is
//! removed again (`DELETE`: back to the file's values). With
//! `admin.file_owned = ["tokens"]` the file keeps the last word and the API
//! refuses to change it. One validator: [`TokensConfig::validate`], as at
//! start. The new policy is swapped in at once here and within
//! `admin.propagation_ms` elsewhere; a request already running keeps the
//! policy it started with.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use oauth_core::secret::now;
use serde_json::{Value, json};
use token_store::{ChangeOutcome, Store};

use super::{
    AdminState, Ctx, Done, Refusal, Route, check_if_match, etag, read_json, run, scope, stale,
};
use crate::config::{Config, TokensConfig};
use crate::http::AppState;

const SETTING: &str = "tokens";

/// The stored `[tokens]` override, if any, with its version.
async fn stored(store: &Store) -> Result<Option<(TokensConfig, i64)>, String> {
    match store
        .get_setting(SETTING)
        .await
        .map_err(|e| e.to_string())?
    {
        None => Ok(None),
        Some((text, v)) => serde_json::from_str(&text)
            .map(|t| Some((t, v)))
            .map_err(|e| format!("the stored [tokens] is unreadable: {e}")),
    }
}

fn file_owned(cfg: &Config) -> bool {
    cfg.admin.file_owned.iter().any(|s| s == SETTING)
}

/// At start: the `[tokens]` in force (the API's override unless the file
/// owns it).
pub async fn load_tokens(store: &Store, cfg: &Config) -> Result<TokensConfig, String> {
    if file_owned(cfg) {
        return Ok(cfg.tokens.clone());
    }
    Ok(stored(store)
        .await?
        .map_or_else(|| cfg.tokens.clone(), |(t, _)| t))
}

/// After another instance's change: the policy from the `[tokens]` now in
/// force.
pub async fn reload_tokens(state: &AppState, cfg: &Config) {
    if file_owned(cfg) {
        return;
    }
    match stored(&state.store).await {
        Ok(found) => {
            let tokens = found.map_or_else(|| cfg.tokens.clone(), |(t, _)| t);
            if tokens.validate().is_ok() {
                state
                    .policy_cell
                    .store(std::sync::Arc::new(crate::startup::policy_with(
                        cfg, &tokens,
                    )));
            }
        }
        Err(e) => tracing::warn!(error = %e, "[tokens] reload: database unavailable"),
    }
}

fn view(t: &TokensConfig, source: &str) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("source".into(), Value::String(source.into()));
    }
    v
}

fn tokens_etag(t: &TokensConfig, version: Option<i64>) -> String {
    etag(&[
        &serde_json::to_string(t).unwrap_or_default(),
        &version.map_or_else(|| "file".to_owned(), |v| v.to_string()),
    ])
}

/// What is in force, its `ETag` and the stored version.
async fn current(st: &AdminState) -> Result<(TokensConfig, Option<i64>, &'static str), Refusal> {
    if file_owned(&st.cfg) {
        return Ok((st.cfg.tokens.clone(), None, "file (file-owned)"));
    }
    match stored(&st.app.store).await.map_err(|e| {
        tracing::warn!(error = %e, "admin API: [tokens]");
        Refusal::unavailable()
    })? {
        Some((t, v)) => Ok((t, Some(v), "admin")),
        None => Ok((st.cfg.tokens.clone(), None, "file")),
    }
}

fn writable(st: &AdminState) -> Result<(), Refusal> {
    if file_owned(&st.cfg) {
        return Err(Refusal::conflict(
            "[tokens] is file-owned (admin.file_owned): change it in the configuration file",
        ));
    }
    Ok(())
}

/// The token settings in force, with where they come from (`file`,
/// `admin`).
#[utoipa::path(get, path = "/admin/v1/settings/tokens", tag = "settings",
    responses((status = 200, description = "the [tokens] in force", body = super::doc::Tokens,
            headers(("ETag" = String))),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:read"])))]
pub(crate) async fn get(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let route = Route {
        action: "settings.get",
        resource: "settings",
        scope: scope::READ,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(SETTING.into()), |_ctx| async {
        let (t, v, source) = current(st).await?;
        Ok(Done::read(view(&t, source)).etag(tokens_etag(&t, v)))
    })
    .await
}

async fn write(st: &AdminState, ctx: &Ctx, req: &HttpRequest, doc: Value) -> Result<Done, Refusal> {
    let (before, version, _) = current(st).await?;
    check_if_match(req, &tokens_etag(&before, version))?;
    let mut doc = doc;
    if let Value::Object(m) = &mut doc {
        m.remove("source");
    }
    let tokens: TokensConfig = serde_json::from_value(doc)
        .map_err(|e| Refusal::bad_request("invalid_request", e.to_string()))?;
    tokens
        .validate()
        .map_err(|e| Refusal::bad_request("invalid_request", e.to_string()))?;
    let text = serde_json::to_string(&tokens).unwrap_or_default();
    let audit = ctx.audit(
        StatusCode::OK,
        json!({"before": view(&before, "before"), "after": view(&tokens, "admin")}),
    );
    match st
        .app
        .store
        .change_setting(SETTING, version, text, audit, now())
        .await?
    {
        ChangeOutcome::Done => {}
        _ => return Err(stale()),
    }
    st.app
        .policy_cell
        .store(std::sync::Arc::new(crate::startup::policy_with(
            &st.cfg, &tokens,
        )));
    tracing::info!(target: "strongroom::security", event = "settings_changed", setting = SETTING,
        actor = %ctx.actor.sub, "token settings changed through the admin API");
    let new_version = Some(version.map_or(1, |v| v + 1));
    Ok(Done::changed(StatusCode::OK, Some(view(&tokens, "admin")))
        .etag(tokens_etag(&tokens, new_version)))
}

/// Replace the token settings (`If-Match` required): every field of
/// `[tokens]`, missing ones at their defaults.
#[utoipa::path(put, path = "/admin/v1/settings/tokens", tag = "settings",
    params(("If-Match" = String, Header)),
    request_body(content = super::doc::Tokens, content_type = "application/json"),
    responses((status = 200, description = "in force now", body = super::doc::Tokens, headers(("ETag" = String))),
        (status = 400, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
        (status = 412, body = super::doc::ErrorBody), (status = 428, body = super::doc::ErrorBody),
        (status = 413, body = super::doc::ErrorBody), (status = 415, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:settings"])))]
pub(crate) async fn replace(
    st: web::Data<AdminState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let route = Route {
        action: "settings.replace",
        resource: "settings",
        scope: scope::SETTINGS,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(SETTING.into()), |ctx| async move {
        writable(st)?;
        let doc = read_json(st, req, payload, "application/json").await?;
        write(st, &ctx, req, doc).await
    })
    .await
}

/// Change some token settings with an RFC 7396 merge patch (`If-Match`
/// required).
#[utoipa::path(patch, path = "/admin/v1/settings/tokens", tag = "settings",
    params(("If-Match" = String, Header)),
    request_body(content = super::doc::Tokens, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "in force now", body = super::doc::Tokens, headers(("ETag" = String))),
        (status = 400, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
        (status = 412, body = super::doc::ErrorBody), (status = 428, body = super::doc::ErrorBody),
        (status = 413, body = super::doc::ErrorBody), (status = 415, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:settings"])))]
pub(crate) async fn patch(
    st: web::Data<AdminState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let route = Route {
        action: "settings.patch",
        resource: "settings",
        scope: scope::SETTINGS,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(SETTING.into()), |ctx| async move {
        writable(st)?;
        let patch = read_json(st, req, payload, "application/merge-patch+json").await?;
        if !patch.is_object() {
            return Err(Refusal::bad_request(
                "invalid_request",
                "a merge patch of [tokens] is a JSON object",
            ));
        }
        let (before, _, _) = current(st).await?;
        let mut doc = serde_json::to_value(&before).unwrap_or(Value::Null);
        json_patch::merge(&mut doc, &patch);
        write(st, &ctx, req, doc).await
    })
    .await
}

/// Drop the API's change: the file's `[tokens]` again (`If-Match`
/// required).
#[utoipa::path(delete, path = "/admin/v1/settings/tokens", tag = "settings",
    params(("If-Match" = String, Header)),
    responses((status = 200, description = "the file's values, in force now", body = super::doc::Tokens, headers(("ETag" = String))),
        (status = 404, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
        (status = 412, body = super::doc::ErrorBody), (status = 428, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:settings"])))]
pub(crate) async fn delete(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let route = Route {
        action: "settings.delete",
        resource: "settings",
        scope: scope::SETTINGS,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(SETTING.into()), |ctx| async move {
        writable(st)?;
        let (before, version, _) = current(st).await?;
        let Some(version) = version else {
            return Err(Refusal::not_found(
                "change to [tokens] through the admin API",
            ));
        };
        check_if_match(req, &tokens_etag(&before, Some(version)))?;
        let file = st.cfg.tokens.clone();
        let audit = ctx.audit(
            StatusCode::OK,
            json!({"before": view(&before, "admin"), "after": view(&file, "file")}),
        );
        match st.app.store.delete_setting(SETTING, version, audit).await? {
            ChangeOutcome::Done => {}
            _ => return Err(stale()),
        }
        st.app
            .policy_cell
            .store(std::sync::Arc::new(crate::startup::policy_with(
                &st.cfg, &file,
            )));
        Ok(Done::changed(StatusCode::OK, Some(view(&file, "file"))).etag(tokens_etag(&file, None)))
    })
    .await
}
