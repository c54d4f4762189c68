//! `/admin/v1/clients`: every registration, whatever made it (the file,
//! DCR, this API), with the metadata of `[[clients]]` and RFC 7591.
//!
//! One validator: a body becomes [`ClientMetadata`] (the file's and DCR's
//! type, unknown members refused) and then [`Client::new`], the check every
//! registration passes, plus the deployment profile's client
//! authentication rule. Clients declared in the configuration file
//! (`origin` `static`) are file-owned: the API shows them and refuses to
//! change them, since the next start would put the file's version back.
//!
//! A `client_secret_*` client (only outside the FAPI rules, `fapi = false`)
//! gets a generated secret, shown once in the creation answer and stored
//! as its SHA-256.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use oauth_core::client::{AuthMethod, Client, ClientMetadata};
use oauth_core::secret::{hash_secret, now, random_token, time_ordered};
use oauth_core::storage::{ClientRecord, ClientRepository as _};
use serde::Deserialize;
use serde_json::{Value, json};
use token_store::{ChangeOutcome, ClientChange};

use super::{
    AdminState, Ctx, Done, Refusal, Route, check_if_match, etag, page_limit, query, read_json, run,
    scope, stale,
};

const READ: &str = scope::READ;
const WRITE: &str = scope::CLIENTS;

/// Where registrations made here come from (`clients.origin`).
const ORIGIN: &str = "admin";

pub(crate) fn client_etag(r: &ClientRecord) -> String {
    etag(&[
        &r.client_id,
        &r.origin,
        &r.updated_at.to_string(),
        r.secret_hash.as_deref().unwrap_or(""),
        &r.metadata,
    ])
}

/// The API's view of a registration: never its secret or management
/// token hashes.
fn view(r: &ClientRecord) -> Value {
    let metadata: Value = serde_json::from_str(&r.metadata).unwrap_or(Value::Null);
    json!({
        "client_id": r.client_id,
        "origin": r.origin,
        "file_owned": r.origin == "static",
        "created_at": r.created_at,
        "updated_at": r.updated_at,
        "metadata": metadata,
    })
}

/// Validates a metadata document as every registration is validated.
fn validate(st: &AdminState, doc: Value, secret_hash: Option<String>) -> Result<Client, Refusal> {
    let metadata: ClientMetadata = serde_json::from_value(doc)
        .map_err(|e| Refusal::bad_request("invalid_client_metadata", e.to_string()))?;
    let method = metadata.token_endpoint_auth_method;
    if metadata.fapi && !st.app.policy().profile.allows_fapi_auth_method(method) {
        return Err(Refusal::bad_request(
            "invalid_client_metadata",
            format!(
                "token_endpoint_auth_method {} is not allowed by the {} profile",
                method.as_str(),
                st.cfg.profile.as_str()
            ),
        ));
    }
    if st.app.ciba().is_none()
        && metadata
            .grant_types
            .iter()
            .any(|g| g == oauth_core::client::CIBA_GRANT)
    {
        return Err(Refusal::bad_request(
            "invalid_client_metadata",
            "grant_types: CIBA is not served here ([ciba] is not configured)",
        ));
    }
    metadata
        .validate_for(st.cfg.profile)
        .and_then(|()| Client::new(metadata, secret_hash))
        .map_err(|e| refusal(&e))
}

/// OIDC Registration §5: the document at `sector_identifier_uri` lists
/// every redirect URI, read as DCR reads it.
async fn check_sector_document(st: &AdminState, client: &Client) -> Result<(), Refusal> {
    oauth_core::subject::check_sector_identifier_uri(st.app.jwks.fetcher(), &client.metadata)
        .await
        .map_err(|e| refusal(&e))
}

/// A registration refused as DCR refuses it: its code and description.
fn refusal(e: &oauth_core::error::OAuthError) -> Refusal {
    Refusal::bad_request(
        e.code.as_str(),
        e.description
            .clone()
            .unwrap_or(std::borrow::Cow::Borrowed("invalid metadata")),
    )
}

fn needs_secret(doc: &Value) -> bool {
    matches!(
        doc.get("token_endpoint_auth_method").and_then(Value::as_str),
        Some(m) if m == AuthMethod::ClientSecretBasic.as_str() || m == AuthMethod::ClientSecretPost.as_str()
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    after: Option<String>,
    limit: Option<i64>,
    origin: Option<String>,
    software_id: Option<String>,
}

/// List registrations, `client_id` order, cursor paging.
#[utoipa::path(get, path = "/admin/v1/clients", tag = "clients",
    params(
        ("after" = Option<String>, Query, description = "the `next` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50"),
        ("origin" = Option<String>, Query, description = "static, dynamic or admin"),
        ("software_id" = Option<String>, Query, description = "registrations of this software"),
    ),
    responses((status = 200, description = "a page of registrations", body = super::doc::ClientPage),
        (status = 400, body = super::doc::ErrorBody), (status = 401, body = super::doc::ErrorBody),
        (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:read"])))]
pub(crate) async fn list(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let route = Route {
        action: "clients.list",
        resource: "clients",
        scope: READ,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, None, |_ctx: Ctx| async {
        let q: ListQuery = query(req)?;
        let limit = page_limit(q.limit)?;
        let rows = st
            .app
            .store
            .list_clients_page(q.after, q.origin, q.software_id, limit)
            .await?;
        let next = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| r.client_id.clone()))
            .flatten();
        Ok(Done::read(json!({
            "items": rows.iter().map(view).collect::<Vec<_>>(),
            "next": next,
        })))
    })
    .await
}

/// One registration, with its `ETag`.
#[utoipa::path(get, path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path)),
    responses((status = 200, description = "the registration", body = super::doc::ClientView,
            headers(("ETag" = String, description = "for If-Match"))),
        (status = 404, body = super::doc::ErrorBody), (status = 401, body = super::doc::ErrorBody),
        (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:read"])))]
pub(crate) async fn get(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    let route = Route {
        action: "clients.get",
        resource: "clients",
        scope: READ,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(id.clone()), |_ctx| async {
        let rec = current(st, &id).await?;
        Ok(Done::read(view(&rec)).etag(client_etag(&rec)))
    })
    .await
}

async fn current(st: &AdminState, id: &str) -> Result<ClientRecord, Refusal> {
    st.app
        .store
        .get_client(id)
        .await?
        .ok_or_else(|| Refusal::not_found("such client"))
}

/// Create a registration. The body is client metadata (`[[clients]]` /
/// RFC 7591 names); without `client_id` one is made. A `client_secret_*`
/// client's secret is in the answer, once.
#[utoipa::path(post, path = "/admin/v1/clients", tag = "clients",
    request_body(content = super::doc::Metadata, content_type = "application/json"),
    responses((status = 201, description = "created", body = super::doc::ClientView,
            headers(("ETag" = String), ("Location" = String))),
        (status = 400, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
        (status = 413, body = super::doc::ErrorBody), (status = 415, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:clients"])))]
pub(crate) async fn create(
    st: web::Data<AdminState>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let route = Route {
        action: "clients.create",
        resource: "clients",
        scope: WRITE,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, None, |ctx| async move {
        let mut doc = read_json(st, req, payload, "application/json").await?;
        let Value::Object(m) = &mut doc else {
            return Err(Refusal::bad_request(
                "invalid_client_metadata",
                "the body must be a JSON object of client metadata",
            ));
        };
        m.entry("client_id")
            .or_insert_with(|| Value::String(time_ordered(12)));
        let secret = needs_secret(&doc).then(|| random_token(32));
        let client = validate(st, doc, secret.as_deref().map(hash_secret))?;
        check_sector_document(st, &client).await?;
        let rec = client.to_record(ORIGIN, now());
        let mut ctx = ctx;
        ctx.entry.resource_id = Some(rec.client_id.clone());
        let audit = ctx.audit(StatusCode::CREATED, json!({"after": view(&rec)}));
        match st
            .app
            .store
            .change_client(ClientChange::Create(rec.clone()), audit)
            .await?
        {
            ChangeOutcome::Done => {}
            _ => {
                return Err(
                    Refusal::conflict("a client with this client_id exists").about(&rec.client_id),
                );
            }
        }
        tracing::info!(target: "strongroom::security", event = "client_created",
            client_id = %rec.client_id, actor = %ctx.actor.sub, "client created through the admin API");
        let mut body = view(&rec);
        if let Some(s) = secret {
            body["client_secret"] = Value::String(s);
        }
        let mut done = Done::changed(StatusCode::CREATED, Some(body)).etag(client_etag(&rec));
        done.location = Some(format!("/admin/v1/clients/{}", rec.client_id));
        Ok(done)
    })
    .await
}

/// Replace a registration's metadata (`If-Match` required).
#[utoipa::path(put, path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path), ("If-Match" = String, Header)),
    request_body(content = super::doc::Metadata, content_type = "application/json"),
    responses((status = 200, description = "replaced", body = super::doc::ClientView, headers(("ETag" = String))),
        (status = 400, body = super::doc::ErrorBody), (status = 404, body = super::doc::ErrorBody),
        (status = 409, body = super::doc::ErrorBody), (status = 412, body = super::doc::ErrorBody),
        (status = 428, body = super::doc::ErrorBody), (status = 413, body = super::doc::ErrorBody),
        (status = 415, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:clients"])))]
pub(crate) async fn replace(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let id = path.into_inner();
    let route = Route {
        action: "clients.replace",
        resource: "clients",
        scope: WRITE,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(id.clone()), |ctx| async move {
        let before = changeable(st, req, &id).await?;
        let doc = read_json(st, req, payload, "application/json").await?;
        write(st, &ctx, before, doc).await
    })
    .await
}

/// Change some of a registration's metadata with an RFC 7396 merge patch
/// (`If-Match` required).
#[utoipa::path(patch, path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path), ("If-Match" = String, Header)),
    request_body(content = super::doc::Metadata, content_type = "application/merge-patch+json"),
    responses((status = 200, description = "changed", body = super::doc::ClientView, headers(("ETag" = String))),
        (status = 400, body = super::doc::ErrorBody), (status = 404, body = super::doc::ErrorBody),
        (status = 409, body = super::doc::ErrorBody), (status = 412, body = super::doc::ErrorBody),
        (status = 428, body = super::doc::ErrorBody), (status = 413, body = super::doc::ErrorBody),
        (status = 415, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:clients"])))]
pub(crate) async fn patch(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let id = path.into_inner();
    let route = Route {
        action: "clients.patch",
        resource: "clients",
        scope: WRITE,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(id.clone()), |ctx| async move {
        let before = changeable(st, req, &id).await?;
        let patch = read_json(st, req, payload, "application/merge-patch+json").await?;
        if !patch.is_object() {
            return Err(Refusal::bad_request(
                "invalid_request",
                "a merge patch of client metadata is a JSON object",
            ));
        }
        let mut doc: Value = serde_json::from_str(&before.metadata).unwrap_or(Value::Null);
        json_patch::merge(&mut doc, &patch);
        write(st, &ctx, before, doc).await
    })
    .await
}

/// The registration `id` if this API may change it and `If-Match` names
/// its current version.
async fn changeable(st: &AdminState, req: &HttpRequest, id: &str) -> Result<ClientRecord, Refusal> {
    let before = current(st, id).await?;
    if before.origin == "static" {
        return Err(Refusal::conflict(
            "this client is declared in the configuration file (file-owned): change it there",
        ));
    }
    check_if_match(req, &client_etag(&before))?;
    Ok(before)
}

/// Replaces `before`'s metadata by `doc`, conditionally on `before`.
async fn write(
    st: &AdminState,
    ctx: &Ctx,
    before: ClientRecord,
    doc: Value,
) -> Result<Done, Refusal> {
    let mut doc = doc;
    match doc.get("client_id") {
        None => {
            if let Value::Object(m) = &mut doc {
                m.insert("client_id".into(), Value::String(before.client_id.clone()));
            }
        }
        Some(Value::String(c)) if *c == before.client_id => {}
        Some(_) => {
            return Err(Refusal::bad_request(
                "invalid_client_metadata",
                "client_id cannot be changed",
            ));
        }
    }
    if needs_secret(&doc) && before.secret_hash.is_none() {
        return Err(Refusal::bad_request(
            "invalid_client_metadata",
            "token_endpoint_auth_method: a client_secret_* method needs a secret; create a new client",
        ));
    }
    let client = validate(st, doc, before.secret_hash.clone())?;
    check_sector_document(st, &client).await?;
    let mut new = client.to_record(&before.origin, now());
    new.created_at = before.created_at;
    new.registration_token_hash
        .clone_from(&before.registration_token_hash);
    let audit = ctx.audit(
        StatusCode::OK,
        json!({"before": view(&before), "after": view(&new)}),
    );
    let change = ClientChange::Replace {
        expected: before,
        new: new.clone(),
    };
    match st.app.store.change_client(change, audit).await? {
        ChangeOutcome::Done => {}
        _ => return Err(stale()),
    }
    tracing::info!(target: "strongroom::security", event = "client_changed",
        client_id = %new.client_id, actor = %ctx.actor.sub, "client changed through the admin API");
    Ok(Done::changed(StatusCode::OK, Some(view(&new))).etag(client_etag(&new)))
}

/// Delete a registration with its grants, tokens and pending requests
/// (`If-Match` required).
#[utoipa::path(delete, path = "/admin/v1/clients/{client_id}", tag = "clients",
    params(("client_id" = String, Path), ("If-Match" = String, Header)),
    responses((status = 204, description = "deleted"),
        (status = 404, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
        (status = 412, body = super::doc::ErrorBody), (status = 428, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:clients"])))]
pub(crate) async fn delete(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let id = path.into_inner();
    let route = Route {
        action: "clients.delete",
        resource: "clients",
        scope: WRITE,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(id.clone()), |ctx| async move {
        let before = changeable(st, req, &id).await?;
        let audit = ctx.audit(StatusCode::NO_CONTENT, json!({"before": view(&before)}));
        let change = ClientChange::Delete {
            expected: before,
            now: now(),
        };
        match st.app.store.change_client(change, audit).await? {
            ChangeOutcome::Done => {}
            _ => return Err(stale()),
        }
        tracing::info!(target: "strongroom::security", event = "client_deleted",
            client_id = %id, actor = %ctx.actor.sub, "client deleted through the admin API");
        Ok(Done::changed(StatusCode::NO_CONTENT, None))
    })
    .await
}
