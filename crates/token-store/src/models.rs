//! Row types and their conversion to and from the records of
//! `oauth_core::storage`. Rows carry the bookkeeping columns the records do
//! not expose (`consumed_at`), and enums travel as text.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::sqlite::Sqlite;
use oauth_core::storage::{
    AuthorizationCodeRecord, CibaDeliveryRecord, CibaRequestRecord, ClientRecord, GrantRecord,
    InteractionRecord, KeyRecord, PushedRequestRecord, SessionRecord, StoreError, TokenKind,
    TokenRecord,
};

use crate::schema::{
    authorization_codes, ciba_deliveries, ciba_requests, clients, grants, interactions,
    provider_keys, pushed_requests, sessions, tokens,
};

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = provider_keys, check_for_backend(Pg, Sqlite))]
pub(crate) struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub key_use: String,
    pub private_sealed: Vec<u8>,
    pub public_jwk: String,
    pub created_at: i64,
    pub active_from: i64,
    pub retired_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl From<KeyRecord> for KeyRow {
    fn from(k: KeyRecord) -> Self {
        KeyRow {
            kid: k.kid,
            alg: k.alg,
            key_use: k.key_use,
            private_sealed: k.private_sealed,
            public_jwk: k.public_jwk,
            created_at: k.created_at,
            active_from: k.active_from,
            retired_at: k.retired_at,
            expires_at: k.expires_at,
        }
    }
}

impl From<KeyRow> for KeyRecord {
    fn from(k: KeyRow) -> Self {
        KeyRecord {
            kid: k.kid,
            alg: k.alg,
            key_use: k.key_use,
            private_sealed: k.private_sealed,
            public_jwk: k.public_jwk,
            created_at: k.created_at,
            active_from: k.active_from,
            retired_at: k.retired_at,
            expires_at: k.expires_at,
        }
    }
}

/// `treat_none_as_null`: replacing a client must clear a secret or
/// registration token that the new record no longer has.
#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = clients, primary_key(client_id), treat_none_as_null = true)]
#[diesel(check_for_backend(Pg, Sqlite))]
pub(crate) struct ClientRow {
    pub client_id: String,
    pub metadata: String,
    pub secret_hash: Option<String>,
    pub registration_token_hash: Option<String>,
    pub software_id: Option<String>,
    pub origin: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl From<ClientRecord> for ClientRow {
    fn from(c: ClientRecord) -> Self {
        ClientRow {
            client_id: c.client_id,
            metadata: c.metadata,
            secret_hash: c.secret_hash,
            registration_token_hash: c.registration_token_hash,
            software_id: c.software_id,
            origin: c.origin,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

impl From<ClientRow> for ClientRecord {
    fn from(c: ClientRow) -> Self {
        ClientRecord {
            client_id: c.client_id,
            metadata: c.metadata,
            secret_hash: c.secret_hash,
            registration_token_hash: c.registration_token_hash,
            software_id: c.software_id,
            origin: c.origin,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = pushed_requests, check_for_backend(Pg, Sqlite))]
pub(crate) struct PushedRequestRow {
    pub request_uri_hash: String,
    pub client_id: String,
    pub request: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub consumed_at: Option<i64>,
}

impl From<PushedRequestRecord> for PushedRequestRow {
    fn from(p: PushedRequestRecord) -> Self {
        PushedRequestRow {
            request_uri_hash: p.request_uri_hash,
            client_id: p.client_id,
            request: p.request,
            expires_at: p.expires_at,
            created_at: p.created_at,
            consumed_at: None,
        }
    }
}

impl From<PushedRequestRow> for PushedRequestRecord {
    fn from(p: PushedRequestRow) -> Self {
        PushedRequestRecord {
            request_uri_hash: p.request_uri_hash,
            client_id: p.client_id,
            request: p.request,
            expires_at: p.expires_at,
            created_at: p.created_at,
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = grants, check_for_backend(Pg, Sqlite))]
pub(crate) struct GrantRow {
    pub grant_id: String,
    pub client_id: String,
    pub sub: Option<String>,
    pub scope: String,
    pub consent_id: Option<String>,
    pub details: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// What re-putting an existing grant may change. `revoked_at` is absent on
/// purpose: a revocation is never undone by a later write.
#[derive(AsChangeset)]
#[diesel(table_name = grants, treat_none_as_null = true)]
pub(crate) struct GrantChanges<'a> {
    pub client_id: &'a str,
    pub sub: Option<&'a str>,
    pub scope: &'a str,
    pub consent_id: Option<&'a str>,
    pub details: &'a str,
}

impl<'a> From<&'a GrantRow> for GrantChanges<'a> {
    fn from(g: &'a GrantRow) -> Self {
        GrantChanges {
            client_id: &g.client_id,
            sub: g.sub.as_deref(),
            scope: &g.scope,
            consent_id: g.consent_id.as_deref(),
            details: &g.details,
        }
    }
}

impl From<GrantRecord> for GrantRow {
    fn from(g: GrantRecord) -> Self {
        GrantRow {
            grant_id: g.grant_id,
            client_id: g.client_id,
            sub: g.sub,
            scope: g.scope,
            consent_id: g.consent_id,
            details: g.details,
            created_at: g.created_at,
            revoked_at: g.revoked_at,
        }
    }
}

impl From<GrantRow> for GrantRecord {
    fn from(g: GrantRow) -> Self {
        GrantRecord {
            grant_id: g.grant_id,
            client_id: g.client_id,
            sub: g.sub,
            scope: g.scope,
            consent_id: g.consent_id,
            details: g.details,
            created_at: g.created_at,
            revoked_at: g.revoked_at,
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = authorization_codes, check_for_backend(Pg, Sqlite))]
pub(crate) struct CodeRow {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub request: String,
    pub expires_at: i64,
    pub created_at: i64,
    pub consumed_at: Option<i64>,
}

impl From<AuthorizationCodeRecord> for CodeRow {
    fn from(c: AuthorizationCodeRecord) -> Self {
        CodeRow {
            code_hash: c.code_hash,
            grant_id: c.grant_id,
            client_id: c.client_id,
            request: c.request,
            expires_at: c.expires_at,
            created_at: c.created_at,
            consumed_at: None,
        }
    }
}

impl From<CodeRow> for AuthorizationCodeRecord {
    fn from(c: CodeRow) -> Self {
        AuthorizationCodeRecord {
            code_hash: c.code_hash,
            grant_id: c.grant_id,
            client_id: c.client_id,
            request: c.request,
            expires_at: c.expires_at,
            created_at: c.created_at,
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = tokens, check_for_backend(Pg, Sqlite))]
pub(crate) struct TokenRow {
    pub token_hash: String,
    pub kind: String,
    pub client_id: String,
    pub grant_id: Option<String>,
    pub sub: Option<String>,
    pub scope: String,
    pub cnf_jkt: Option<String>,
    pub cnf_x5t: Option<String>,
    pub details: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// Text form of a token kind, as stored in `tokens.kind`.
pub(crate) fn kind_from_str(s: &str) -> Result<TokenKind, StoreError> {
    match s {
        "access" => Ok(TokenKind::Access),
        "refresh" => Ok(TokenKind::Refresh),
        other => Err(StoreError::Backend(format!(
            "unknown token kind `{other}` in the tokens table"
        ))),
    }
}

impl From<TokenRecord> for TokenRow {
    fn from(t: TokenRecord) -> Self {
        TokenRow {
            token_hash: t.token_hash,
            kind: t.kind.as_str().to_owned(),
            client_id: t.client_id,
            grant_id: t.grant_id,
            sub: t.sub,
            scope: t.scope,
            cnf_jkt: t.cnf_jkt,
            cnf_x5t: t.cnf_x5t,
            details: t.details,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        }
    }
}

impl TryFrom<TokenRow> for TokenRecord {
    type Error = StoreError;

    fn try_from(t: TokenRow) -> Result<Self, StoreError> {
        Ok(TokenRecord {
            kind: kind_from_str(&t.kind)?,
            token_hash: t.token_hash,
            client_id: t.client_id,
            grant_id: t.grant_id,
            sub: t.sub,
            scope: t.scope,
            cnf_jkt: t.cnf_jkt,
            cnf_x5t: t.cnf_x5t,
            details: t.details,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
        })
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = ciba_requests, check_for_backend(Pg, Sqlite))]
pub(crate) struct CibaRow {
    pub auth_req_id_hash: String,
    pub client_id: String,
    pub status: String,
    pub request: String,
    pub grant_id: Option<String>,
    // `interval` is reserved in PostgreSQL.
    pub poll_interval: i64,
    pub last_polled_at: Option<i64>,
    pub expires_at: i64,
    pub created_at: i64,
    pub handle_hash: Option<String>,
}

impl From<CibaRequestRecord> for CibaRow {
    fn from(r: CibaRequestRecord) -> Self {
        CibaRow {
            auth_req_id_hash: r.auth_req_id_hash,
            client_id: r.client_id,
            status: r.status,
            request: r.request,
            grant_id: r.grant_id,
            poll_interval: r.interval,
            last_polled_at: r.last_polled_at,
            expires_at: r.expires_at,
            created_at: r.created_at,
            handle_hash: r.handle_hash,
        }
    }
}

impl From<CibaRow> for CibaRequestRecord {
    fn from(r: CibaRow) -> Self {
        CibaRequestRecord {
            auth_req_id_hash: r.auth_req_id_hash,
            client_id: r.client_id,
            status: r.status,
            request: r.request,
            grant_id: r.grant_id,
            interval: r.poll_interval,
            last_polled_at: r.last_polled_at,
            expires_at: r.expires_at,
            created_at: r.created_at,
            handle_hash: r.handle_hash,
        }
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = sessions, primary_key(session_hash), treat_none_as_null = true)]
#[diesel(check_for_backend(Pg, Sqlite))]
pub(crate) struct SessionRow {
    pub session_hash: String,
    pub sub: String,
    pub auth_time: i64,
    pub acr: Option<String>,
    pub amr: String,
    pub expires_at: i64,
}

impl From<SessionRecord> for SessionRow {
    fn from(s: SessionRecord) -> Self {
        SessionRow {
            session_hash: s.session_hash,
            sub: s.sub,
            auth_time: s.auth_time,
            acr: s.acr,
            amr: s.amr,
            expires_at: s.expires_at,
        }
    }
}

impl From<SessionRow> for SessionRecord {
    fn from(s: SessionRow) -> Self {
        SessionRecord {
            session_hash: s.session_hash,
            sub: s.sub,
            auth_time: s.auth_time,
            acr: s.acr,
            amr: s.amr,
            expires_at: s.expires_at,
        }
    }
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = interactions, primary_key(interaction_id))]
#[diesel(check_for_backend(Pg, Sqlite))]
pub(crate) struct InteractionRow {
    pub interaction_id: String,
    pub client_id: String,
    pub state: String,
    pub expires_at: i64,
}

impl From<InteractionRecord> for InteractionRow {
    fn from(i: InteractionRecord) -> Self {
        InteractionRow {
            interaction_id: i.interaction_id,
            client_id: i.client_id,
            state: i.state,
            expires_at: i.expires_at,
        }
    }
}

impl From<InteractionRow> for InteractionRecord {
    fn from(i: InteractionRow) -> Self {
        InteractionRecord {
            interaction_id: i.interaction_id,
            client_id: i.client_id,
            state: i.state,
            expires_at: i.expires_at,
        }
    }
}

#[derive(Queryable, Selectable, Insertable)]
#[diesel(table_name = ciba_deliveries, check_for_backend(Pg, Sqlite))]
pub(crate) struct CibaDeliveryRow {
    pub delivery_id: String,
    pub kind: String,
    pub target: String,
    pub body: String,
    pub bearer: Option<String>,
    pub seed: Option<String>,
    pub client_id: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub expires_at: i64,
}

impl From<CibaDeliveryRecord> for CibaDeliveryRow {
    fn from(r: CibaDeliveryRecord) -> Self {
        CibaDeliveryRow {
            delivery_id: r.delivery_id,
            kind: r.kind,
            target: r.target,
            body: r.body,
            bearer: r.bearer,
            seed: r.seed,
            client_id: r.client_id,
            attempts: r.attempts,
            next_attempt_ms: r.next_attempt_ms,
            expires_at: r.expires_at,
        }
    }
}

impl From<CibaDeliveryRow> for CibaDeliveryRecord {
    fn from(r: CibaDeliveryRow) -> Self {
        CibaDeliveryRecord {
            delivery_id: r.delivery_id,
            kind: r.kind,
            target: r.target,
            body: r.body,
            bearer: r.bearer,
            seed: r.seed,
            client_id: r.client_id,
            attempts: r.attempts,
            next_attempt_ms: r.next_attempt_ms,
            expires_at: r.expires_at,
        }
    }
}
