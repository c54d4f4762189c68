-- Children before parents: codes, tokens and CIBA requests reference grants.
DROP TABLE interactions;
DROP TABLE sessions;
DROP TABLE replay_cache;
DROP TABLE ciba_requests;
DROP TABLE tokens;
DROP TABLE authorization_codes;
DROP TABLE grants;
DROP TABLE pushed_requests;
DROP TABLE clients;
DROP TABLE provider_keys;
