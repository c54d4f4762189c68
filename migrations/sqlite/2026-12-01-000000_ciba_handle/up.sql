-- CIBA (issue 24): the public handle of a request (what the bank's
-- notification service and decision API name), stored as its SHA-256 like
-- the auth_req_id itself. Unique, so a handle names at most one request.
ALTER TABLE ciba_requests ADD COLUMN handle_hash TEXT;
CREATE UNIQUE INDEX ciba_requests_handle_hash ON ciba_requests (handle_hash);
