DROP TABLE settings_version;
DROP TRIGGER admin_audit_no_delete;
DROP TRIGGER admin_audit_no_update;
DROP TABLE admin_audit;
