DROP TABLE settings_version;
DROP TRIGGER admin_audit_append_only ON admin_audit;
DROP FUNCTION admin_audit_append_only();
DROP TABLE admin_audit;
