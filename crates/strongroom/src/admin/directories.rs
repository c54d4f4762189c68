//! `/admin/v1/directories`: the trust anchors of dynamic registration
//! (software-statement issuers with their rule packs), the file's
//! `[[directories]]` (file-owned, shown, not changed here) and those added
//! through this API, kept in the database as one document (the setting
//! `directories`) under optimistic concurrency.
//!
//! One validator: the whole set, file's and API's, must build a
//! `dcr::Registrar` (`Registrar::new`, which checks names, issuers, keys
//! and rule packs) before anything is written. After a change this
//! instance swaps its registrar at once; the others do when they see the
//! settings version move. Registration must be offered (a directory or
//! initial access tokens at start) for directories to be added, since
//! discovery advertises the endpoint from the start.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use dcr::DirectoryConfig;
use oauth_core::secret::now;
use serde_json::{Value, json};
use token_store::{ChangeOutcome, Store};

use super::{
    AdminState, Ctx, Done, Refusal, Route, check_if_match, etag, read_json, run, scope, stale,
};
use crate::config::Config;
use crate::http::AppState;

/// The setting's name in `admin_settings`.
const SETTING: &str = "directories";

/// The admin API's directories as stored, and the document's version.
async fn stored(store: &Store) -> Result<(Vec<DirectoryConfig>, Option<i64>), String> {
    match store
        .get_setting(SETTING)
        .await
        .map_err(|e| e.to_string())?
    {
        None => Ok((Vec::new(), None)),
        Some((text, version)) => serde_json::from_str(&text)
            .map(|d| (d, Some(version)))
            .map_err(|e| format!("the stored directories are unreadable: {e}")),
    }
}

/// At start: the admin API's directories (none while the file owns them).
pub async fn load_directories(store: &Store, cfg: &Config) -> Result<Vec<DirectoryConfig>, String> {
    if cfg.admin.file_owned.iter().any(|s| s == SETTING) {
        return Ok(Vec::new());
    }
    stored(store).await.map(|(d, _)| d)
}

/// After another instance's change: rebuilds the registrar from the file's
/// and the stored directories; a failure keeps the current one.
pub async fn reload_directories(state: &AppState, cfg: &Config) {
    if cfg.admin.file_owned.iter().any(|s| s == SETTING) {
        return;
    }
    match stored(&state.store).await {
        Ok((dirs, _)) => match crate::registration::registrar_with(cfg, &dirs) {
            Ok(r) => state.registrar.store(r),
            Err(e) => {
                tracing::error!(error = %e, "directories reload failed; keeping the current ones")
            }
        },
        Err(e) => tracing::warn!(error = %e, "directories reload: database unavailable"),
    }
}

fn view(d: &DirectoryConfig, file_owned: bool) -> Value {
    let mut v = serde_json::to_value(d).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert("file_owned".into(), Value::Bool(file_owned));
    }
    v
}

fn dir_etag(d: &DirectoryConfig) -> String {
    etag(&[&d.name, &serde_json::to_string(d).unwrap_or_default()])
}

fn refuse_invalid(e: impl std::fmt::Display) -> Refusal {
    Refusal::bad_request("invalid_request", e.to_string())
}

/// Validates `admin` with the file's directories as the registrar would
/// be built, and swaps it in after `write` stored it.
async fn write(
    st: &AdminState,
    ctx: &Ctx,
    version: Option<i64>,
    admin: Vec<DirectoryConfig>,
    status: StatusCode,
    detail: Value,
) -> Result<(), Refusal> {
    if st.cfg.admin.file_owned.iter().any(|s| s == SETTING) {
        return Err(Refusal::conflict(
            "directories are file-owned (admin.file_owned): change them in the configuration file",
        ));
    }
    if st.app.registrar.load().is_none() {
        return Err(Refusal::conflict(
            "dynamic registration is not offered by this server: configure a directory or initial access tokens in the file first",
        ));
    }
    let registrar = crate::registration::registrar_with(&st.cfg, &admin).map_err(refuse_invalid)?;
    let text = serde_json::to_string(&admin).map_err(refuse_invalid)?;
    match st
        .app
        .store
        .change_setting(SETTING, version, text, ctx.audit(status, detail), now())
        .await?
    {
        ChangeOutcome::Done => {}
        _ => return Err(stale()),
    }
    st.app.registrar.store(registrar);
    tracing::info!(target: "strongroom::security", event = "directories_changed",
        actor = %ctx.actor.sub, "registration trust anchors changed through the admin API");
    Ok(())
}

fn parse(doc: Value) -> Result<DirectoryConfig, Refusal> {
    serde_json::from_value(doc).map_err(refuse_invalid)
}

/// Every trust anchor, the file's first.
#[utoipa::path(get, path = "/admin/v1/directories", tag = "directories",
    responses((status = 200, description = "the directories", body = super::doc::DirectoryList),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:read"])))]
pub(crate) async fn list(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let route = Route {
        action: "directories.list",
        resource: "directories",
        scope: scope::READ,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, None, |_ctx| async {
        let (admin, _) = stored(&st.app.store).await.map_err(|e| {
            tracing::warn!(error = %e, "admin API: directories");
            Refusal::unavailable()
        })?;
        let items: Vec<Value> = st
            .cfg
            .directories
            .iter()
            .map(|d| view(d, true))
            .chain(admin.iter().map(|d| view(d, false)))
            .collect();
        Ok(Done::read(json!({ "items": items })))
    })
    .await
}

/// One trust anchor, with its `ETag`.
#[utoipa::path(get, path = "/admin/v1/directories/{name}", tag = "directories",
    params(("name" = String, Path)),
    responses((status = 200, description = "the directory", body = super::doc::Directory,
            headers(("ETag" = String))),
        (status = 404, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:read"])))]
pub(crate) async fn get(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let name = path.into_inner();
    let route = Route {
        action: "directories.get",
        resource: "directories",
        scope: scope::READ,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(name.clone()), |_ctx| async {
        if let Some(d) = st.cfg.directories.iter().find(|d| d.name == name) {
            return Ok(Done::read(view(d, true)).etag(dir_etag(d)));
        }
        let (admin, _) = stored(&st.app.store)
            .await
            .map_err(|_| Refusal::unavailable())?;
        let d = admin
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| Refusal::not_found("such directory"))?;
        Ok(Done::read(view(d, false)).etag(dir_etag(d)))
    })
    .await
}

/// Add a trust anchor (the fields of `[[directories]]`).
#[utoipa::path(post, path = "/admin/v1/directories", tag = "directories",
    request_body(content = super::doc::Directory, content_type = "application/json"),
    responses((status = 201, description = "added", body = super::doc::Directory,
            headers(("ETag" = String), ("Location" = String))),
        (status = 400, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
        (status = 412, body = super::doc::ErrorBody), (status = 413, body = super::doc::ErrorBody),
        (status = 415, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:directories"])))]
pub(crate) async fn create(
    st: web::Data<AdminState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let route = Route {
        action: "directories.create",
        resource: "directories",
        scope: scope::DIRECTORIES,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, None, |mut ctx| async move {
        let d = parse(read_json(st, req, payload, "application/json").await?)?;
        ctx.entry.resource_id = Some(d.name.clone());
        let (mut admin, version) = stored(&st.app.store)
            .await
            .map_err(|_| Refusal::unavailable())?;
        if st
            .cfg
            .directories
            .iter()
            .chain(&admin)
            .any(|x| x.name == d.name)
        {
            return Err(Refusal::conflict("a directory with this name exists").about(&d.name));
        }
        admin.push(d.clone());
        write(
            st,
            &ctx,
            version,
            admin,
            StatusCode::CREATED,
            json!({"after": view(&d, false)}),
        )
        .await
        .map_err(|r| r.about(&d.name))?;
        let mut done = Done::changed(StatusCode::CREATED, Some(view(&d, false))).etag(dir_etag(&d));
        done.location = Some(format!("/admin/v1/directories/{}", d.name));
        Ok(done)
    })
    .await
}

/// The admin API's directory `name` and the stored document's version:
/// 409 for a file-owned one, 404 for an unknown one, 412/428 on `If-Match`.
async fn changeable(
    st: &AdminState,
    req: &HttpRequest,
    name: &str,
) -> Result<(Vec<DirectoryConfig>, Option<i64>, usize), Refusal> {
    if st.cfg.directories.iter().any(|d| d.name == name) {
        return Err(Refusal::conflict(
            "this directory is declared in the configuration file (file-owned): change it there",
        ));
    }
    let (admin, version) = stored(&st.app.store)
        .await
        .map_err(|_| Refusal::unavailable())?;
    let i = admin
        .iter()
        .position(|d| d.name == name)
        .ok_or_else(|| Refusal::not_found("such directory"))?;
    check_if_match(req, &dir_etag(&admin[i]))?;
    Ok((admin, version, i))
}

/// Replace a trust anchor added here (`If-Match` required).
#[utoipa::path(put, path = "/admin/v1/directories/{name}", tag = "directories",
    params(("name" = String, Path), ("If-Match" = String, Header)),
    request_body(content = super::doc::Directory, content_type = "application/json"),
    responses((status = 200, description = "replaced", body = super::doc::Directory, headers(("ETag" = String))),
        (status = 400, body = super::doc::ErrorBody), (status = 404, body = super::doc::ErrorBody),
        (status = 409, body = super::doc::ErrorBody), (status = 412, body = super::doc::ErrorBody),
        (status = 428, body = super::doc::ErrorBody), (status = 413, body = super::doc::ErrorBody),
        (status = 415, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:directories"])))]
pub(crate) async fn replace(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let name = path.into_inner();
    let route = Route {
        action: "directories.replace",
        resource: "directories",
        scope: scope::DIRECTORIES,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(name.clone()), |ctx| async move {
        let (mut admin, version, i) = changeable(st, req, &name).await?;
        let d = parse(read_json(st, req, payload, "application/json").await?)?;
        if d.name != name {
            return Err(Refusal::bad_request(
                "invalid_request",
                "name cannot be changed",
            ));
        }
        let before = std::mem::replace(&mut admin[i], d.clone());
        let detail = json!({"before": view(&before, false), "after": view(&d, false)});
        write(st, &ctx, version, admin, StatusCode::OK, detail).await?;
        Ok(Done::changed(StatusCode::OK, Some(view(&d, false))).etag(dir_etag(&d)))
    })
    .await
}

/// Change some fields of a trust anchor added here with an RFC 7396 merge
/// patch (`If-Match` required).
#[utoipa::path(patch, path = "/admin/v1/directories/{name}", tag = "directories",
    params(("name" = String, Path), ("If-Match" = String, Header)),
    request_body(content = super::doc::Directory, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "changed", body = super::doc::Directory, headers(("ETag" = String))),
        (status = 400, body = super::doc::ErrorBody), (status = 404, body = super::doc::ErrorBody),
        (status = 409, body = super::doc::ErrorBody), (status = 412, body = super::doc::ErrorBody),
        (status = 428, body = super::doc::ErrorBody), (status = 413, body = super::doc::ErrorBody),
        (status = 415, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:directories"])))]
pub(crate) async fn patch(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let name = path.into_inner();
    let route = Route {
        action: "directories.patch",
        resource: "directories",
        scope: scope::DIRECTORIES,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(name.clone()), |ctx| async move {
        let (mut admin, version, i) = changeable(st, req, &name).await?;
        let patch = read_json(st, req, payload, "application/merge-patch+json").await?;
        if !patch.is_object() {
            return Err(Refusal::bad_request(
                "invalid_request",
                "a merge patch of a directory is a JSON object",
            ));
        }
        let mut doc = serde_json::to_value(&admin[i]).map_err(refuse_invalid)?;
        json_patch::merge(&mut doc, &patch);
        let d = parse(doc)?;
        if d.name != name {
            return Err(Refusal::bad_request(
                "invalid_request",
                "name cannot be changed",
            ));
        }
        let before = std::mem::replace(&mut admin[i], d.clone());
        let detail = json!({"before": view(&before, false), "after": view(&d, false)});
        write(st, &ctx, version, admin, StatusCode::OK, detail).await?;
        Ok(Done::changed(StatusCode::OK, Some(view(&d, false))).etag(dir_etag(&d)))
    })
    .await
}

/// Remove a trust anchor added here (`If-Match` required). Clients it
/// registered stay registered.
#[utoipa::path(delete, path = "/admin/v1/directories/{name}", tag = "directories",
    params(("name" = String, Path), ("If-Match" = String, Header)),
    responses((status = 204, description = "removed"),
        (status = 404, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
        (status = 412, body = super::doc::ErrorBody), (status = 428, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:directories"])))]
pub(crate) async fn delete(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let name = path.into_inner();
    let route = Route {
        action: "directories.delete",
        resource: "directories",
        scope: scope::DIRECTORIES,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(name.clone()), |ctx| async move {
        let (mut admin, version, i) = changeable(st, req, &name).await?;
        let before = admin.remove(i);
        write(
            st,
            &ctx,
            version,
            admin,
            StatusCode::NO_CONTENT,
            json!({"before": view(&before, false)}),
        )
        .await?;
        Ok(Done::changed(StatusCode::NO_CONTENT, None))
    })
    .await
}
