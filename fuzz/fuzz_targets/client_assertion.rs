//! private_key_jwt client assertions (RFC 7523) and the form fields around
//! them, through client authentication.
#![no_main]
use libfuzzer_sys::fuzz_target;
use oauth_core::client_auth::{ClientAuthRequest, Endpoint};
use strongroom_fuzz::{CLIENT_ID, ISSUER, NOW, WORLD};

fuzz_target!(|data: &[u8]| {
    let Some(assertion) = strongroom_fuzz::text(data) else {
        return;
    };
    let w = &*WORLD;
    let url = format!("{ISSUER}/token");
    let req = ClientAuthRequest {
        endpoint: Endpoint::Token,
        endpoint_url: &url,
        token_endpoint_urls: &[url.as_str()],
        client_id: Some(CLIENT_ID),
        client_assertion_type: Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        client_assertion: Some(assertion),
        basic: None,
        client_secret: None,
        certificate: None,
    };
    let _ = w.rt.block_on(oauth_core::client_auth::authenticate_at(
        &w.store, &w.jwks, &w.policy, req, NOW,
    ));
});
