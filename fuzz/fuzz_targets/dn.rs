//! RFC 4514 distinguished names (`tls_client_auth_subject_dn`, the UK
//! rule pack's certificate tests, admin.client_subject_dns).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = strongroom_fuzz::text(data) else {
        return;
    };
    if let Ok(dn) = oauth_core::cert::DistinguishedName::parse_rfc4514(text) {
        let _ = dn.matches(&dn);
    }
});
