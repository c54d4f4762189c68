//! DPoP proofs (RFC 9449 §4.3), as the DPoP header of a token request.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth_core::sender_constraint::dpop::DpopCheck;
use strongroom_fuzz::{NOW, WORLD};

fuzz_target!(|data: &[u8]| {
    let Some(proof) = strongroom_fuzz::text(data) else {
        return;
    };
    let w = &*WORLD;
    let proofs = [proof];
    let check = DpopCheck {
        proofs: &proofs,
        htm: "POST",
        htu: "https://as.example/token",
        access_token: None,
        nonce_required: false,
    };
    let _ =
        w.rt.block_on(oauth_core::sender_constraint::dpop::verify_proof(
            &w.store, &w.policy, &w.nonces, check, NOW,
        ));
});
