//! `conformance kit`: plan configurations for the real OIDF conformance
//! suite and the Strongroom configuration that registers the clients,
//! keys and certificates they name.

use std::path::PathBuf;
use std::process::ExitCode;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::jose::{ClientKey, Identity, Pki};

struct KitClient {
    id: String,
    key: ClientKey,
    identity: Identity,
    redirect_uri: String,
}

/// (file stem, plan name, variant, uses mTLS clients, openid)
const PLANS: &[(&str, &str, &str, bool, bool)] = &[
    (
        "fapi2-sp-private_key_jwt-dpop-openid",
        "fapi2-security-profile-final-test-plan",
        "client_auth_type=private_key_jwt,sender_constrain=dpop,openid=openid_connect,fapi_profile=plain_fapi,fapi_request_method=unsigned,fapi_response_mode=plain_response,authorization_request_type=simple",
        false,
        true,
    ),
    (
        "fapi2-sp-private_key_jwt-dpop-plain_oauth",
        "fapi2-security-profile-final-test-plan",
        "client_auth_type=private_key_jwt,sender_constrain=dpop,openid=plain_oauth,fapi_profile=plain_fapi,fapi_request_method=unsigned,fapi_response_mode=plain_response,authorization_request_type=simple",
        false,
        false,
    ),
    (
        "fapi2-sp-mtls-mtls-openid",
        "fapi2-security-profile-final-test-plan",
        "client_auth_type=mtls,sender_constrain=mtls,openid=openid_connect,fapi_profile=plain_fapi,fapi_request_method=unsigned,fapi_response_mode=plain_response,authorization_request_type=simple",
        true,
        true,
    ),
    (
        "fapi2-sp-mtls-mtls-plain_oauth",
        "fapi2-security-profile-final-test-plan",
        "client_auth_type=mtls,sender_constrain=mtls,openid=plain_oauth,fapi_profile=plain_fapi,fapi_request_method=unsigned,fapi_response_mode=plain_response,authorization_request_type=simple",
        true,
        false,
    ),
    (
        "fapi2-ms-private_key_jwt-dpop-openid-jarm",
        "fapi2-message-signing-final-test-plan",
        "client_auth_type=private_key_jwt,sender_constrain=dpop,openid=openid_connect,fapi_profile=plain_fapi,fapi_request_method=signed_non_repudiation,fapi_response_mode=jarm,authorization_request_type=simple",
        false,
        true,
    ),
    (
        "fapi2-ms-mtls-mtls-openid-jarm",
        "fapi2-message-signing-final-test-plan",
        "client_auth_type=mtls,sender_constrain=mtls,openid=openid_connect,fapi_profile=plain_fapi,fapi_request_method=signed_non_repudiation,fapi_response_mode=jarm,authorization_request_type=simple",
        true,
        true,
    ),
];

/// The FAPI-CIBA plan (file stem, ciba_mode, uses mTLS clients).
const CIBA_PLANS: &[(&str, &str, bool)] = &[
    ("fapi-ciba-poll-private_key_jwt", "poll", false),
    ("fapi-ciba-ping-private_key_jwt", "ping", false),
    ("fapi-ciba-poll-mtls", "poll", true),
    ("fapi-ciba-ping-mtls", "ping", true),
];
const CIBA_PLAN: &str = "fapi-ciba-id1-test-plan";

/// The FAPI 1.0 Advanced plan (file stem, openbanking_uk, uses mTLS
/// clients). One configuration serves every fapi_auth_request_method and
/// fapi_response_mode of its profile: plans.json lists each variant.
const FAPI1_PLANS: &[(&str, bool, bool)] = &[
    ("fapi1-advanced-private_key_jwt", false, false),
    ("fapi1-advanced-mtls", false, true),
    ("fapi1-advanced-openbanking_uk-private_key_jwt", true, false),
    ("fapi1-advanced-openbanking_uk-mtls", true, true),
];
const FAPI1_PLAN: &str = "fapi1-advanced-final-test-plan";

const SUITE_CALLBACK: &str = "https://www.certification.openid.net/test/a/strongroom/callback";

pub fn main(args: &[String]) -> ExitCode {
    let mut out = PathBuf::from("conformance/oidf/generated");
    let mut issuer = "https://localhost:8443".to_string();
    let mut mtls_base: Option<String> = None;
    let mut alias = "strongroom".to_string();
    let mut template = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--template" {
            template = true;
            continue;
        }
        match (a.as_str(), it.next()) {
            ("--out", Some(v)) => out = PathBuf::from(v),
            ("--issuer", Some(v)) => issuer = v.trim_end_matches('/').to_string(),
            ("--mtls-base", Some(v)) => mtls_base = Some(v.trim_end_matches('/').to_string()),
            ("--alias", Some(v)) => alias = v.clone(),
            _ => {
                eprintln!(
                    "usage: conformance kit [--out DIR] [--issuer URL] [--mtls-base URL] [--alias NAME] [--template]"
                );
                return ExitCode::from(2);
            }
        }
    }
    match write_kit(&out, &issuer, mtls_base.as_deref(), &alias, template) {
        Ok(()) => {
            println!("conformance kit written to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("conformance kit: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `template`: only the plan configurations, with the keys and
/// certificates replaced by placeholders (what the repository carries).
fn write_kit(
    out: &std::path::Path,
    issuer: &str,
    mtls_base: Option<&str>,
    alias: &str,
    template: bool,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let callback = SUITE_CALLBACK.replace("strongroom", alias);
    let pki = Pki::new();
    let mk = |id: &str| KitClient {
        id: id.into(),
        key: ClientKey::generate(Algorithm::ES256, &format!("{id}-sig")),
        identity: pki.client(id, "OIDF Conformance Suite"),
        redirect_uri: callback.clone(),
    };
    let pkjwt = [mk("oidf-pkjwt-1"), mk("oidf-pkjwt-2")];
    let mtls = [mk("oidf-mtls-1"), mk("oidf-mtls-2")];
    // FAPI-CIBA: the delivery mode is client metadata, so one pair per
    // (auth method, mode); every one holds a certificate (MTLS-bound tokens).
    let ciba: Vec<[KitClient; 2]> = CIBA_PLANS
        .iter()
        .map(|(stem, _, _)| {
            let id = stem.replace("fapi-ciba-", "oidf-ciba-");
            [mk(&format!("{id}-1")), mk(&format!("{id}-2"))]
        })
        .collect();
    // FAPI 1.0: one pair per (profile, auth method); every one holds a
    // certificate (MTLS-bound tokens, FAPI 1.0 Advanced §5.2.2-5).
    let fapi1: Vec<[KitClient; 2]> = FAPI1_PLANS
        .iter()
        .map(|(stem, _, _)| {
            let id = stem.replace("fapi1-advanced", "oidf-fapi1");
            [mk(&format!("{id}-1")), mk(&format!("{id}-2"))]
        })
        .collect();
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    if !template {
        write("client-ca.pem", &pki.ca_pem)?;
    }
    // The Strongroom side: [[clients]] to append to strongroom.toml.
    let mut toml_text = String::from(
        "# Clients of the OIDF conformance suite (generated by `conformance kit`).\n\
         # Append to config/strongroom.toml and set [tls] client_ca to the\n\
         # client-ca.pem next to this file (or add it to your CA bundle).\n\
         # The oidf-fapi1-* clients are for a FAPI 1.0 deployment (profile\n\
         # fapi1-advanced or uk-ob, its own issuer); list the\n\
         # oidf-fapi1-openbanking_uk-* ones in [hooks] clients, so that their\n\
         # intents are checked by your consent service.\n\n",
    );
    for (c, is_mtls) in pkjwt
        .iter()
        .map(|c| (c, false))
        .chain(mtls.iter().map(|c| (c, true)))
    {
        let mut m = json!({
            "client_id": c.id,
            "client_name": format!("OIDF conformance suite {}", c.id),
            "redirect_uris": [c.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scope": "openid profile email accounts offline_access",
            "jwks": {"keys": [c.key.jwk]},
        });
        if is_mtls {
            m["token_endpoint_auth_method"] = json!("tls_client_auth");
            m["tls_client_auth_subject_dn"] = json!(c.identity.subject_dn);
            m["tls_client_certificate_bound_access_tokens"] = json!(true);
        } else {
            m["token_endpoint_auth_method"] = json!("private_key_jwt");
            m["token_endpoint_auth_signing_alg"] = json!("ES256");
            m["dpop_bound_access_tokens"] = json!(true);
        }
        let wrapped = json!({"clients": [m]});
        toml_text.push_str(&toml::to_string(&wrapped).map_err(|e| e.to_string())?);
        toml_text.push('\n');
    }
    let notification = callback.replace("/callback", "/ciba-notification-endpoint");
    for ((_, mode, is_mtls), pair) in CIBA_PLANS.iter().zip(&ciba) {
        for c in pair {
            let mut m = json!({
                "client_id": c.id,
                "client_name": format!("OIDF conformance suite {}", c.id),
                "grant_types": ["urn:openid:params:grant-type:ciba", "refresh_token"],
                "scope": "openid profile email accounts offline_access",
                "jwks": {"keys": [c.key.jwk]},
                "tls_client_certificate_bound_access_tokens": true,
                "backchannel_token_delivery_mode": mode,
                "backchannel_authentication_request_signing_alg": "ES256",
            });
            if *mode == "ping" {
                m["backchannel_client_notification_endpoint"] = json!(notification);
            }
            if *is_mtls {
                m["token_endpoint_auth_method"] = json!("tls_client_auth");
                m["tls_client_auth_subject_dn"] = json!(c.identity.subject_dn);
            } else {
                m["token_endpoint_auth_method"] = json!("private_key_jwt");
                m["token_endpoint_auth_signing_alg"] = json!("ES256");
            }
            let wrapped = json!({"clients": [m]});
            toml_text.push_str(&toml::to_string(&wrapped).map_err(|e| e.to_string())?);
            toml_text.push('\n');
        }
    }
    for ((_, uk, is_mtls), pair) in FAPI1_PLANS.iter().zip(&fapi1) {
        for c in pair {
            let mut m = json!({
                "client_id": c.id,
                "client_name": format!("OIDF conformance suite {}", c.id),
                "redirect_uris": [c.redirect_uri],
                "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                "scope": "openid profile email accounts offline_access",
                "jwks": {"keys": [c.key.jwk]},
                "tls_client_certificate_bound_access_tokens": true,
                // The client's own profile, whatever the deployment's; run
                // the plan against a FAPI 1.0 deployment's issuer, whose
                // discovery document describes it (docs/fapi1.md).
                "fapi_profile": if *uk { "uk-ob" } else { "fapi1-advanced" },
                "response_types": if *uk { json!(["code id_token"]) } else { json!(["code id_token", "code"]) },
            });
            if *is_mtls {
                m["token_endpoint_auth_method"] = json!("tls_client_auth");
                m["tls_client_auth_subject_dn"] = json!(c.identity.subject_dn);
            } else {
                m["token_endpoint_auth_method"] = json!("private_key_jwt");
                m["token_endpoint_auth_signing_alg"] = json!("ES256");
            }
            let wrapped = json!({"clients": [m]});
            toml_text.push_str(&toml::to_string(&wrapped).map_err(|e| e.to_string())?);
            toml_text.push('\n');
        }
    }
    if !template {
        write("strongroom-clients.toml", &toml_text)?;
    }
    let userinfo = format!("{}/userinfo", mtls_base.unwrap_or(issuer));
    let userinfo_plain = format!("{issuer}/userinfo");
    let suite_client = |c: &KitClient, openid: bool| -> Result<Value, String> {
        Ok(json!({
            "client_id": c.id,
            "scope": if openid { "openid accounts offline_access" } else { "accounts offline_access" },
            "jwks": {"keys": [c.key.private_jwk().ok_or("private JWK")?]},
        }))
    };
    let mtls_block = |c: &KitClient| json!({"cert": c.identity.cert_pem, "key": c.identity.key_pem, "ca": pki.ca_pem});
    let mut index = Vec::new();
    for (stem, plan, variant, use_mtls, openid) in PLANS {
        let pair = if *use_mtls { &mtls } else { &pkjwt };
        let mut cfg = json!({
            "alias": alias,
            "description": format!("Strongroom {stem}: plan {plan} [{variant}]"),
            "server": {"discoveryUrl": format!("{issuer}/.well-known/openid-configuration")},
            "client": suite_client(&pair[0], *openid)?,
            "client2": suite_client(&pair[1], *openid)?,
            "resource": {"resourceUrl": if *use_mtls { userinfo.clone() } else { userinfo_plain.clone() }},
        });
        if *use_mtls {
            cfg["mtls"] = mtls_block(&pair[0]);
            cfg["mtls2"] = mtls_block(&pair[1]);
        }
        if template {
            let hole = json!("<written by conformance/oidf/provision.sh>");
            for c in ["client", "client2"] {
                cfg[c]["jwks"] = json!({"keys": [hole]});
            }
            for m in ["mtls", "mtls2"] {
                if cfg.get(m).is_some() {
                    cfg[m] = json!({"cert": hole, "key": hole, "ca": hole});
                }
            }
        }
        let text = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
        write(&format!("{stem}.json"), &text)?;
        index.push(json!({"config": format!("{stem}.json"), "plan": plan, "variant": variant}));
    }
    for ((stem, mode, is_mtls), pair) in CIBA_PLANS.iter().zip(&ciba) {
        let variant = format!(
            "client_auth_type={},ciba_mode={mode},fapi_ciba_profile=plain_fapi,client_registration=static_client",
            if *is_mtls { "mtls" } else { "private_key_jwt" }
        );
        let hint = |c: &KitClient| -> Result<Value, String> {
            let mut v = suite_client(c, true)?;
            // The customer the bank's resolve hook knows (CIBA §7.1 login_hint).
            v["hint_type"] = json!("login_hint");
            v["hint_value"] = json!("<a customer the bank's resolve hook knows>");
            Ok(v)
        };
        let mut cfg = json!({
            "alias": alias,
            "description": format!("Strongroom {stem}: plan {CIBA_PLAN} [{variant}]"),
            "server": {"discoveryUrl": format!("{issuer}/.well-known/openid-configuration")},
            "client": hint(&pair[0])?,
            "client2": hint(&pair[1])?,
            "mtls": mtls_block(&pair[0]),
            "mtls2": mtls_block(&pair[1]),
            "resource": {"resourceUrl": userinfo.clone()},
        });
        if template {
            let hole = json!("<written by conformance/oidf/provision.sh>");
            for c in ["client", "client2"] {
                cfg[c]["jwks"] = json!({"keys": [hole]});
            }
            for m in ["mtls", "mtls2"] {
                cfg[m] = json!({"cert": hole, "key": hole, "ca": hole});
            }
        }
        let text = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
        write(&format!("{stem}.json"), &text)?;
        index
            .push(json!({"config": format!("{stem}.json"), "plan": CIBA_PLAN, "variant": variant}));
    }
    for ((stem, uk, is_mtls), pair) in FAPI1_PLANS.iter().zip(&fapi1) {
        let auth = if *is_mtls { "mtls" } else { "private_key_jwt" };
        let mut resource = json!({"resourceUrl": userinfo.clone()});
        if *uk {
            // The UK variant creates an account-access-consent at the bank
            // (client_credentials token) before each authorization.
            resource["resourceUrlAccountRequests"] = json!(
                "<the bank's account-access-consents endpoint, e.g. https://api.bank.example/open-banking/v3.1/aisp/account-access-consents>"
            );
            resource["resourceUrlAccountsResource"] = json!(
                "<the bank's accounts endpoint, e.g. https://api.bank.example/open-banking/v3.1/aisp/accounts>"
            );
        }
        let mut cfg = json!({
            "alias": alias,
            "description": format!(
                "Strongroom {stem}: plan {FAPI1_PLAN} [client_auth_type={auth},fapi_profile={}]",
                if *uk { "openbanking_uk" } else { "plain_fapi" }
            ),
            "server": {"discoveryUrl": format!("{issuer}/.well-known/openid-configuration")},
            "client": suite_client(&pair[0], true)?,
            "client2": suite_client(&pair[1], true)?,
            "mtls": mtls_block(&pair[0]),
            "mtls2": mtls_block(&pair[1]),
            "resource": resource,
        });
        if template {
            let hole = json!("<written by conformance/oidf/provision.sh>");
            for c in ["client", "client2"] {
                cfg[c]["jwks"] = json!({"keys": [hole]});
            }
            for m in ["mtls", "mtls2"] {
                cfg[m] = json!({"cert": hole, "key": hole, "ca": hole});
            }
        }
        let text = serde_json::to_string_pretty(&cfg).map_err(|e| e.to_string())?;
        write(&format!("{stem}.json"), &text)?;
        // UK: by value, no JARM (the OIDF openbanking_uk variant).
        let methods: &[(&str, &str)] = if *uk {
            &[("by_value", "plain_response")]
        } else {
            &[
                ("by_value", "plain_response"),
                ("by_value", "jarm"),
                ("pushed", "plain_response"),
                ("pushed", "jarm"),
            ]
        };
        for (method, mode) in methods {
            let variant = format!(
                "client_auth_type={auth},fapi_profile={},fapi_auth_request_method={method},fapi_response_mode={mode}",
                if *uk { "openbanking_uk" } else { "plain_fapi" }
            );
            index.push(
                json!({"config": format!("{stem}.json"), "plan": FAPI1_PLAN, "variant": variant}),
            );
        }
    }
    write(
        "plans.json",
        &serde_json::to_string_pretty(&index).map_err(|e| e.to_string())?,
    )?;
    Ok(())
}
