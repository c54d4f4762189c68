//! `Authorization: Basic` (RFC 6749 §2.3.1: form-urlencoded id and secret).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = strongroom_fuzz::text(data) else {
        return;
    };
    let _ = oauth_core::client_auth::decode_basic_authorization(text);
});
