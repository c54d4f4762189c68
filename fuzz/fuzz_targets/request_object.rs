//! Request objects (RFC 9101), signed or encrypted (JWE to the provider's
//! key), through the verification pipeline of PAR and /authorize.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strongroom_fuzz::{CLIENT_ID, NOW, WORLD};

fuzz_target!(|data: &[u8]| {
    let Some(request) = strongroom_fuzz::text(data) else {
        return;
    };
    let w = &*WORLD;
    let _ =
        w.rt.block_on(oauth_core::request::request_object::verify_request_object(
            &w.store,
            &w.jwks,
            &w.keys,
            &w.policy,
            &w.client,
            Some(CLIENT_ID),
            request,
            NOW,
        ));
});
