//! Form bodies and query strings: decoded as the server decodes them, then
//! the authorization-request parameters validated (PAR, /authorize).
#![no_main]
use libfuzzer_sys::fuzz_target;
use strongroom_fuzz::WORLD;

fuzz_target!(|data: &[u8]| {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(data).into_owned().collect();
    for name in ["client_id", "response_type", "scope", "request_uri"] {
        let _ = oauth_core::request::single_param(&form, name);
    }
    let w = &*WORLD;
    let _ = oauth_core::request::validate_authorization_request(
        &w.client, &form, None, &w.policy, None,
    );
});
