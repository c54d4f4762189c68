//! Table definitions shared by both backends. Only types SQLite and
//! PostgreSQL both have (Text, BigInt, Binary, Nullable) appear here, so one
//! set of queries serves both; the SQL lives in `migrations/{sqlite,postgres}`.

diesel::table! {
    provider_keys (kid) {
        kid -> Text,
        alg -> Text,
        key_use -> Text,
        private_sealed -> Binary,
        public_jwk -> Text,
        created_at -> BigInt,
        active_from -> BigInt,
        retired_at -> Nullable<BigInt>,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    clients (client_id) {
        client_id -> Text,
        metadata -> Text,
        secret_hash -> Nullable<Text>,
        registration_token_hash -> Nullable<Text>,
        software_id -> Nullable<Text>,
        origin -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    pushed_requests (request_uri_hash) {
        request_uri_hash -> Text,
        client_id -> Text,
        request -> Text,
        expires_at -> BigInt,
        created_at -> BigInt,
        consumed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    grants (grant_id) {
        grant_id -> Text,
        client_id -> Text,
        sub -> Nullable<Text>,
        scope -> Text,
        consent_id -> Nullable<Text>,
        details -> Text,
        created_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    authorization_codes (code_hash) {
        code_hash -> Text,
        grant_id -> Text,
        client_id -> Text,
        request -> Text,
        expires_at -> BigInt,
        created_at -> BigInt,
        consumed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    tokens (token_hash) {
        token_hash -> Text,
        kind -> Text,
        client_id -> Text,
        grant_id -> Nullable<Text>,
        sub -> Nullable<Text>,
        scope -> Text,
        cnf_jkt -> Nullable<Text>,
        cnf_x5t -> Nullable<Text>,
        details -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    ciba_requests (auth_req_id_hash) {
        auth_req_id_hash -> Text,
        client_id -> Text,
        status -> Text,
        request -> Text,
        grant_id -> Nullable<Text>,
        poll_interval -> BigInt,
        last_polled_at -> Nullable<BigInt>,
        expires_at -> BigInt,
        created_at -> BigInt,
        handle_hash -> Nullable<Text>,
    }
}

diesel::table! {
    ciba_deliveries (delivery_id) {
        delivery_id -> Text,
        kind -> Text,
        target -> Text,
        body -> Text,
        bearer -> Nullable<Text>,
        seed -> Nullable<Text>,
        client_id -> Text,
        attempts -> BigInt,
        next_attempt_ms -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    replay_cache (kind, value) {
        kind -> Text,
        value -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    /// SQLite only (see `seen`).
    replay_log (seq) {
        seq -> BigInt,
        fingerprint -> BigInt,
        expires_at -> BigInt,
    }
}

diesel::table! {
    sessions (session_hash) {
        session_hash -> Text,
        sub -> Text,
        auth_time -> BigInt,
        acr -> Nullable<Text>,
        amr -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    interactions (interaction_id) {
        interaction_id -> Text,
        client_id -> Text,
        state -> Text,
        expires_at -> BigInt,
    }
}

// Revocation statements select the grants of a consent or client in a
// subquery of the tokens update.
diesel::table! {
    admin_audit (audit_id) {
        audit_id -> Text,
        at_ms -> BigInt,
        actor -> Text,
        actor_client -> Nullable<Text>,
        source -> Text,
        action -> Text,
        resource -> Text,
        resource_id -> Nullable<Text>,
        status -> BigInt,
        detail -> Text,
    }
}

diesel::table! {
    settings_version (name) {
        name -> Text,
        version -> BigInt,
    }
}

diesel::table! {
    admin_settings (name) {
        name -> Text,
        value -> Text,
        version -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(grants, tokens);
