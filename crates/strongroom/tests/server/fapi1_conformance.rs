//! Two things the OIDF FAPI 1.0 Advanced plan (the conformance mirror's
//! `fapi1` plan) found, through the running server: a request with the
//! `openid` scope needs a `nonce` under FAPI 1.0 also in the code flow
//! with JARM (FAPI 1.0 Advanced §5.2.2.2-1), and the userinfo endpoint, a
//! protected resource, answers with `x-fapi-interaction-id` (FAPI 1.0
//! Part 1 §6.2.1-11).

use serde_json::json;

use crate::fapi::{demo_user, flow_with, redeem_code, verify_with_jwks, world};
use crate::harness::{BACKENDS, Backend, Setup};
use crate::hybrid::signed;
use crate::tpp::*;

#[actix_web::test]
async fn an_openid_request_needs_a_nonce_under_fapi1_also_with_jarm() {
    for backend in BACKENDS {
        let mut setup = Setup::new(backend);
        let tpp = Tpp::new("tpp-jarm");
        let mut m = tpp.pkjwt_metadata();
        m["response_types"] = json!(["code id_token", "code"]);
        setup.clients = vec![m];
        setup.users = vec![demo_user()];
        setup.tweak = Some(|c| c.profile = strongroom::config::Profile::Fapi1Advanced);
        let srv = setup.start().await;
        let params = |scope: &str, nonce: bool| {
            let mut p = tpp.authz_params(&Pkce::new(), scope);
            p.push(("response_mode".into(), "jwt".into()));
            if !nonce {
                set_param(&mut p, "nonce", None);
            }
            p
        };
        // Pushed: refused at PAR, in JSON.
        let a = tpp
            .par(&srv, signed(&srv, &tpp, &params("openid accounts", false)))
            .await;
        assert_error(&a, 400, &["invalid_request"]);
        assert!(
            a.json["error_description"]
                .as_str()
                .unwrap()
                .contains("nonce"),
            "{}",
            a.json
        );
        // With the nonce, or without openid (the state protects it,
        // §5.2.2.3), the same request is accepted.
        for (scope, nonce) in [("openid accounts", true), ("accounts", false)] {
            let a = tpp
                .par(&srv, signed(&srv, &tpp, &params(scope, nonce)))
                .await;
            assert_eq!(a.status, 201, "{scope} nonce {nonce}: {}", a.json);
        }
        // By value: the error goes back in a JARM response, with the state.
        let p = params("openid accounts", false);
        let request = signed(&srv, &tpp, &p).remove(0).1;
        let url = format!(
            "{}?client_id={}&response_type=code&scope=openid%20accounts&request={}",
            srv.url("/authorize"),
            urlenc(&tpp.client_id),
            urlenc(&request)
        );
        let res = srv.browser().get(url).send().await.unwrap();
        assert_eq!(res.status(), 303);
        let back = location(&res);
        assert!(back.starts_with(&tpp.redirect_uri), "{back}");
        let jarm = verify_with_jwks(&srv, &query(&back)["response"]).await;
        assert_eq!(jarm["error"], "invalid_request");
        assert_eq!(jarm["state"], param(&p, "state"));
        assert!(jarm.get("code").is_none());
        srv.stop().await;
    }
}

fn is_uuid_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
        && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit())
        && parts[2].starts_with('4')
        && parts[3].starts_with(['8', '9', 'a', 'b'])
}

#[actix_web::test]
async fn userinfo_answers_with_the_fapi_interaction_id() {
    let w = world(Backend::Sqlite).await;
    let (back, _, pkce) = flow_with(&w, &[], true).await;
    let code = query(&back)["code"].clone();
    let a = redeem_code(&w, &code, &pkce).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let at = a.json["access_token"].as_str().unwrap().to_string();
    let ui = w.srv.url("/userinfo");
    let http = w.srv.client(None);
    let call = |token: String, id: Option<String>| {
        let mut req = http
            .get(&ui)
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", w.dpop.dpop_proof("GET", &ui, Some(&token)));
        if let Some(id) = id {
            req = req.header("x-fapi-interaction-id", id);
        }
        async move { req.send().await.unwrap() }
    };
    let echoed = |res: &reqwest::Response| {
        res.headers()
            .get("x-fapi-interaction-id")
            .map(|v| v.to_str().unwrap().to_string())
    };
    // The client's id comes back, on success and on a refusal.
    let id = "93bac548-d2de-4546-b106-880a5018460d".to_string();
    let res = call(at.clone(), Some(id.clone())).await;
    assert_eq!(res.status(), 200);
    assert_eq!(echoed(&res).as_deref(), Some(id.as_str()));
    let res = call("not-a-token".into(), Some(id.clone())).await;
    assert_eq!(res.status(), 401);
    assert_eq!(echoed(&res).as_deref(), Some(id.as_str()));
    // None sent, or one that is not a plausible id: a fresh UUID, each
    // time another.
    let first = echoed(&call(at.clone(), None).await).unwrap();
    let second = echoed(&call(at.clone(), Some("x".repeat(300))).await).unwrap();
    assert!(
        is_uuid_v4(&first) && is_uuid_v4(&second),
        "{first} {second}"
    );
    assert_ne!(first, second);
    w.srv.stop().await;
}
