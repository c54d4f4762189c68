-- Strongroom initial schema (PostgreSQL). Keep logically identical to
-- migrations/sqlite/2026-11-21-000000_initial/up.sql: same tables, columns,
-- constraints and indexes; only the type names differ (INTEGER -> BIGINT,
-- BLOB -> BYTEA). Times are UNIX seconds.

CREATE TABLE provider_keys (
    kid            TEXT    NOT NULL PRIMARY KEY,
    alg            TEXT    NOT NULL,
    key_use        TEXT    NOT NULL CHECK (key_use IN ('sig', 'enc')),
    private_sealed BYTEA   NOT NULL,
    public_jwk     TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    active_from    BIGINT  NOT NULL,
    retired_at     BIGINT,
    expires_at     BIGINT
);

CREATE TABLE clients (
    client_id               TEXT    NOT NULL PRIMARY KEY,
    metadata                TEXT    NOT NULL,
    secret_hash             TEXT,
    registration_token_hash TEXT,
    software_id             TEXT,
    origin                  TEXT    NOT NULL,
    created_at              BIGINT  NOT NULL,
    updated_at              BIGINT  NOT NULL
);

CREATE TABLE pushed_requests (
    request_uri_hash TEXT    NOT NULL PRIMARY KEY,
    client_id        TEXT    NOT NULL,
    request          TEXT    NOT NULL,
    expires_at       BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL,
    consumed_at      BIGINT
);
CREATE INDEX pushed_requests_client_id ON pushed_requests (client_id);
CREATE INDEX pushed_requests_expires_at ON pushed_requests (expires_at);

CREATE TABLE grants (
    grant_id   TEXT    NOT NULL PRIMARY KEY,
    client_id  TEXT    NOT NULL,
    sub        TEXT,
    scope      TEXT    NOT NULL,
    consent_id TEXT,
    details    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX grants_consent_id ON grants (consent_id);
CREATE INDEX grants_client_id ON grants (client_id);
CREATE INDEX grants_sub ON grants (sub);

CREATE TABLE authorization_codes (
    code_hash   TEXT    NOT NULL PRIMARY KEY,
    grant_id    TEXT    NOT NULL REFERENCES grants (grant_id),
    client_id   TEXT    NOT NULL,
    request     TEXT    NOT NULL,
    expires_at  BIGINT  NOT NULL,
    created_at  BIGINT  NOT NULL,
    consumed_at BIGINT
);
CREATE INDEX authorization_codes_grant_id ON authorization_codes (grant_id);
CREATE INDEX authorization_codes_client_id ON authorization_codes (client_id);
CREATE INDEX authorization_codes_expires_at ON authorization_codes (expires_at);

CREATE TABLE tokens (
    token_hash TEXT    NOT NULL PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('access', 'refresh')),
    client_id  TEXT    NOT NULL,
    grant_id   TEXT    REFERENCES grants (grant_id),
    sub        TEXT,
    scope      TEXT    NOT NULL,
    cnf_jkt    TEXT,
    cnf_x5t    TEXT,
    details    TEXT    NOT NULL,
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX tokens_grant_id ON tokens (grant_id);
CREATE INDEX tokens_client_id ON tokens (client_id);
CREATE INDEX tokens_expires_at ON tokens (expires_at);

CREATE TABLE ciba_requests (
    auth_req_id_hash TEXT    NOT NULL PRIMARY KEY,
    client_id        TEXT    NOT NULL,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied')),
    request          TEXT    NOT NULL,
    grant_id         TEXT    REFERENCES grants (grant_id),
    poll_interval    BIGINT  NOT NULL,
    last_polled_at   BIGINT,
    expires_at       BIGINT  NOT NULL,
    created_at       BIGINT  NOT NULL
);
CREATE INDEX ciba_requests_client_id ON ciba_requests (client_id);
CREATE INDEX ciba_requests_grant_id ON ciba_requests (grant_id);
CREATE INDEX ciba_requests_expires_at ON ciba_requests (expires_at);

CREATE TABLE replay_cache (
    kind       TEXT    NOT NULL,
    value      TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (kind, value)
);
CREATE INDEX replay_cache_expires_at ON replay_cache (expires_at);

CREATE TABLE sessions (
    session_hash TEXT    NOT NULL PRIMARY KEY,
    sub          TEXT    NOT NULL,
    auth_time    BIGINT  NOT NULL,
    acr          TEXT,
    amr          TEXT    NOT NULL,
    expires_at   BIGINT  NOT NULL
);
CREATE INDEX sessions_sub ON sessions (sub);
CREATE INDEX sessions_expires_at ON sessions (expires_at);

CREATE TABLE interactions (
    interaction_id TEXT    NOT NULL PRIMARY KEY,
    client_id      TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    expires_at     BIGINT  NOT NULL
);
CREATE INDEX interactions_client_id ON interactions (client_id);
CREATE INDEX interactions_expires_at ON interactions (expires_at);
