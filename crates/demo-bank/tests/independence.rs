//! The demo bank proves that a bank can implement the hooks from
//! docs/hooks.md alone: its code depends on no crate of this workspace.
//! (Its dev-dependencies may: the tests that start a real Strongroom.)

use serde_json::Value;

fn metadata() -> Value {
    let out = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn the_bank_depends_on_no_workspace_crate() {
    let m = metadata();
    let packages = m["packages"].as_array().expect("packages");
    let members: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(
        members.contains(&"strongroom") && members.contains(&"consent-bridge"),
        "the workspace's crates are visible to the check: {members:?}"
    );
    let bank = packages
        .iter()
        .find(|p| p["name"] == "demo-bank")
        .expect("the demo-bank package");
    let deps = bank["dependencies"].as_array().expect("dependencies");
    // `kind` is null for [dependencies], "build" for [build-dependencies],
    // "dev" for [dev-dependencies]; a path dependency has `path`.
    let (shipped, dev): (Vec<&Value>, Vec<&Value>) = deps.iter().partition(|d| d["kind"] != "dev");
    let offending: Vec<&str> = shipped
        .iter()
        .filter(|d| {
            d["path"].is_string() || d["name"].as_str().is_some_and(|n| members.contains(&n))
        })
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(
        offending.is_empty(),
        "crates/demo-bank must speak the hook protocol with independent crates only, \
         but its [dependencies] name workspace crates: {offending:?}"
    );
    // The same test sees a workspace crate where one is allowed.
    assert!(
        dev.iter()
            .any(|d| d["name"] == "strongroom" && d["path"].is_string()),
        "{dev:?}"
    );
}
