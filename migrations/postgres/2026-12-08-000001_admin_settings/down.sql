DROP TABLE admin_settings;
