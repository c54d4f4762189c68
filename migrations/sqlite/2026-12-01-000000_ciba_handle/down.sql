DROP INDEX ciba_requests_handle_hash;
ALTER TABLE ciba_requests DROP COLUMN handle_hash;
