//! CIBA on the server (CIBA Core 1.0, FAPI-CIBA; docs/hooks.md §10): the
//! backchannel authentication endpoint, the CIBA grant at the token
//! endpoint, and the bank's decision API. Handlers extract, call the
//! `ciba` crate, and map the outcome; outbound notices and deliveries run
//! off the request path.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use ciba::flow::{self, Decision, DecisionRefused};
use ciba::hooks::{Hooks, ResolveQuery};
use oauth_core::client::AuthenticatedClient;
use oauth_core::client_auth::Endpoint;
use oauth_core::error::{ErrorCode, OAuthError};
use oauth_core::secret::now;
use oauth_core::storage::CibaOutbox as _;
use oauth_core::storage::ClientRepository;
use oauth_core::token::TokenResponse;
use serde::Deserialize;
use serde_json::json;

use crate::api::{Caller, json_no_store, settled, single, single_use_caller};
use crate::config::Config;
use crate::http::{ApiError, AppState};

/// The backchannel authentication endpoint (CIBA §7), on both listeners.
pub const BACKCHANNEL_PATH: &str = "/bc-authorize";
/// The bank's decision API (docs/hooks.md §10c).
pub const DECISION_PATH: &str = "/bank/ciba/{handle}/decision";

/// Builds CIBA's outbound hooks from `[ciba]`; `extra_ca` (the dev CA in
/// dev mode) is trusted beside the system roots.
pub fn hooks(
    cfg: &Config,
    extra_ca: Option<&std::path::Path>,
    delivery_key: Vec<u8>,
) -> Result<Option<Arc<Hooks>>, String> {
    let Some(c) = &cfg.ciba else {
        return Ok(None);
    };
    let tls = crate::bank_api::outbound_tls(extra_ca).map_err(|e| format!("ciba: {e}"))?;
    Hooks::new(c.clone(), tls, delivery_key).map(|h| Some(Arc::new(h)))
}

fn not_served() -> ApiError {
    OAuthError::new(
        ErrorCode::InvalidRequest,
        "backchannel authentication is not enabled",
    )
    .into()
}

/// `POST /bc-authorize` (CIBA §7.1): client authentication exactly as at
/// the token endpoint, the request validated, the customer resolved by the
/// bank, the request stored, the bank notified off the request path.
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn bc_authorize(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let Some(hooks) = state.ciba() else {
        return Err(not_served());
    };
    let (_dpop, Caller { form, client, .. }, store) =
        single_use_caller(&state, &req, &body, Endpoint::Backchannel).await?;
    let outcome = start(&state, &hooks, &store, &client, &form).await;
    let res = settled(&store, outcome).await?;
    Ok(json_no_store(StatusCode::OK, &res))
}

async fn start(
    state: &AppState,
    hooks: &Arc<Hooks>,
    store: &token_store::Store,
    client: &AuthenticatedClient,
    form: &[(String, String)],
) -> Result<ciba::flow::AuthenticationResponse, OAuthError> {
    let t = now();
    let v = ciba::request::validate(
        store,
        &state.jwks,
        &state.keys,
        &state.policy(),
        hooks.config(),
        client,
        form,
        &state.consent_claim,
        t,
    )
    .await?;
    // The bank hears of no request refused as a replay.
    store.settle_replay().await?;
    if let Some(intent) = &v.intent_id {
        let bridge = state.bridge().ok_or_else(OAuthError::server_error)?;
        bridge.check_intent(intent, client.client.id()).await?;
    }
    let sub = hooks
        .resolve(&ResolveQuery {
            client_id: client.client.id(),
            hint_type: v.hint_type,
            hint: &v.hint,
            user_code: v.user_code.as_deref(),
        })
        .await?;
    let started = flow::start(store, hooks, client, v, sub, &state.consent_claim, t).await?;
    // The notice is in the database with the request; this instance makes
    // its first attempt at once, off the client's answer (the outbox's
    // sweepers take it up if this instance cannot).
    let (hooks, outbox, notice) = (hooks.clone(), state.store.clone(), started.notice.clone());
    actix_web::rt::spawn(async move {
        ciba::outbox::attempt(&outbox, &hooks, &notice).await;
    });
    tracing::info!(
        event = "ciba_request_started",
        hint_type = started.data.hint_type.as_str(),
        "CIBA request stored"
    );
    Ok(started.response)
}

/// The token request with the CIBA grant (CIBA §10.1), for a client
/// authenticated and a DPoP proof verified as for every grant.
pub async fn redeem(
    state: &AppState,
    store: &token_store::Store,
    client: &AuthenticatedClient,
    form: &[(String, String)],
    binding: oauth_core::grant::Binding,
) -> Result<TokenResponse, OAuthError> {
    if state.ciba().is_none() {
        return Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "the grant_type is not supported",
        ));
    }
    flow::check_may_poll(&client.client)?;
    let auth_req_id = single(form, "auth_req_id")?;
    let hook = crate::api::SettledFirst {
        store,
        bridge: state.bridge(),
    };
    // The client's encryption key is looked up only once the request is
    // approved and an id_token is issued (not for a pending poll).
    flow::redeem(
        store,
        &state.keys,
        &state.policy(),
        &hook,
        client,
        auth_req_id,
        &binding,
        state.jwks.as_ref(),
        now(),
    )
    .await
}

#[derive(Deserialize)]
struct DecisionBody {
    result: String,
}

fn decision_error(status: StatusCode, error: &str, description: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(json!({"error": error, "error_description": description}))
}

/// `POST /bank/ciba/{handle}/decision` (docs/hooks.md §10c): the bank's app
/// back end approves or denies, with a result token under the `[hooks]`
/// key handling. 204; 400 `invalid_request` (bad token, another
/// customer); 404 unknown handle; 409 `already_decided` / `expired_token`,
/// state unchanged.
#[tracing::instrument(skip_all)]
pub async fn decision(
    state: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    crate::bank_api::authenticate_bank(&state, &req)?;
    let (Some(hooks), Some(bridge)) = (state.ciba(), state.bridge()) else {
        return Err(not_served());
    };
    let handle = path.into_inner();
    let body: DecisionBody = serde_json::from_slice(&body)
        .map_err(|_| OAuthError::invalid_request("the body must be {\"result\": \"<token>\"}"))?;
    let rec = match flow::by_handle(&state.store, &handle).await {
        Ok(r) => r,
        Err(DecisionRefused::UnknownHandle) => {
            return Ok(decision_error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no CIBA request has this handle",
            ));
        }
        Err(DecisionRefused::Failed(e)) => return Err(e.into()),
        Err(_) => return Err(OAuthError::server_error().into()),
    };
    let t = now();
    // The result token's `jti` is recorded with the decision's own write
    // (`Store::carrying_replay`): one trip to the database, not two.
    let replay = oauth_core::replay::DeferredReplay::new(&state.store);
    let result = bridge
        .open_result(
            &replay,
            &body.result,
            &handle,
            consent_bridge::Purpose::Ciba,
            t,
        )
        .await
        .map_err(|e| {
            tracing::warn!(reason = e.as_str(), "CIBA decision token refused");
            match e {
                consent_bridge::HookError::Unavailable => OAuthError::temporarily_unavailable(),
                _ => OAuthError::invalid_request("the decision token is not valid"),
            }
        })?;
    let d = Decision {
        approved: result.approved(),
        sub: result.sub.clone(),
        acr: result.acr.clone(),
        amr: result.amr.clone(),
        auth_time: result.auth_time,
        consent_id: result.consent_id.clone(),
        accounts: result.accounts.clone(),
    };
    let store = state.store.carrying_replay(replay.into_entries(), t);
    let decided = flow::decide(&store, &rec, d, t).await;
    // A refusal before the write still spends the token, and a token used
    // before is refused as such (`invalid_request`, a `replay_refused`
    // event), whatever the request's state; the write's own replay refusal
    // comes back as `Failed` with that same error.
    if let Err(refused) = &decided
        && !matches!(refused, DecisionRefused::Failed(_))
    {
        store.settle_replay().await.map_err(OAuthError::from)?;
    }
    match decided {
        Ok(()) => {}
        Err(DecisionRefused::AlreadyDecided) => {
            return Ok(decision_error(
                StatusCode::CONFLICT,
                "already_decided",
                "the request has already been decided",
            ));
        }
        Err(DecisionRefused::Expired) => {
            return Ok(decision_error(
                StatusCode::CONFLICT,
                "expired_token",
                "the request has expired",
            ));
        }
        Err(DecisionRefused::WrongSub) => {
            return Err(OAuthError::invalid_request(
                "the decision is for another customer than the request's",
            )
            .into());
        }
        Err(DecisionRefused::OtherConsent) => {
            tracing::warn!(
                event = "hook_result_refused",
                reason = "consent_mismatch",
                client_id = %rec.client_id,
                "the bank approved another consent than the one requested"
            );
            return Err(OAuthError::invalid_request(
                "the approval must name the consent the request named as its consent_id",
            )
            .into());
        }
        Err(DecisionRefused::UnknownHandle) => return Err(OAuthError::server_error().into()),
        Err(DecisionRefused::Failed(e)) => return Err(e.into()),
    }
    tracing::info!(
        event = "ciba_decided",
        client_id = %rec.client_id,
        approved = result.approved(),
        "CIBA request decided by the bank"
    );
    after_decision(&state, &hooks, &rec).await;
    Ok(HttpResponse::NoContent().finish())
}

/// Ping (CIBA §10.2) or push (§10.3) once the customer decided, off the
/// request path; poll clients hear nothing. Push clients (never FAPI ones)
/// get the tokens, unbound, or the error, with the `auth_req_id`; the
/// request is redeemed then. Ping clients get `{"auth_req_id"}` and redeem
/// at the token endpoint, whatever the delivery did.
async fn after_decision(
    state: &AppState,
    hooks: &Arc<Hooks>,
    rec: &oauth_core::storage::CibaRequestRecord,
) {
    let Ok(data) = flow::data(rec) else {
        return;
    };
    let Some(seed) = data.delivery_seed.as_deref() else {
        return;
    };
    let Ok(Some(record)) = state.store.get_client(&rec.client_id).await else {
        return;
    };
    let Ok(client) = oauth_core::client::Client::from_record(&record) else {
        return;
    };
    let (Some(endpoint), Some(sealed_bearer)) = (
        client
            .metadata
            .backchannel_client_notification_endpoint
            .clone(),
        data.sealed_notification_token.as_deref(),
    ) else {
        return;
    };
    let kind = flow::delivery_mode(&client).to_owned();
    let auth_req_id = flow::derive_auth_req_id(hooks.delivery_key(), seed);
    let body = match kind.as_str() {
        "ping" => json!({ "auth_req_id": auth_req_id }),
        "push" if !client.metadata.fapi => {
            let method = client.metadata.token_endpoint_auth_method;
            let authenticated = AuthenticatedClient { client, method };
            let hook = crate::api::SettledFirst {
                store: &state.store,
                bridge: state.bridge(),
            };
            let outcome = flow::redeem(
                &state.store,
                &state.keys,
                &state.policy(),
                &hook,
                &authenticated,
                Some(&auth_req_id),
                &oauth_core::grant::Binding::default(),
                state.jwks.as_ref(),
                now(),
            )
            .await;
            let mut body = match outcome {
                Ok(tokens) => serde_json::to_value(&tokens).unwrap_or_default(),
                Err(e) => e.to_json(),
            };
            body["auth_req_id"] = json!(auth_req_id);
            body
        }
        _ => return,
    };
    let delivery = match ciba::outbox::to_client(
        hooks,
        &kind,
        &endpoint,
        sealed_bearer,
        seed,
        &body,
        &rec.client_id,
        rec.expires_at,
        ciba::outbox::now_ms(),
    ) {
        Ok(d) => d,
        Err(_) => return,
    };
    if let Err(e) = state.store.put_ciba_delivery(delivery.clone()).await {
        tracing::warn!(error = %e, "CIBA: the client's notification is not stored; the request stays pollable");
        return;
    }
    let (hooks, outbox) = (hooks.clone(), state.store.clone());
    actix_web::rt::spawn(async move {
        ciba::outbox::attempt(&outbox, &hooks, &delivery).await;
    });
}

/// Registers the CIBA routes (answered `invalid_request` when `[ciba]` is
/// not configured; not advertised then).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route(BACKCHANNEL_PATH, web::post().to(bc_authorize))
        .route(DECISION_PATH, web::post().to(decision));
}
