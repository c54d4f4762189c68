//! Dynamic client registration requests (RFC 7591, UK DCR 3.3): signed
//! requests with their software statements, or JSON; the first byte picks
//! the content type.
#![no_main]
use libfuzzer_sys::fuzz_target;
use strongroom_fuzz::{NOW, WORLD};

fuzz_target!(|data: &[u8]| {
    let Some((kind, body)) = data.split_first() else {
        return;
    };
    let content_type = match kind % 3 {
        0 => "application/jwt",
        1 => "application/json",
        _ => "application/jose",
    };
    let w = &*WORLD;
    let req = dcr::RegistrationRequest {
        body,
        content_type: Some(content_type),
        bearer: None,
        certificate: None,
    };
    let _ =
        w.rt.block_on(w.registrar.register(&w.store, &w.jwks, req, NOW));
});
