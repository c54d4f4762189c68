//! The RFC 9440 `Client-Cert` header of a trusted proxy, then the
//! certificate it carries.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(value) = strongroom_fuzz::text(data) else {
        return;
    };
    if let Some(der) = strongroom::tls::parse_cert_header(value) {
        let _ = oauth_core::cert::PeerCertificate::from_der(der.as_ref(), 1, false);
    }
});
