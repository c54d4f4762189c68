//! Unit tests of the pure parts: configuration checks and metadata rules.
//! Registration against a store runs through the server's integration
//! tests on SQLite and PostgreSQL (crates/strongroom/tests/server/dcr.rs).

use super::*;

fn dir(v: Value) -> DirectoryConfig {
    serde_json::from_value(v).unwrap()
}

#[test]
fn configuration_errors_name_the_key() {
    let reg = RegistrationConfig::default();
    let ok = dir(json!({"name": "a", "issuer": "A", "jwks": {"keys": []}}));
    assert!(config::validate(std::slice::from_ref(&ok), &reg).is_ok());
    let e = config::validate(&[dir(json!({"name": "a", "issuer": "A"}))], &reg).unwrap_err();
    assert_eq!(e.0, "directories[0].jwks_uri");
    let e = config::validate(
        &[dir(
            json!({"name": "a", "issuer": "A", "jwks_uri": "http://x"}),
        )],
        &reg,
    )
    .unwrap_err();
    assert_eq!(e.0, "directories[0].jwks_uri");
    let e = config::validate(&[ok.clone(), ok.clone()], &reg).unwrap_err();
    assert_eq!(e.0, "directories[1].name");
    let bad_alg = dir(json!({"name": "a", "issuer": "A", "jwks": {"keys": []}, "algs": ["RS256"]}));
    assert_eq!(
        config::validate(&[bad_alg], &reg).unwrap_err().0,
        "directories[0].algs"
    );
    assert!(
        serde_json::from_value::<DirectoryConfig>(json!({"name": "a", "issuer": "A", "bogus": 1}))
            .is_err()
    );
    assert_eq!(ok.format(), RequestFormat::Jwt, "uk-ob by default");
    let br = dir(json!({"name": "b", "issuer": "B", "jwks": {"keys": []}, "rules": "brazil"}));
    assert_eq!(br.format(), RequestFormat::Json);
    assert_eq!(
        br.rules.rules().management,
        Management::RegistrationAccessToken
    );
}

#[test]
fn initial_access_tokens_take_what_hash_secret_prints() {
    let with = |h: String| RegistrationConfig {
        initial_access_tokens_sha256: vec![h],
        ..RegistrationConfig::default()
    };
    // A token the admin chose, and one shaped like a Strongroom secret.
    for token in ["chosen by the admin".to_string(), new_secret()] {
        let h = hash_secret(&token);
        assert!(config::validate(&[], &with(h.clone())).is_ok(), "{h}");
    }
    let e = config::validate(&[], &with("x".repeat(44))).unwrap_err();
    assert_eq!(e.0, "registration.initial_access_tokens_sha256");
}

fn claims(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

#[test]
fn metadata_rules_without_ssa() {
    let rules = RulePack::Rfc7591.rules();
    let algs = [JwsAlg::PS256, JwsAlg::ES256];
    let scopes = vec!["openid".to_string(), "accounts".to_string()];
    let base = json!({
        "redirect_uris": ["https://rp.example/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": []},
        "scope": "openid accounts",
    });
    let m = build_metadata(
        &rules,
        None,
        &claims(base.clone()),
        None,
        "c1",
        &algs,
        &scopes,
        false,
        Profile::Fapi2,
    )
    .unwrap();
    assert_eq!(m.client_id, "c1");
    assert!(m.tls_client_certificate_bound_access_tokens);
    // The CIBA grant and metadata only where CIBA is served.
    let mut ciba = base.clone();
    ciba["grant_types"] = json!(["urn:openid:params:grant-type:ciba"]);
    ciba["backchannel_token_delivery_mode"] = json!("poll");
    let e = build_metadata(
        &rules,
        None,
        &claims(ciba.clone()),
        None,
        "c1",
        &algs,
        &scopes,
        false,
        Profile::Fapi2,
    )
    .unwrap_err();
    assert_eq!(e.code.as_str(), "invalid_client_metadata");
    let m = build_metadata(
        &rules,
        None,
        &claims(ciba),
        None,
        "c1",
        &algs,
        &scopes,
        true,
        Profile::Fapi2,
    )
    .unwrap();
    assert_eq!(m.backchannel_token_delivery_mode.as_deref(), Some("poll"));
    let code = |edit: fn(&mut Value)| {
        let mut v = base.clone();
        edit(&mut v);
        build_metadata(
            &rules,
            None,
            &claims(v),
            None,
            "c1",
            &algs,
            &scopes,
            false,
            Profile::Fapi2,
        )
        .unwrap_err()
        .code
        .as_str()
    };
    assert_eq!(
        code(|v| v["scope"] = json!("openid payments")),
        "invalid_client_metadata"
    );
    assert_eq!(
        code(|v| v["redirect_uris"] = json!(["http://rp.example/cb"])),
        "invalid_redirect_uri"
    );
    assert_eq!(
        code(|v| v["token_endpoint_auth_method"] = json!("none")),
        "invalid_client_metadata"
    );
    assert_eq!(
        code(|v| v["id_token_signed_response_alg"] = json!("RS256")),
        "invalid_client_metadata"
    );
    assert_eq!(
        code(|v| v["response_types"] = json!(["code id_token"])),
        "invalid_client_metadata"
    );
    assert_eq!(
        code(|v| v["redirect_uris"] = json!("https://x")),
        "invalid_client_metadata"
    );
    assert_eq!(
        code(|v| {
            v["token_endpoint_auth_method"] = json!("tls_client_auth");
            v["tls_client_auth_subject_dn"] = json!("CN=x")
        }),
        "invalid_client_metadata",
        "tls_client_auth without a certificate on the connection"
    );
}

/// OIDC Registration §2 response encryption survives registration, and is
/// checked like every other field (an enc key in the JWK Set, our algs).
#[test]
fn response_encryption_metadata_is_registered() {
    let rules = RulePack::Rfc7591.rules();
    let algs = [JwsAlg::PS256, JwsAlg::ES256];
    let scopes = vec!["openid".to_string()];
    let enc = json!({"kty": "RSA", "use": "enc", "alg": "RSA-OAEP-256", "kid": "e1",
        "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
        "e": "AQAB"});
    let req = |edit: &dyn Fn(&mut Value)| {
        let mut v = json!({
            "redirect_uris": ["https://rp.example/cb"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": [enc]},
            "scope": "openid",
            "id_token_encrypted_response_alg": "RSA-OAEP-256",
            "id_token_encrypted_response_enc": "A256GCM",
            "userinfo_signed_response_alg": "PS256",
            "userinfo_encrypted_response_alg": "RSA-OAEP-256",
        });
        edit(&mut v);
        build_metadata(
            &rules,
            None,
            &claims(v),
            None,
            "c1",
            &algs,
            &scopes,
            false,
            Profile::Fapi2,
        )
    };
    let m = req(&|_| {}).unwrap();
    assert_eq!(m.id_token_encryption(), Some(("RSA-OAEP-256", "A256GCM")));
    assert_eq!(
        m.userinfo_encryption(),
        Some(("RSA-OAEP-256", "A128CBC-HS256"))
    );
    assert_eq!(m.userinfo_signed_response_alg.as_deref(), Some("PS256"));
    for edit in [
        (|v: &mut Value| v["jwks"] = json!({"keys": []})) as fn(&mut Value),
        |v| v["id_token_encrypted_response_alg"] = json!("RSA1_5"),
        |v| v["userinfo_encrypted_response_enc"] = json!("A128GCM"),
        |v| v["userinfo_signed_response_alg"] = json!("RS256"),
        |v| {
            v.as_object_mut()
                .unwrap()
                .remove("id_token_encrypted_response_alg");
        },
    ] {
        assert_eq!(
            req(&edit).unwrap_err().code.as_str(),
            "invalid_client_metadata"
        );
    }
}

/// Brazil Open Finance directory SSAs name the software's keys
/// `software_jwks_uri`; the request's `jwks_uri` must equal it and the
/// client gets it (it was not recognised before, so every Brazil
/// registration with a `jwks_uri` was refused).
#[test]
fn brazil_ssa_software_jwks_uri_is_the_client_jwks_uri() {
    let rules = RulePack::Brazil.rules();
    let algs = [JwsAlg::PS256];
    let scopes = vec!["openid".to_string(), "accounts".to_string()];
    let jwks = "https://keystore.directory.example/org/sw/application.jwks";
    let ssa = SoftwareStatement {
        jwt: "x.y.z".into(),
        claims: claims(json!({
            "software_id": "sw1",
            "software_redirect_uris": ["https://tpp.example/cb"],
            "software_jwks_uri": jwks,
        })),
        software_id: "sw1".into(),
        directory: "br".into(),
        role_scopes: Default::default(),
    };
    assert_eq!(ssa.jwks_uri().as_deref(), Some(jwks));
    let req = json!({
        "redirect_uris": ["https://tpp.example/cb"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks_uri": jwks,
        "scope": "openid accounts",
    });
    let m = build_metadata(
        &rules,
        Some(&ssa),
        &claims(req.clone()),
        None,
        "c1",
        &algs,
        &scopes,
        false,
        Profile::Fapi2,
    )
    .unwrap();
    assert_eq!(m.jwks_uri.as_deref(), Some(jwks));
    let mut other = req;
    other["jwks_uri"] = json!("https://tpp.example/my.jwks");
    let e = build_metadata(
        &rules,
        Some(&ssa),
        &claims(other),
        None,
        "c1",
        &algs,
        &scopes,
        false,
        Profile::Fapi2,
    )
    .unwrap_err();
    assert_eq!(e.code.as_str(), "invalid_client_metadata");
}

#[test]
fn the_profile_a_registration_gets() {
    let algs = [JwsAlg::PS256, JwsAlg::ES256];
    let scopes = vec!["openid".to_string(), "accounts".to_string()];
    let jwks = "https://keystore.directory.example/org/sw/application.jwks";
    let ssa = SoftwareStatement {
        jwt: "x.y.z".into(),
        claims: claims(json!({
            "software_id": "sw1",
            "software_redirect_uris": ["https://tpp.example/cb"],
            "software_jwks_endpoint": jwks,
        })),
        software_id: "sw1".into(),
        directory: "ob".into(),
        role_scopes: Default::default(),
    };
    let req = json!({
        "token_endpoint_auth_method": "private_key_jwt",
        "token_endpoint_auth_signing_alg": "PS256",
        "scope": "openid accounts",
    });
    let build = |rules: &Rules, edit: fn(&mut Value), deployment: Profile| {
        let mut v = req.clone();
        edit(&mut v);
        build_metadata(
            rules,
            Some(&ssa),
            &claims(v),
            None,
            "c1",
            &algs,
            &scopes,
            false,
            deployment,
        )
    };
    let uk = RulePack::UkOb.rules();
    // UK DCR on a FAPI 1.0 deployment: the UK profile, code id_token by
    // default (UK DCR 3.3).
    let m = build(&uk, |_| {}, Profile::Fapi1Advanced).unwrap();
    assert_eq!(m.fapi_profile, Some(Profile::UkOpenBanking));
    assert_eq!(m.response_types, ["code id_token"]);
    let e = build(
        &uk,
        |v| v["response_types"] = json!(["code"]),
        Profile::Fapi1Advanced,
    )
    .unwrap_err();
    assert_eq!(e.code.as_str(), "invalid_client_metadata");
    // On FAPI 2.0: the deployment's (FAPI 2.0 with the UK rules).
    let m = build(&uk, |_| {}, Profile::Fapi2).unwrap();
    assert_eq!(m.fapi_profile, None);
    assert_eq!(m.response_types, ["code"]);
    // Asked for: honoured, and checked.
    let m = build(
        &uk,
        |v| v["fapi_profile"] = json!("fapi1-advanced"),
        Profile::Fapi2,
    )
    .unwrap();
    assert_eq!(m.fapi_profile, Some(Profile::Fapi1Advanced));
    let m = build(
        &uk,
        |v| v["fapi_profile"] = json!("fapi2"),
        Profile::UkOpenBanking,
    )
    .unwrap();
    assert_eq!(m.fapi_profile, Some(Profile::Fapi2));
    for bad in [json!("fapi3"), json!(2)] {
        let mut v = req.clone();
        v["fapi_profile"] = bad;
        let e = build_metadata(
            &uk,
            Some(&ssa),
            &claims(v),
            None,
            "c1",
            &algs,
            &scopes,
            false,
            Profile::Fapi2,
        )
        .unwrap_err();
        assert_eq!(e.code.as_str(), "invalid_client_metadata");
    }
    // Other rule packs keep the deployment's.
    let br = RulePack::Brazil.rules();
    let m = build(
        &br,
        |v| {
            v["jwks_uri"] = json!("https://keystore.directory.example/org/sw/application.jwks");
            v["redirect_uris"] = json!(["https://tpp.example/cb"]);
        },
        Profile::Fapi1Advanced,
    )
    .unwrap();
    assert_eq!(m.fapi_profile, None);
}
