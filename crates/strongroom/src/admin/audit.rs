//! `/admin/v1/audit`: the audit log, read-only (no route changes it, and
//! the database refuses updates and deletes of its rows).

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};
use token_store::{AuditEntry, AuditFilter};

use super::{AdminState, Done, Route, page_limit, query, run, scope};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor: Option<String>,
    resource: Option<String>,
    resource_id: Option<String>,
    /// Milliseconds since the epoch, inclusive.
    since: Option<i64>,
    /// Milliseconds since the epoch, exclusive.
    until: Option<i64>,
    after: Option<String>,
    limit: Option<i64>,
}

fn view(e: &AuditEntry) -> Value {
    json!({
        "audit_id": e.audit_id,
        "at_ms": e.at_ms,
        "actor": e.actor,
        "actor_client": e.actor_client,
        "source": e.source,
        "action": e.action,
        "resource": e.resource,
        "resource_id": e.resource_id,
        "status": e.status,
        "detail": serde_json::from_str::<Value>(&e.detail).unwrap_or(Value::Null),
    })
}

/// The audit lines, oldest first, filtered by actor, resource and time.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit",
    params(("actor" = Option<String>, Query), ("resource" = Option<String>, Query),
        ("resource_id" = Option<String>, Query),
        ("since" = Option<i64>, Query, description = "ms since the epoch, inclusive"),
        ("until" = Option<i64>, Query, description = "ms since the epoch, exclusive"),
        ("after" = Option<String>, Query, description = "the `next` of the previous page"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50")),
    responses((status = 200, description = "a page of the audit log", body = super::doc::AuditPage),
        (status = 400, body = super::doc::ErrorBody), (status = 401, body = super::doc::ErrorBody),
        (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:audit"])))]
pub(crate) async fn list(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let route = Route {
        action: "audit.list",
        resource: "audit",
        scope: scope::AUDIT,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, None, |_ctx| async {
        let q: AuditQuery = query(req)?;
        let limit = page_limit(q.limit)?;
        let rows = st
            .app
            .store
            .list_audit(AuditFilter {
                actor: q.actor,
                resource: q.resource,
                resource_id: q.resource_id,
                since_ms: q.since,
                until_ms: q.until,
                after: q.after,
                limit,
            })
            .await?;
        let next = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| r.audit_id.clone()))
            .flatten();
        Ok(Done::read(json!({
            "items": rows.iter().map(view).collect::<Vec<_>>(),
            "next": next,
        })))
    })
    .await
}
