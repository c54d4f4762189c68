//! Client certificates as DER (what TLS presents) and as PEM (files and
//! registrations).
#![no_main]
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

fuzz_target!(|data: &[u8]| {
    let _ = oauth_core::cert::PeerCertificate::from_der(data, 1, false);
    for der in CertificateDer::pem_slice_iter(data).take(4).flatten() {
        let _ = oauth_core::cert::PeerCertificate::from_der(der.as_ref(), 1, false);
    }
});
