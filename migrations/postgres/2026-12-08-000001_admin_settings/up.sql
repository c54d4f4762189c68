-- The admin API (issue 26): settings it owns beside the file's (today the
-- trust anchors of registration, `directories`), one JSON document per
-- name, written under optimistic concurrency on `version`.
CREATE TABLE admin_settings (
    name       TEXT   NOT NULL PRIMARY KEY,
    value      TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
