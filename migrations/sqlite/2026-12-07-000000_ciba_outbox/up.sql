-- CIBA (issue 24): the outbox of deliveries (the bank's notify hook, ping,
-- push), so that one a restart or a dying instance interrupts is made by
-- another. Ping and push bodies and bearers are sealed under a key the
-- database does not hold. `next_attempt_ms` is when it is due, or the end
-- of the lease of the attempt under way.
CREATE TABLE ciba_deliveries (
    delivery_id     TEXT    NOT NULL PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('notify', 'ping', 'push')),
    target          TEXT    NOT NULL,
    body            TEXT    NOT NULL,
    bearer          TEXT,
    seed            TEXT,
    client_id       TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_ms BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL
);
CREATE INDEX ciba_deliveries_due ON ciba_deliveries (next_attempt_ms);
CREATE INDEX ciba_deliveries_expires_at ON ciba_deliveries (expires_at);
