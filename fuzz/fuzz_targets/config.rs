//! The configuration file (TOML), parsed and validated as at start.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(text) = strongroom_fuzz::text(data) else {
        return;
    };
    let _ = strongroom::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
});
