//! `/admin/v1/grants` and `/admin/v1/consents/{id}/revoke`: the bank API's
//! consent lifecycle (docs/hooks.md §7) for operators, through the same
//! store calls, with the revocation and its audit line in one transaction.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use oauth_core::secret::now;
use oauth_core::storage::{GrantFilter, GrantRepository as _};
use serde::Deserialize;
use serde_json::json;

use super::{AdminState, Done, Refusal, Route, query, run, scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantQuery {
    consent_id: Option<String>,
    client_id: Option<String>,
    sub: Option<String>,
}

/// Grants by consent id, client or subject (at least one).
#[utoipa::path(get, path = "/admin/v1/grants", tag = "grants",
    params(("consent_id" = Option<String>, Query), ("client_id" = Option<String>, Query),
        ("sub" = Option<String>, Query)),
    responses((status = 200, description = "the grants", body = super::doc::GrantList),
        (status = 400, body = super::doc::ErrorBody), (status = 401, body = super::doc::ErrorBody),
        (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:read"])))]
pub(crate) async fn list(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let route = Route {
        action: "grants.list",
        resource: "grants",
        scope: scope::READ,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, None, |_ctx| async {
        let q: GrantQuery = query(req)?;
        if q.consent_id.is_none() && q.client_id.is_none() && q.sub.is_none() {
            return Err(Refusal::bad_request(
                "invalid_request",
                "name a consent_id, client_id or sub",
            ));
        }
        let detail = json!({"consent_id": q.consent_id, "client_id": q.client_id, "sub": q.sub});
        let grants = st
            .app
            .store
            .list_grants(GrantFilter {
                consent_id: q.consent_id,
                client_id: q.client_id,
                sub: q.sub,
            })
            .await?;
        let mut done = Done::read(json!({
            "items": grants.iter().map(crate::bank_api::grant_json).collect::<Vec<_>>()
        }));
        done.detail = detail;
        Ok(done)
    })
    .await
}

/// Revoke every grant carrying the consent and all their tokens, at once;
/// idempotent.
#[utoipa::path(post, path = "/admin/v1/consents/{consent_id}/revoke", tag = "grants",
    params(("consent_id" = String, Path)),
    responses((status = 200, description = "revoked", body = super::doc::Revoked),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:grants"])))]
pub(crate) async fn revoke_consent(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let consent_id = path.into_inner();
    let route = Route {
        action: "consents.revoke",
        resource: "consents",
        scope: scope::GRANTS,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(consent_id.clone()), |ctx| async move {
        let audit = ctx.audit(StatusCode::OK, json!({"consent_id": consent_id}));
        let n = st
            .app
            .store
            .carrying_audit(audit)
            .revoke_by_consent(&consent_id, now())
            .await?;
        tracing::info!(target: "strongroom::security", event = "consent_revoked",
            consent_id = %consent_id, grants = n, actor = %ctx.actor.sub,
            "consent revoked through the admin API");
        Ok(Done::changed(
            StatusCode::OK,
            Some(json!({"consent_id": consent_id, "revoked_grants": n})),
        ))
    })
    .await
}
