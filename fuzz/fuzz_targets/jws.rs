//! Compact JWS and their headers, verified against a registered key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth_core::keys::{JwsAlg, VerifyOptions};

fuzz_target!(|data: &[u8]| {
    let Some(token) = strongroom_fuzz::text(data) else {
        return;
    };
    let _ = oauth_core::keys::peek_header(token);
    let key = oauth_core::keys::parse_public_jwk(&strongroom_fuzz::client_jwk()).unwrap();
    let opts = VerifyOptions::new(strongroom_fuzz::NOW).typ("JWT");
    let _ = oauth_core::keys::verify_jws(token, &key, &[JwsAlg::ES256, JwsAlg::PS256], &opts);
});
