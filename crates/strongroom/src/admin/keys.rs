//! `/admin/v1/keys`: the provider's signing and encryption keys with their
//! schedule, rotation and retirement, on the zero-downtime schedule of
//! `strongroom keys rotate` (published at once, signing after
//! `keys.activation_delay_secs`, verifying for `keys.retention_secs` after
//! retirement). The change reloads this instance's keys at once; the others
//! see the settings version move within `admin.propagation_ms`.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use oauth_core::secret::now;
use oauth_core::storage::{KeyRecord, KeyRepository as _};
use serde_json::{Value, json};

use super::{AdminState, Done, Refusal, Route, run, scope};

fn state(k: &KeyRecord, t: i64) -> &'static str {
    if k.retired_at.is_some_and(|r| r <= t) {
        "retired"
    } else if k.active_from > t {
        "scheduled"
    } else {
        "active"
    }
}

fn view(k: &KeyRecord, t: i64) -> Value {
    json!({
        "kid": k.kid,
        "alg": k.alg,
        "use": k.key_use,
        "state": state(k, t),
        "created_at": k.created_at,
        "active_from": k.active_from,
        "retired_at": k.retired_at,
        "expires_at": k.expires_at,
    })
}

/// The keys not yet expired, oldest first, with their schedule.
#[utoipa::path(get, path = "/admin/v1/keys", tag = "keys",
    responses((status = 200, description = "the keys", body = super::doc::KeyList),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:read"])))]
pub(crate) async fn list(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let route = Route {
        action: "keys.list",
        resource: "keys",
        scope: scope::READ,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, None, |_ctx| async {
        let t = now();
        let keys = st.app.store.list_keys(t).await?;
        Ok(Done::read(json!({
            "items": keys.iter().map(|k| view(k, t)).collect::<Vec<_>>()
        })))
    })
    .await
}

/// Publish a new key of every algorithm now; each signs after
/// `keys.activation_delay_secs`, when the one it replaces retires.
#[utoipa::path(post, path = "/admin/v1/keys/rotate", tag = "keys",
    responses((status = 200, description = "the keys published", body = super::doc::KeyList),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:keys"])))]
pub(crate) async fn rotate(st: web::Data<AdminState>, req: HttpRequest) -> HttpResponse {
    let route = Route {
        action: "keys.rotate",
        resource: "keys",
        scope: scope::KEYS,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, None, |ctx| async move {
        let t = now();
        let existing = st.app.store.list_keys(t).await?;
        let (insert, retire) = oauth_core::keys::plan_rotation(
            &existing,
            &st.kek,
            t,
            st.cfg.keys.activation_delay_secs as i64,
            st.cfg.keys.retention_secs as i64,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "admin API: key rotation could not be planned");
            Refusal::new(
                StatusCode::CONFLICT,
                "conflict",
                "the keys cannot be rotated with this instance's key-encryption key",
            )
        })?;
        let published: Vec<Value> = insert.iter().map(|k| view(k, t)).collect();
        let audit = ctx.audit(
            StatusCode::OK,
            json!({"published": published, "retiring": retire.iter().map(|r| &r.0).collect::<Vec<_>>()}),
        );
        st.app
            .store
            .carrying_audit(audit)
            .rotate_keys(insert.clone(), retire)
            .await?;
        for k in &insert {
            tracing::info!(target: "strongroom::security", event = "key_rotated", kid = %k.kid,
                alg = %k.alg, active_from = k.active_from, actor = %ctx.actor.sub,
                "new provider key published through the admin API");
        }
        crate::startup::reload_keys(&st.app, &st.kek).await;
        Ok(Done::changed(StatusCode::OK, Some(json!({"items": published}))))
    })
    .await
}

/// Retire one key now: it stops signing (another key of its algorithm
/// must be active) and verifies for `keys.retention_secs` more.
#[utoipa::path(post, path = "/admin/v1/keys/{kid}/retire", tag = "keys",
    params(("kid" = String, Path)),
    responses((status = 200, description = "retired", body = super::doc::KeyView),
        (status = 404, body = super::doc::ErrorBody), (status = 409, body = super::doc::ErrorBody),
        (status = 401, body = super::doc::ErrorBody), (status = 403, body = super::doc::ErrorBody)),
    security(("admin_token" = ["admin:keys"])))]
pub(crate) async fn retire(
    st: web::Data<AdminState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let kid = path.into_inner();
    let route = Route {
        action: "keys.retire",
        resource: "keys",
        scope: scope::KEYS,
    };
    let (st, req) = (&st, &req);
    run(st, req, route, Some(kid.clone()), |ctx| async move {
        let t = now();
        let keys = st.app.store.list_keys(t).await?;
        let key = keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| Refusal::not_found("such key"))?;
        if key.retired_at.is_some() {
            return Err(Refusal::conflict("this key is already retired or retiring"));
        }
        let successor = keys.iter().any(|k| {
            k.kid != key.kid
                && k.alg == key.alg
                && k.active_from <= t
                && k.retired_at.is_none_or(|r| r > t)
        });
        if !successor {
            return Err(Refusal::conflict(format!(
                "this is the only active {} key: rotate first, then retire it once its successor is active",
                key.alg
            )));
        }
        let expires = t.saturating_add(st.cfg.keys.retention_secs as i64);
        let mut after = key.clone();
        after.retired_at = Some(t);
        after.expires_at = Some(expires);
        let audit = ctx.audit(
            StatusCode::OK,
            json!({"before": view(key, t), "after": view(&after, t)}),
        );
        st.app
            .store
            .carrying_audit(audit)
            .rotate_keys(Vec::new(), vec![(kid.clone(), t, expires)])
            .await?;
        tracing::info!(target: "strongroom::security", event = "key_retired", kid = %kid,
            actor = %ctx.actor.sub, "provider key retired through the admin API");
        crate::startup::reload_keys(&st.app, &st.kek).await;
        Ok(Done::changed(StatusCode::OK, Some(view(&after, t))))
    })
    .await
}
