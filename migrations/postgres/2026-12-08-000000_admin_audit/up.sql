-- The admin API (issue 26): its audit log, append-only, and the version
-- counter of admin-owned settings that every instance polls to pick up a
-- change made on another.
CREATE TABLE admin_audit (
    audit_id     TEXT    NOT NULL PRIMARY KEY,
    at_ms        BIGINT  NOT NULL,
    actor        TEXT    NOT NULL,
    actor_client TEXT,
    source       TEXT    NOT NULL,
    action       TEXT    NOT NULL,
    resource     TEXT    NOT NULL,
    resource_id  TEXT,
    status       BIGINT  NOT NULL,
    detail       TEXT    NOT NULL
);
CREATE INDEX admin_audit_resource ON admin_audit (resource, audit_id);
CREATE INDEX admin_audit_actor ON admin_audit (actor, audit_id);
CREATE FUNCTION admin_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'admin_audit is append-only';
END $$;
CREATE TRIGGER admin_audit_append_only BEFORE UPDATE OR DELETE ON admin_audit
    FOR EACH ROW EXECUTE FUNCTION admin_audit_append_only();
CREATE TABLE settings_version (
    name    TEXT   NOT NULL PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO settings_version (name, version) VALUES ('admin', 0);
