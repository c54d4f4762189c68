-- The single-use values a server that has claimed this database recorded
-- (token_store::seen): appended in order, checked in the server's memory.
-- `fingerprint` is the first 8 bytes of SHA-256(kind NUL value).
CREATE TABLE replay_log (
    seq         INTEGER PRIMARY KEY,
    fingerprint INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX replay_log_expires_at ON replay_log (expires_at);
