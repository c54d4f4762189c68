//! Token revocation (RFC 7009).

use crate::client::AuthenticatedClient;
use crate::error::OAuthError;
use crate::secret::hash_secret;
use crate::storage::{TokenKind, TokenRepository};

/// RFC 7009 §2.1: revokes `token` for the authenticated `caller`.
///
/// - A refresh token takes every token of its grant with it (§2.1: the
///   server "SHOULD also invalidate all access tokens based on the same
///   authorization grant"); the grant itself, the consent record, stays.
/// - An access token is revoked alone.
/// - A token of another client is left alone (§2.1: the server verifies the
///   token was issued to the caller) and the answer is the same success, so
///   the endpoint reveals nothing about other clients' tokens; unknown,
///   expired and already revoked tokens succeed likewise (§2.2).
/// - `token_type_hint` is ignored: one lookup covers every type, so
///   `unsupported_token_type` never arises.
///
/// Only an empty `token` (`invalid_request`, §2.1 makes it required) and
/// storage failures are errors.
pub async fn revoke<S: TokenRepository>(
    store: &S,
    caller: &AuthenticatedClient,
    token: &str,
    _hint: Option<&str>,
    now: i64,
) -> Result<(), OAuthError> {
    if token.is_empty() {
        return Err(OAuthError::invalid_request("token is required"));
    }
    let hash = hash_secret(token);
    let Some(t) = store.get_active_token(&hash, now).await? else {
        return Ok(());
    };
    if t.client_id != caller.client.id() {
        tracing::info!(
            caller = %caller.client.id(),
            owner = %t.client_id,
            "revocation of another client's token ignored"
        );
        return Ok(());
    }
    store
        .revoke_token(&hash, t.kind == TokenKind::Refresh, now)
        .await?;
    Ok(())
}
