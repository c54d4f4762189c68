//! The outbox of CIBA deliveries: the bank's notify hook (docs/hooks.md
//! §10b), ping (CIBA §10.2) and push (§10.3).
//!
//! Each delivery is a database row ([`CibaDeliveryRecord`]) before it is
//! attempted. The instance that stores one holds it for its first attempt
//! (the row is stored leased to it, so no other instance races it) and
//! makes that attempt at once; a failed attempt makes the row due again
//! after a backoff (0.5 s, 1 s, 2 s), and every instance's sweeper claims
//! due rows, one winner per row (a conditional update). A row whose holder
//! died is due again when its lease ends. Sent, given up (after
//! [`ATTEMPTS`], or a client's 401/403) or past the request's expiry, it is
//! deleted. Deliveries are at least once: a holder that dies after sending
//! and before deleting leaves a row that is sent again.
//!
//! Ping and push bodies (they carry the `auth_req_id`, or tokens) and the
//! client's bearer are sealed under the delivery key, which the database
//! does not hold.

use oauth_core::error::OAuthError;
use oauth_core::secret::random_token;
use oauth_core::storage::{CibaDeliveryRecord, CibaOutbox, StoreResult};
use serde_json::Value;

use crate::flow::{open_notification_token, seal_notification_token};
use crate::hooks::{ATTEMPTS, Attempt, FIRST_BACKOFF, Hooks, Notice};

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How long an attempt holds its row: the outbound timeout and a margin.
pub fn lease_ms(hooks: &Hooks) -> i64 {
    i64::try_from(hooks.config().timeout_ms).unwrap_or(60_000) + 5_000
}

/// The notice of a new request (stored with it), held by the instance
/// storing it for the first attempt.
pub fn notice(hooks: &Hooks, n: &Notice, now_ms: i64) -> Result<CibaDeliveryRecord, OAuthError> {
    Ok(CibaDeliveryRecord {
        delivery_id: random_token(16),
        kind: "notify".into(),
        target: hooks.config().notify_url.clone(),
        body: serde_json::to_string(n).map_err(|_| OAuthError::server_error())?,
        bearer: None,
        seed: None,
        client_id: n.client_id.clone(),
        attempts: 1,
        next_attempt_ms: now_ms + lease_ms(hooks),
        expires_at: n.expires_at,
    })
}

/// A ping or push to the client's notification endpoint: `body` sealed to
/// the request's `seed`, the already sealed bearer kept as it is.
#[allow(clippy::too_many_arguments)]
pub fn to_client(
    hooks: &Hooks,
    kind: &str,
    endpoint: &str,
    sealed_bearer: &str,
    seed: &str,
    body: &Value,
    client_id: &str,
    expires_at: i64,
    now_ms: i64,
) -> Result<CibaDeliveryRecord, OAuthError> {
    let json = serde_json::to_string(body).map_err(|_| OAuthError::server_error())?;
    Ok(CibaDeliveryRecord {
        delivery_id: random_token(16),
        kind: kind.into(),
        target: endpoint.into(),
        body: seal_notification_token(hooks.delivery_key(), seed, &json)?,
        bearer: Some(sealed_bearer.into()),
        seed: Some(seed.into()),
        client_id: client_id.into(),
        attempts: 1,
        next_attempt_ms: now_ms + lease_ms(hooks),
        expires_at,
    })
}

/// The delay before attempt `attempts + 1`.
fn backoff_ms(attempts: i64) -> i64 {
    let first = i64::try_from(FIRST_BACKOFF.as_millis()).unwrap_or(500);
    first << (attempts - 1).clamp(0, 10)
}

/// One attempt of a delivery this instance holds (just stored, or
/// claimed): sends it, then deletes it, or makes it due again, or gives it
/// up. A database failure leaves the row for a later sweep.
pub async fn attempt<S: CibaOutbox>(store: &S, hooks: &Hooks, d: &CibaDeliveryRecord) {
    let notify = d.kind == "notify";
    let outcome = if d.expires_at <= now_ms() / 1000 {
        tracing::info!(event = "ciba_delivery_expired", kind = %d.kind, client_id = %d.client_id,
                       "the request expired before its delivery; dropped");
        Attempt::GiveUp
    } else if notify {
        hooks
            .send_once(&d.kind, &d.target, hooks.service_token(), &d.body)
            .await
    } else {
        let opened = d.seed.as_deref().and_then(|seed| {
            let body = open_notification_token(hooks.delivery_key(), seed, &d.body)?;
            let bearer = d
                .bearer
                .as_deref()
                .and_then(|b| open_notification_token(hooks.delivery_key(), seed, b))?;
            Some((body, bearer))
        });
        match opened {
            Some((body, bearer)) => hooks.send_once(&d.kind, &d.target, &bearer, &body).await,
            None => {
                tracing::error!(event = "ciba_delivery_given_up", kind = %d.kind,
                                "a CIBA delivery cannot be opened (another delivery key?)");
                Attempt::GiveUp
            }
        }
    };
    let (sent_event, given_up_event) = if notify {
        ("ciba_notify_sent", "ciba_notify_given_up")
    } else {
        ("ciba_delivery_sent", "ciba_delivery_given_up")
    };
    let done = match outcome {
        Attempt::Sent => {
            tracing::info!(event = sent_event, kind = %d.kind, client_id = %d.client_id,
                           attempt = d.attempts, "CIBA delivery made");
            store.drop_ciba_delivery(&d.delivery_id).await
        }
        Attempt::Retry if d.attempts < i64::from(ATTEMPTS) => {
            store
                .retry_ciba_delivery(&d.delivery_id, now_ms() + backoff_ms(d.attempts))
                .await
        }
        Attempt::Retry | Attempt::GiveUp => {
            tracing::warn!(event = given_up_event, kind = %d.kind, client_id = %d.client_id,
                           attempts = d.attempts, "CIBA delivery given up; the request stays pending or pollable");
            store.drop_ciba_delivery(&d.delivery_id).await
        }
    };
    if let Err(e) = done {
        tracing::warn!(error = %e, "CIBA outbox: the outcome of a delivery is not recorded; a sweep will take it up");
    }
}

/// Claims up to `limit` due deliveries for this instance (each one
/// conditional update; a row another instance claimed first is skipped).
/// The caller attempts each, off its own path.
pub async fn claim_due<S: CibaOutbox>(
    store: &S,
    hooks: &Hooks,
    now_ms: i64,
    limit: i64,
) -> StoreResult<Vec<CibaDeliveryRecord>> {
    let mut claimed = Vec::new();
    for mut d in store.due_ciba_deliveries(now_ms, limit).await? {
        if store
            .claim_ciba_delivery(&d.delivery_id, d.next_attempt_ms, now_ms + lease_ms(hooks))
            .await?
        {
            d.attempts += 1;
            claimed.push(d);
        }
    }
    Ok(claimed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_half_a_second() {
        assert_eq!(
            (1..=4).map(backoff_ms).collect::<Vec<_>>(),
            [500, 1000, 2000, 4000]
        );
    }
}
