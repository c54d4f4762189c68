//! The admin API (issue 26) through real servers: tokens and scopes, the
//! client lifecycle with ETags, every bad input's status, the audit log,
//! the OpenAPI document against what is mounted, keys, and two instances
//! on one PostgreSQL seeing each other's changes.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use strongroom::startup::{self, Listeners};

use crate::harness::{Backend, Setup, TestServer};
use crate::tpp::{Answer, Tpp, answer, assert_error, post_form};

/// The admin client's scopes.
const ALL: &str = "admin:read admin:clients admin:directories admin:keys admin:grants admin:audit";

/// A server with its internal listener, started in this process.
struct Admin {
    srv: TestServer,
    base: String,
    handles: Vec<actix_web::dev::ServerHandle>,
}

impl Admin {
    async fn start(setup: &Setup) -> Admin {
        Admin::start_with(setup, |_| {}).await
    }

    async fn start_with(
        setup: &Setup,
        tweak: impl FnOnce(&mut strongroom::config::Config),
    ) -> Admin {
        let main = TcpListener::bind("127.0.0.1:0").unwrap();
        let mtls = TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").unwrap();
        let (main_port, mtls_port) = (
            main.local_addr().unwrap().port(),
            mtls.local_addr().unwrap().port(),
        );
        let admin_addr = admin.local_addr().unwrap();
        let mut cfg = setup.config(main_port, mtls_port);
        cfg.server.admin_listen = admin_addr.to_string();
        cfg.admin.clients = vec!["ops".into(), "ops-reader".into()];
        cfg.admin.propagation_ms = 200;
        cfg.admin.max_body_bytes = 4096;
        tweak(&mut cfg);
        cfg.validate().unwrap();
        let tls = cfg.admin.tls;
        let prepared = startup::prepare(cfg).await.expect("server prepares");
        let admin_server = startup::serve_admin(&prepared, admin).expect("admin listener");
        let server = startup::serve(
            prepared,
            Listeners {
                main,
                mtls: Some(mtls),
            },
        )
        .expect("server starts");
        let handles = vec![server.handle(), admin_server.handle()];
        actix_web::rt::spawn(server);
        actix_web::rt::spawn(admin_server);
        let scheme = if tls { "https" } else { "http" };
        Admin {
            srv: TestServer::external(setup, main_port, mtls_port),
            base: format!("{scheme}://{admin_addr}"),
            handles,
        }
    }

    async fn stop(self) {
        for h in self.handles {
            h.stop(true).await;
        }
    }
}

/// The admin clients (`ops` with every scope, `ops-reader` with
/// `admin:read` only) and a TPP that is no admin client, in the file.
fn setup(backend: Backend) -> (Setup, Tpp, Tpp, Tpp) {
    let mut setup = Setup::new(backend);
    let ops = Tpp::new("ops");
    let reader = Tpp::new("ops-reader");
    let outsider = Tpp::new("outsider");
    let ops_scopes = format!("{ALL} admin:settings admin:hooks");
    for (t, scope) in [
        (&ops, ops_scopes.as_str()),
        (&reader, "admin:read"),
        (&outsider, ALL),
    ] {
        let mut m = t.pkjwt_metadata();
        m["grant_types"] = json!(["client_credentials"]);
        m["scope"] = json!(scope);
        m["redirect_uris"] = json!([]);
        setup.clients.push(m);
    }
    (setup, ops, reader, outsider)
}

/// A DPoP-bound client_credentials token of `who`.
async fn token(srv: &TestServer, who: &Tpp, scope: &str) -> String {
    let url = srv.url("/token");
    let mut form = vec![
        ("grant_type".to_string(), "client_credentials".to_string()),
        ("scope".into(), scope.into()),
    ];
    form.extend(who.auth_fields(srv));
    let a = post_form(
        &srv.client(None),
        &url,
        &form,
        Some(who.dpop_proof("POST", &url, None)),
    )
    .await;
    assert_eq!(a.status, 200, "token: {}", a.json);
    a.json["access_token"].as_str().unwrap().to_owned()
}

/// One admin call with `who`'s DPoP proof for `token`.
async fn call(
    adm: &Admin,
    who: &Tpp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<(&str, String)>,
    if_match: Option<&str>,
) -> Answer {
    let url = format!("{}{path}", adm.base);
    let htu = url.split('?').next().unwrap().to_owned();
    let mut req = reqwest::Client::new()
        .request(method.clone(), &url)
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", who.dpop_proof(method.as_str(), &htu, Some(token)));
    if let Some((ct, b)) = body {
        req = req.header("Content-Type", ct).body(b);
    }
    if let Some(m) = if_match {
        req = req.header("If-Match", m);
    }
    answer(req.send().await.unwrap()).await
}

fn etag(a: &Answer) -> String {
    a.headers["etag"].to_str().unwrap().to_owned()
}

/// A client_credentials token request of `tpp`: its status.
async fn tpp_token_status(srv: &TestServer, tpp: &Tpp) -> u16 {
    let url = srv.url("/token");
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    form.extend(tpp.auth_fields(srv));
    post_form(
        &srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await
    .status
}

fn new_tpp_metadata(tpp: &Tpp) -> Value {
    let mut m = tpp.pkjwt_metadata();
    m["grant_types"] = json!(["client_credentials"]);
    m["scope"] = json!("accounts");
    m["redirect_uris"] = json!([]);
    m
}

/// Without a valid admin token nothing answers: 401 with a challenge;
/// another client's token 401; a token without the route's scope 403.
#[actix_web::test]
async fn admin_routes_need_an_admin_token_with_the_scope() {
    let (setup, ops, reader, outsider) = setup(Backend::Sqlite);
    let adm = Admin::start(&setup).await;
    let http = reqwest::Client::new();
    let url = format!("{}/admin/v1/clients", adm.base);

    let a = answer(http.get(&url).send().await.unwrap()).await;
    assert_error(&a, 401, &["invalid_token"]);
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("DPoP")
    );

    let a = answer(
        http.get(&url)
            .bearer_auth("not-a-token")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&a, 401, &["invalid_token"]);

    // A DPoP-bound token presented as a bearer token.
    let t = token(&adm.srv, &ops, "admin:read").await;
    let a = answer(http.get(&url).bearer_auth(&t).send().await.unwrap()).await;
    assert_error(&a, 401, &["invalid_token"]);

    // A proof for another URL.
    let a = answer(
        http.get(&url)
            .header("Authorization", format!("DPoP {t}"))
            .header(
                "DPoP",
                ops.dpop_proof("GET", "http://elsewhere.example/admin/v1/clients", Some(&t)),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_error(&a, 401, &["invalid_dpop_proof"]);

    // A client that is not an admin client, whatever its scopes.
    let t = token(&adm.srv, &outsider, ALL).await;
    let a = call(
        &adm,
        &outsider,
        &t,
        Method::GET,
        "/admin/v1/clients",
        None,
        None,
    )
    .await;
    assert_error(&a, 401, &["invalid_token"]);

    // The reader may read, not write.
    let t = token(&adm.srv, &reader, "admin:read").await;
    let a = call(
        &adm,
        &reader,
        &t,
        Method::GET,
        "/admin/v1/clients",
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    let body = new_tpp_metadata(&Tpp::new("tpp-never")).to_string();
    let a = call(
        &adm,
        &reader,
        &t,
        Method::POST,
        "/admin/v1/clients",
        Some(("application/json", body)),
        None,
    )
    .await;
    assert_error(&a, 403, &["insufficient_scope"]);
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"admin:clients\"")
    );
    let a = call(
        &adm,
        &reader,
        &t,
        Method::GET,
        "/admin/v1/audit",
        None,
        None,
    )
    .await;
    assert_error(&a, 403, &["insufficient_scope"]);

    // Every refusal is in the audit log, with who and the status.
    let t = token(&adm.srv, &ops, "admin:audit").await;
    let a = call(
        &adm,
        &ops,
        &t,
        Method::GET,
        "/admin/v1/audit?resource=clients",
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    let lines = a.json["items"].as_array().unwrap();
    let statuses: Vec<(String, i64)> = lines
        .iter()
        .map(|l| {
            (
                l["actor"].as_str().unwrap().to_owned(),
                l["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        statuses.contains(&("anonymous".into(), 401)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("ops-reader".into(), 403)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&("ops-reader".into(), 200)),
        "{statuses:?}"
    );
    adm.stop().await;
}

/// Create, read, patch, replace and delete a client, with every bad input
/// of the issue, on both backends; the client works at the token endpoint
/// as soon as it is created and stops as soon as it is deleted.
#[actix_web::test]
async fn admin_client_lifecycle() {
    for backend in crate::harness::BACKENDS {
        let (setup, ops, _, _) = setup(backend);
        let adm = Admin::start(&setup).await;
        let t = token(&adm.srv, &ops, ALL).await;
        let tpp = Tpp::new("tpp-admin-made");
        let path = "/admin/v1/clients/tpp-admin-made";
        assert_eq!(tpp_token_status(&adm.srv, &tpp).await, 401);

        let a = call(
            &adm,
            &ops,
            &t,
            Method::POST,
            "/admin/v1/clients",
            Some(("application/json", new_tpp_metadata(&tpp).to_string())),
            None,
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.json);
        assert_eq!(a.json["origin"], "admin");
        assert!(a.json.get("client_secret").is_none());
        let created = etag(&a);
        assert_eq!(
            tpp_token_status(&adm.srv, &tpp).await,
            200,
            "usable at once"
        );

        // The same client_id again: 409.
        let a = call(
            &adm,
            &ops,
            &t,
            Method::POST,
            "/admin/v1/clients",
            Some(("application/json", new_tpp_metadata(&tpp).to_string())),
            None,
        )
        .await;
        assert_error(&a, 409, &["conflict"]);

        let a = call(&adm, &ops, &t, Method::GET, path, None, None).await;
        assert_eq!(a.status, 200);
        assert_eq!(etag(&a), created);
        assert_eq!(a.json["metadata"]["scope"], "accounts");

        let patch = json!({"client_name": "Renamed TPP"}).to_string();
        let merge = "application/merge-patch+json";
        let a = call(
            &adm,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((merge, patch.clone())),
            None,
        )
        .await;
        assert_error(&a, 428, &["precondition_required"]);
        let a = call(
            &adm,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((merge, patch.clone())),
            Some("\"stale\""),
        )
        .await;
        assert_error(&a, 412, &["precondition_failed"]);
        let a = call(
            &adm,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some(("application/json", patch.clone())),
            Some(&created),
        )
        .await;
        assert_eq!(a.status, 415, "{}", a.json);
        let a = call(
            &adm,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((merge, patch.clone())),
            Some(&created),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.json);
        assert_eq!(a.json["metadata"]["client_name"], "Renamed TPP");
        let patched = etag(&a);
        assert_ne!(patched, created);
        // The old ETag is stale now.
        let a = call(
            &adm,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((merge, patch)),
            Some(&created),
        )
        .await;
        assert_error(&a, 412, &["precondition_failed"]);

        // Bodies that would break the profile or are not metadata: 400
        // naming what is wrong; nothing changes.
        for (edit, words) in [
            (
                json!({"token_endpoint_auth_method": "none"}),
                "token_endpoint_auth_method",
            ),
            (json!({"token_endpoint_auth_signing_alg": "RS256"}), "RS256"),
            (
                json!({"redirect_uris": ["http://tpp.example/cb"], "grant_types": ["authorization_code"]}),
                "https",
            ),
            (json!({"colour": "blue"}), "colour"),
            // Found by the `dn` fuzz target: it panicked the parser.
            (
                json!({"token_endpoint_auth_method": "tls_client_auth", "tls_client_auth_subject_dn": "OID.",
                "jwks": null}),
                "tls_client_auth_subject_dn",
            ),
            (json!({"client_id": "another"}), "client_id"),
        ] {
            let a = call(
                &adm,
                &ops,
                &t,
                Method::PATCH,
                path,
                Some((merge, edit.to_string())),
                Some(&patched),
            )
            .await;
            assert_eq!(a.status, 400, "{edit}: {}", a.json);
            let d = a.json["error_description"].as_str().unwrap();
            assert!(d.contains(words), "{edit}: {d}");
        }
        let a = call(&adm, &ops, &t, Method::GET, path, None, None).await;
        assert_eq!(etag(&a), patched, "refused writes change nothing");

        // Too large, not JSON.
        let big = json!({"client_name": "x".repeat(8000)}).to_string();
        let a = call(
            &adm,
            &ops,
            &t,
            Method::PUT,
            path,
            Some(("application/json", big)),
            Some(&patched),
        )
        .await;
        assert_eq!(a.status, 413, "{}", a.json);
        let a = call(
            &adm,
            &ops,
            &t,
            Method::PUT,
            path,
            Some(("application/json", "{not json".into())),
            Some(&patched),
        )
        .await;
        assert_error(&a, 400, &["invalid_request"]);

        // A full replace.
        let mut full = new_tpp_metadata(&tpp);
        full["client_name"] = json!("Replaced");
        let a = call(
            &adm,
            &ops,
            &t,
            Method::PUT,
            path,
            Some(("application/json", full.to_string())),
            Some(&patched),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.json);
        let replaced = etag(&a);

        // Unknown ids, file-owned clients.
        let a = call(
            &adm,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/clients/nobody",
            None,
            None,
        )
        .await;
        assert_error(&a, 404, &["not_found"]);
        let a = call(
            &adm,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/clients/ops",
            None,
            None,
        )
        .await;
        assert_eq!(a.json["file_owned"], true);
        let ops_tag = etag(&a);
        let a = call(
            &adm,
            &ops,
            &t,
            Method::DELETE,
            "/admin/v1/clients/ops",
            None,
            Some(&ops_tag),
        )
        .await;
        assert_error(&a, 409, &["conflict"]);
        assert!(
            a.json["error_description"]
                .as_str()
                .unwrap()
                .contains("file")
        );

        // Paging.
        let a = call(
            &adm,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/clients?limit=2",
            None,
            None,
        )
        .await;
        assert_eq!(a.json["items"].as_array().unwrap().len(), 2);
        let next = a.json["next"].as_str().unwrap().to_owned();
        let a = call(
            &adm,
            &ops,
            &t,
            Method::GET,
            &format!("/admin/v1/clients?limit=2&after={next}"),
            None,
            None,
        )
        .await;
        let ids: Vec<&str> = a.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["client_id"].as_str().unwrap())
            .collect();
        assert!(ids.iter().all(|i| *i > next.as_str()), "{ids:?}");
        let a = call(
            &adm,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/clients?limit=0",
            None,
            None,
        )
        .await;
        assert_error(&a, 400, &["invalid_request"]);
        let a = call(
            &adm,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/clients?origin=admin",
            None,
            None,
        )
        .await;
        assert_eq!(a.json["items"].as_array().unwrap().len(), 1);

        // Delete: the client's next token request fails.
        let a = call(&adm, &ops, &t, Method::DELETE, path, None, None).await;
        assert_error(&a, 428, &["precondition_required"]);
        let a = call(&adm, &ops, &t, Method::DELETE, path, None, Some(&replaced)).await;
        assert_eq!(a.status, 204, "{}", a.json);
        assert_eq!(tpp_token_status(&adm.srv, &tpp).await, 401);
        let a = call(&adm, &ops, &t, Method::GET, path, None, None).await;
        assert_error(&a, 404, &["not_found"]);

        // The audit log has each action, refused ones included, with
        // before and after and no secret.
        let a = call(
            &adm,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/audit?resource_id=tpp-admin-made&limit=200",
            None,
            None,
        )
        .await;
        let lines = a.json["items"].as_array().unwrap();
        let seen: Vec<(String, i64)> = lines
            .iter()
            .map(|l| {
                (
                    l["action"].as_str().unwrap().to_owned(),
                    l["status"].as_i64().unwrap(),
                )
            })
            .collect();
        for want in [
            ("clients.create", 201),
            ("clients.create", 409),
            ("clients.patch", 428),
            ("clients.patch", 412),
            ("clients.patch", 415),
            ("clients.patch", 200),
            ("clients.patch", 400),
            ("clients.replace", 413),
            ("clients.replace", 200),
            ("clients.delete", 428),
            ("clients.delete", 204),
            ("clients.get", 404),
        ] {
            assert!(
                seen.contains(&(want.0.into(), want.1)),
                "{want:?} in {seen:?}"
            );
        }
        let patch_line = lines
            .iter()
            .find(|l| l["action"] == "clients.patch" && l["status"] == 200)
            .unwrap();
        assert_eq!(
            patch_line["detail"]["before"]["metadata"]["client_name"],
            "TPP tpp-admin-made"
        );
        assert_eq!(
            patch_line["detail"]["after"]["metadata"]["client_name"],
            "Renamed TPP"
        );
        assert_eq!(patch_line["actor"], "ops");
        assert_eq!(patch_line["actor_client"], "ops");
        assert_eq!(patch_line["source"], "127.0.0.1");
        assert!(!a.json.to_string().contains(&t), "no token in the log");
        adm.stop().await;
    }
}

/// A `client_secret_basic` client (outside the FAPI rules) gets its secret
/// once; the store keeps its hash only.
#[actix_web::test]
async fn admin_generated_secrets_are_shown_once() {
    let (setup, ops, _, _) = setup(Backend::Sqlite);
    let adm = Admin::start(&setup).await;
    let t = token(&adm.srv, &ops, ALL).await;
    let body = json!({
        "client_id": "legacy-app",
        "fapi": false,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["client_credentials"],
        "scope": "accounts",
    });
    let a = call(
        &adm,
        &ops,
        &t,
        Method::POST,
        "/admin/v1/clients",
        Some(("application/json", body.to_string())),
        None,
    )
    .await;
    assert_eq!(a.status, 201, "{}", a.json);
    let secret = a.json["client_secret"].as_str().unwrap().to_owned();
    assert!(secret.len() >= 40);
    let a = call(
        &adm,
        &ops,
        &t,
        Method::GET,
        "/admin/v1/clients/legacy-app",
        None,
        None,
    )
    .await;
    assert!(!a.json.to_string().contains(&secret));
    let res = adm
        .srv
        .client(None)
        .post(adm.srv.url("/token"))
        .basic_auth("legacy-app", Some(&secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    // Not DPoP-bound and not FAPI: a plain bearer token.
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    let a = call(
        &adm,
        &ops,
        &t,
        Method::GET,
        "/admin/v1/audit?resource_id=legacy-app",
        None,
        None,
    )
    .await;
    assert!(
        !a.json.to_string().contains(&secret),
        "no secret in the audit log"
    );
    adm.stop().await;
}

/// Every route of the OpenAPI document is mounted (it answers 401 without
/// a token, not 404), other methods on its paths are not, and paths the
/// document does not name answer 404.
#[actix_web::test]
async fn openapi_documents_exactly_the_mounted_routes() {
    let (setup, ops, _, _) = setup(Backend::Sqlite);
    let adm = Admin::start(&setup).await;
    let t = token(&adm.srv, &ops, "admin:read").await;
    let a = call(
        &adm,
        &ops,
        &t,
        Method::GET,
        "/admin/v1/openapi.json",
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.json["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = a.json["paths"].as_object().unwrap();
    assert!(paths.len() >= 9, "{:?}", paths.keys());
    let http = reqwest::Client::new();
    let all = ["get", "post", "put", "patch", "delete"];
    let mut documented = 0;
    for (path, item) in paths {
        let concrete = path
            .replace("{client_id}", "some-client")
            .replace("{kid}", "some-kid")
            .replace("{consent_id}", "some-consent")
            .replace("{name}", "some-directory");
        assert!(!concrete.contains('{'), "unknown parameter in {path}");
        for m in all {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
            let status = http
                .request(method, format!("{}{concrete}", adm.base))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            if item.get(m).is_some() {
                documented += 1;
                assert_eq!(status, 401, "{m} {path} is documented but not mounted");
            } else {
                assert!(
                    matches!(status, 404 | 405),
                    "{m} {path} is mounted but not documented: {status}"
                );
            }
        }
    }
    assert_eq!(documented, strongroom::admin::MOUNTED.len());
    // Each mounted route answers (401 without a token), so MOUNTED, which
    // the unit test holds against the document, is what is served.
    for (m, p) in strongroom::admin::MOUNTED {
        let concrete = p
            .replace("{client_id}", "c")
            .replace("{kid}", "k")
            .replace("{consent_id}", "x");
        let method = Method::from_bytes(m.to_uppercase().as_bytes()).unwrap();
        let status = http
            .request(method, format!("{}/admin/v1{concrete}", adm.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401, "{m} {p}");
    }
    for stray in [
        "/admin/v1",
        "/admin/v1/",
        "/admin/v1/users",
        "/admin/v2/clients",
        "/admin/v1/clients/a/b",
    ] {
        let status = http
            .get(format!("{}{stray}", adm.base))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{stray}");
    }
    // The public listeners have no admin route.
    let status = adm
        .srv
        .client(None)
        .get(adm.srv.url("/admin/v1/clients"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 404);
    adm.stop().await;
}

/// A rotation through the API publishes the new keys in the JWKS at once;
/// a token signed before still verifies; the only active key of an
/// algorithm cannot be retired; a retired one stops signing.
#[actix_web::test]
async fn admin_key_rotation() {
    let (setup, ops, _, _) = setup(Backend::Sqlite);
    let adm = Admin::start(&setup).await;
    let t = token(&adm.srv, &ops, ALL).await;
    let jwks = |srv: &TestServer| {
        let (c, u) = (srv.client(None), srv.url("/jwks"));
        async move {
            c.get(u)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let kids = |j: &Value| -> Vec<String> {
        j["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    let before = kids(&jwks(&adm.srv).await);
    let a = call(&adm, &ops, &t, Method::GET, "/admin/v1/keys", None, None).await;
    let listed = a.json["items"].as_array().unwrap().clone();
    assert_eq!(listed.len(), before.len());
    let ps256 = listed.iter().find(|k| k["alg"] == "PS256").unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_owned();
    let a = call(
        &adm,
        &ops,
        &t,
        Method::POST,
        &format!("/admin/v1/keys/{ps256}/retire"),
        None,
        None,
    )
    .await;
    assert_error(&a, 409, &["conflict"]);
    let a = call(
        &adm,
        &ops,
        &t,
        Method::POST,
        "/admin/v1/keys/nope/retire",
        None,
        None,
    )
    .await;
    assert_error(&a, 404, &["not_found"]);

    let a = call(
        &adm,
        &ops,
        &t,
        Method::POST,
        "/admin/v1/keys/rotate",
        None,
        None,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    let published: Vec<String> = a.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert!(!published.is_empty());
    let after = kids(&jwks(&adm.srv).await);
    for k in before.iter().chain(&published) {
        assert!(after.contains(k), "{k} in the JWKS at once: {after:?}");
    }
    // The old token still works (the key that signed it still verifies).
    let a = call(&adm, &ops, &t, Method::GET, "/admin/v1/keys", None, None).await;
    assert_eq!(a.status, 200);
    let states: Vec<&str> = a.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap())
        .collect();
    assert!(states.contains(&"scheduled"), "{states:?}");
    let a = call(
        &adm,
        &ops,
        &t,
        Method::GET,
        "/admin/v1/audit?resource=keys",
        None,
        None,
    )
    .await;
    assert!(
        a.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["action"] == "keys.rotate" && l["status"] == 200)
    );
    adm.stop().await;
}

/// `strongroom admin …` against the in-process instance `adm`, logging in
/// as its dev admin client (dev mode makes it); (exit code, stdout, stderr).
fn cli(setup: &Setup, adm: &Admin, args: &[&str]) -> (Option<i32>, String, String) {
    let config = setup.data_dir.join("cli.toml");
    std::fs::write(&config, "dev_mode = true\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strongroom"))
        .arg("admin")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .env("STRONGROOM_CONFIG", &config)
        .env("STRONGROOM_ISSUER", &adm.srv.issuer)
        .env(
            "STRONGROOM_LISTEN",
            format!("127.0.0.1:{}", adm.srv.main_port),
        )
        .env(
            "STRONGROOM_MTLS_LISTEN",
            format!("127.0.0.1:{}", adm.srv.mtls_port),
        )
        .env(
            "STRONGROOM_ADMIN_LISTEN",
            adm.base.trim_start_matches("http://"),
        )
        .env("STRONGROOM_DATA_DIR", &setup.data_dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Introspection of `token` by `tpp` at `srv`: whether it is active.
async fn active(srv: &TestServer, tpp: &Tpp, token: &str) -> bool {
    let mut form = tpp.auth_fields(srv);
    form.push(("token".into(), token.into()));
    let a = post_form(&srv.client(None), &srv.url("/introspect"), &form, None).await;
    assert_eq!(a.status, 200, "{}", a.json);
    a.json["active"] == true
}

/// The issue's check, on two instances on one PostgreSQL: a client created
/// through the CLI on A completes a FAPI 2.0 flow on B at once; a key
/// rotation on A is in B's JWKS within the propagation time and the key
/// that signed the earlier id_token still verifies it there; revoking a
/// consent through the API makes its tokens inactive on both; the client's
/// deletion on B stops its next token request on A.
#[actix_web::test]
async fn admin_changes_reach_every_instance() {
    use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::JwkSet};
    let (mut setup, ops, _, _) = setup(Backend::Postgres);
    setup.users = vec![crate::fapi::demo_user()];
    let a = Admin::start(&setup).await;
    let b = Admin::start(&setup).await;
    let tpp = Tpp::new("tpp-two-instances");
    let file = setup.data_dir.join("tpp.json");
    std::fs::write(&file, tpp.pkjwt_metadata().to_string()).unwrap();
    let (code, out, err) = cli(&setup, &a, &["clients", "create", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");

    // The FAPI 2.0 flow on B: PAR, login, consent, code, DPoP-bound tokens.
    let pkce = crate::tpp::Pkce::new();
    let params = tpp.authz_params(&pkce, "openid accounts");
    let nonce = crate::tpp::param(&params, "nonce").to_owned();
    let request_uri = tpp.push(&b.srv, params).await;
    let browser = b.srv.browser();
    let back = crate::tpp::browser_flow(
        &b.srv,
        &browser,
        &tpp.client_id,
        &request_uri,
        crate::fapi::USER,
        crate::fapi::PASSWORD,
        true,
    )
    .await;
    let q = crate::tpp::query(&back);
    let url = b.srv.url("/token");
    let mut form = tpp.auth_fields(&b.srv);
    form.extend([
        ("grant_type".to_string(), "authorization_code".to_string()),
        ("code".into(), q["code"].clone()),
        ("redirect_uri".into(), tpp.redirect_uri.clone()),
        ("code_verifier".into(), pkce.verifier.clone()),
    ]);
    let tokens = post_form(
        &b.srv.client(None),
        &url,
        &form,
        Some(tpp.dpop_proof("POST", &url, None)),
    )
    .await;
    assert_eq!(tokens.status, 200, "{}", tokens.json);
    assert_eq!(tokens.json["token_type"], "DPoP");
    let id_token = tokens.json["id_token"].as_str().unwrap().to_owned();

    // Rotation on A; B's JWKS has the new keys within 2 s and still the
    // key of the id_token, which verifies with it.
    let ta = token(&a.srv, &ops, ALL).await;
    let r = call(
        &a,
        &ops,
        &ta,
        Method::POST,
        "/admin/v1/keys/rotate",
        None,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let kid = r.json["items"][0]["kid"].as_str().unwrap().to_owned();
    let started = Instant::now();
    let jwks: JwkSet = loop {
        let j: JwkSet = b
            .srv
            .client(None)
            .get(b.srv.url("/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j.find(&kid).is_some() {
            break j;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "B's JWKS within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let header = decode_header(&id_token).unwrap();
    let old = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("the old key is still published");
    let mut v = Validation::new(header.alg);
    v.set_audience(&[tpp.client_id.as_str()]);
    v.set_issuer(&[b.srv.issuer.as_str()]);
    let claims = decode::<Value>(&id_token, &DecodingKey::from_jwk(old).unwrap(), &v)
        .expect("the id_token verifies with the old key after the rotation")
        .claims;
    assert_eq!(claims["nonce"], nonce);

    // A consent's tokens (a grant the bank's consent step named), revoked
    // through the API on A: inactive on both.
    let store = token_store::Store::connect(&setup.database_url, 1).unwrap();
    let t = crate::tpp::now();
    use oauth_core::storage::{GrantRepository as _, TokenRepository as _};
    store
        .put_grant(oauth_core::storage::GrantRecord {
            grant_id: "g-consent".into(),
            client_id: tpp.client_id.clone(),
            sub: Some("sub-alice-0001".into()),
            scope: "openid accounts".into(),
            consent_id: Some("aac-admin-1".into()),
            details: "{}".into(),
            created_at: t,
            revoked_at: None,
        })
        .await
        .unwrap();
    let consent_token = format!("consent-token-{}", crate::tpp::random(16));
    store
        .put_tokens(vec![oauth_core::storage::TokenRecord {
            token_hash: oauth_core::secret::hash_secret(&consent_token),
            kind: oauth_core::storage::TokenKind::Access,
            client_id: tpp.client_id.clone(),
            grant_id: Some("g-consent".into()),
            sub: Some("sub-alice-0001".into()),
            scope: "accounts".into(),
            cnf_jkt: Some(tpp.dpop.thumbprint()),
            cnf_x5t: None,
            details: "{}".into(),
            created_at: t,
            expires_at: t + 600,
            revoked_at: None,
        }])
        .await
        .unwrap();
    assert!(
        active(&a.srv, &tpp, &consent_token).await && active(&b.srv, &tpp, &consent_token).await
    );
    let (code, out, err) = cli(&setup, &a, &["consents", "revoke", "aac-admin-1"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("revoked 1 grant"), "{out}");
    assert!(!active(&a.srv, &tpp, &consent_token).await, "inactive on A");
    assert!(!active(&b.srv, &tpp, &consent_token).await, "inactive on B");
    let flow_token = tokens.json["access_token"].as_str().unwrap();
    assert!(
        active(&a.srv, &tpp, flow_token).await,
        "the other grant's tokens stay"
    );

    // Deleted on B: A refuses its next token request.
    let tb = token(&b.srv, &ops, ALL).await;
    let r = call(
        &b,
        &ops,
        &tb,
        Method::GET,
        "/admin/v1/clients/tpp-two-instances",
        None,
        None,
    )
    .await;
    let tag = etag(&r);
    let r = call(
        &b,
        &ops,
        &tb,
        Method::DELETE,
        "/admin/v1/clients/tpp-two-instances",
        None,
        Some(&tag),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.json);
    assert_eq!(tpp_token_status(&a.srv, &tpp).await, 401, "A at once");
    let left = store
        .get_active_token(
            &oauth_core::secret::hash_secret(flow_token),
            crate::tpp::now(),
        )
        .await
        .unwrap();
    assert!(left.is_none(), "its tokens revoked with it");

    // The audit log, read on B, has each of these actions.
    let r = call(
        &b,
        &ops,
        &tb,
        Method::GET,
        "/admin/v1/audit?limit=200",
        None,
        None,
    )
    .await;
    let actions: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["status"].as_i64().unwrap() < 300)
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    for want in [
        "clients.create",
        "keys.rotate",
        "consents.revoke",
        "clients.delete",
    ] {
        assert!(actions.contains(&want), "{want} in {actions:?}");
    }
    a.stop().await;
    b.stop().await;
}

/// `strongroom admin` against `strongroom serve` in dev mode, as a newcomer
/// runs them: the dev admin client exists, and the CLI creates a client
/// that then gets tokens, rotates keys, reads the audit log and deletes
/// the client, with tables by default and JSON on request.
#[actix_web::test]
async fn the_admin_cli_drives_a_dev_server() {
    use std::process::{Command, Stdio};
    const BIN: &str = env!("CARGO_BIN_EXE_strongroom");
    strongroom::startup::install_crypto_provider();
    let setup = Setup::new(Backend::Sqlite);
    setup.dev_ca();
    let config = setup.data_dir.join("strongroom.toml");
    std::fs::write(&config, "dev_mode = true\n[log]\nlevel = \"warn\"\n").unwrap();
    let port = || {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (main, mtls, admin) = (port(), port(), port());
    let env = |c: &mut Command| {
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap())
            .env("STRONGROOM_CONFIG", &config)
            .env("STRONGROOM_ISSUER", format!("https://localhost:{main}"))
            .env("STRONGROOM_LISTEN", format!("127.0.0.1:{main}"))
            .env("STRONGROOM_MTLS_LISTEN", format!("127.0.0.1:{mtls}"))
            .env("STRONGROOM_ADMIN_LISTEN", format!("127.0.0.1:{admin}"))
            .env("STRONGROOM_DATA_DIR", &setup.data_dir)
            .env("STRONGROOM_DATABASE_URL", &setup.database_url);
    };
    let log = std::fs::File::create(setup.data_dir.join("serve.log")).unwrap();
    let mut serve = Command::new(BIN);
    serve.arg("serve");
    env(&mut serve);
    let mut child = serve
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{admin}/healthz"))
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{}",
            std::fs::read_to_string(setup.data_dir.join("serve.log")).unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let admin_cli = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.arg("admin").args(args);
        env(&mut c);
        let out = c.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let tpp = Tpp::new("tpp-from-cli");
    let file = setup.data_dir.join("tpp.json");
    std::fs::write(&file, new_tpp_metadata(&tpp).to_string()).unwrap();

    let (code, out, err) = admin_cli(&["clients", "create", file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.starts_with("client_id"), "a table: {out}");
    assert!(
        out.contains("tpp-from-cli") && out.contains("admin"),
        "{out}"
    );
    let srv = TestServer::external(&setup, main, mtls);
    assert_eq!(tpp_token_status(&srv, &tpp).await, 200);

    let (code, out, err) = admin_cli(&["clients", "list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"tpp-from-cli") && ids.contains(&"dev-admin"),
        "{ids:?}"
    );

    let (code, out, err) = admin_cli(&["keys", "rotate"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("scheduled"), "{out}");
    let (code, out, _) = admin_cli(&["keys", "list", "--json"]);
    assert_eq!(code, Some(0));
    let keys: Value = serde_json::from_str(&out).unwrap();
    assert!(
        keys["items"].as_array().unwrap().len() >= 8,
        "rotated keys listed: {out}"
    );

    let (code, out, err) = admin_cli(&["clients", "delete", "tpp-from-cli"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("deleted"));
    assert_eq!(tpp_token_status(&srv, &tpp).await, 401);
    let (code, _, err) = admin_cli(&["clients", "show", "tpp-from-cli"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("404"), "{err}");

    let (code, out, err) = admin_cli(&["audit", "tail", "--json", "--lines", "100"]);
    assert_eq!(code, Some(0), "{err}");
    let lines: Value = serde_json::from_str(&out).unwrap();
    let actions: Vec<&str> = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    for a in [
        "clients.create",
        "clients.list",
        "keys.rotate",
        "clients.delete",
        "clients.get",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    assert!(
        lines
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["actor"] == "dev-admin")
    );

    // Someone without the dev admin's certificate gets nowhere.
    let other = setup.data_dir.join("nothing.pem");
    let (code, _, err) = admin_cli(&["--cert", other.to_str().unwrap(), "clients", "list"]);
    assert_eq!(code, Some(1), "{err}");
    let _ = child.kill();
    let _ = child.wait();
}

/// `{"keys": [...]}` over https with the dev certificate (the dev CA is
/// trusted by Strongroom's outbound client in dev mode): an issuer's JWKS.
pub fn serve_https_jwks(setup: &Setup, jwks: Value) -> String {
    serve_https_json(setup, "/jwks", jwks)
}

/// Serves `body` as JSON at `path` over https with the dev CA's localhost
/// certificate (which the server trusts in dev mode); returns its URL.
pub fn serve_https_json(setup: &Setup, path: &'static str, body: Value) -> String {
    let jwks = body;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dev = strongroom::devcerts::ensure_dev_certs(&setup.data_dir).unwrap();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&dev.server_chain)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&dev.server_key).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://localhost:{}{path}", l.local_addr().unwrap().port());
    let server = actix_web::HttpServer::new(move || {
        let body = jwks.clone();
        actix_web::App::new().route(
            path,
            actix_web::web::get().to(move || {
                let body = body.clone();
                async move { actix_web::HttpResponse::Ok().json(body) }
            }),
        )
    })
    .workers(1)
    .listen_rustls_0_23(l, tls)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    url
}

/// RFC 9068 access tokens of a trusted issuer: accepted with the right
/// `typ`, issuer, audience, algorithm, key and lifetime, and the scope;
/// each defect refused with 401 (403 without the scope).
#[actix_web::test]
async fn admin_accepts_jwt_access_tokens_of_a_trusted_issuer() {
    let (setup, _, _, _) = setup(Backend::Sqlite);
    setup.dev_ca();
    let idp = crate::tpp::TppKey::es256("idp-1");
    let rogue = crate::tpp::TppKey::es256("idp-1");
    let jwks_uri = serve_https_jwks(&setup, json!({"keys": [idp.jwk]}));
    let adm = Admin::start_with(&setup, |cfg| {
        cfg.admin.trusted_issuers = vec![strongroom::config::TrustedIssuer {
            issuer: "https://idp.bank.example".into(),
            jwks_uri,
            audience: "https://strongroom.bank.example/admin".into(),
            algorithms: vec!["ES256".into()],
        }];
    })
    .await;
    let t = crate::tpp::now();
    let good = json!({"iss": "https://idp.bank.example", "sub": "alice", "client_id": "ops-portal",
        "aud": "https://strongroom.bank.example/admin", "scope": "admin:read admin:audit",
        "iat": t, "exp": t + 300, "jti": crate::tpp::random(12)});
    let get = |token: String| {
        let url = format!("{}/admin/v1/clients", adm.base);
        async move {
            answer(
                reqwest::Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let a = get(idp.sign(Some("at+jwt"), &good)).await;
    assert_eq!(a.status, 200, "{}", a.json);

    let edit = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    for (why, token) in [
        ("typ JWT", idp.sign(Some("JWT"), &good)),
        ("no typ", idp.sign(None, &good)),
        (
            "other issuer",
            idp.sign(
                Some("at+jwt"),
                &edit(&|c| c["iss"] = json!("https://evil.example")),
            ),
        ),
        (
            "other audience",
            idp.sign(
                Some("at+jwt"),
                &edit(&|c| c["aud"] = json!("https://elsewhere.example")),
            ),
        ),
        (
            "expired",
            idp.sign(Some("at+jwt"), &edit(&|c| c["exp"] = json!(t - 120))),
        ),
        (
            "no sub",
            idp.sign(
                Some("at+jwt"),
                &edit(&|c| {
                    c.as_object_mut().unwrap().remove("sub");
                }),
            ),
        ),
        ("another key", rogue.sign(Some("at+jwt"), &good)),
    ] {
        let a = get(token).await;
        assert_error(&a, 401, &["invalid_token"]);
        assert!(a.headers.contains_key("www-authenticate"), "{why}");
    }
    // Tampered payload.
    let token = idp.sign(Some("at+jwt"), &good);
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = crate::tpp::b64(edit(&|c| c["scope"] = json!(ALL)).to_string().as_bytes());
    assert_eq!(get(parts.join(".")).await.status, 401);

    let a = get(idp.sign(
        Some("at+jwt"),
        &edit(&|c| c["scope"] = json!("admin:clients")),
    ))
    .await;
    assert_error(&a, 403, &["insufficient_scope"]);

    // The audit log names the issuer's subject.
    let url = format!(
        "{}/admin/v1/audit?actor=https%3A%2F%2Fidp.bank.example%23alice",
        adm.base
    );
    let a = answer(
        reqwest::Client::new()
            .get(url)
            .bearer_auth(idp.sign(Some("at+jwt"), &good))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    let lines = a.json["items"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["action"] == "clients.list" && l["actor_client"] == "ops-portal")
    );
    adm.stop().await;
}

/// `admin.tls` with `admin.client_subject_dns`: the admin listener speaks
/// HTTPS with the server certificate, and an admin call needs both the
/// token and a CA-verified certificate of a listed subject; `/metrics`
/// answers over HTTPS without one.
#[actix_web::test]
async fn admin_over_mtls_needs_the_listed_certificate() {
    use rcgen::DnType;
    let (setup, ops, _, _) = setup(Backend::Sqlite);
    let (ca, ca_key) = setup.dev_ca();
    let adm = Admin::start_with(&setup, |cfg| {
        cfg.admin.tls = true;
        cfg.admin.client_subject_dns = vec!["CN=platform-ops,O=Bank".into()];
    })
    .await;
    assert!(adm.base.starts_with("https://"));
    let issue = |cn: &str| {
        strongroom::devcerts::issue_client_cert(
            &ca,
            &ca_key,
            &[(DnType::OrganizationName, "Bank"), (DnType::CommonName, cn)],
            &[],
            strongroom::devcerts::KeyAlg::EcdsaP256,
        )
        .unwrap()
    };
    let (good_cert, good_key) = issue("platform-ops");
    let (other_cert, other_key) = issue("someone-else");
    let ca_path = adm.srv.dev_ca();
    let t = token(&adm.srv, &ops, ALL).await;
    let url = format!("{}/admin/v1/clients", adm.base);
    let get = |http: reqwest::Client| {
        let (url, t, proof) = (
            url.clone(),
            t.clone(),
            ops.dpop_proof("GET", &url, Some(&t)),
        );
        async move {
            answer(
                http.get(url)
                    .header("Authorization", format!("DPoP {t}"))
                    .header("DPoP", proof)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let with =
        |cert: &str, key: &str| crate::harness::https_client(&ca_path, Some((cert, key)), false);
    let a = get(with(&good_cert, &good_key)).await;
    assert_eq!(a.status, 200, "{}", a.json);
    let a = get(crate::harness::https_client(&ca_path, None, false)).await;
    assert_error(&a, 403, &["access_denied"]);
    let a = get(with(&other_cert, &other_key)).await;
    assert_error(&a, 403, &["access_denied"]);
    // Plain HTTP is not served there.
    let plain = reqwest::Client::new()
        .get(url.replace("https://", "http://"))
        .send()
        .await;
    assert!(plain.is_err() || plain.unwrap().status() != 200);
    let metrics = crate::harness::https_client(&ca_path, None, false)
        .get(format!("{}/metrics", adm.base))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    adm.stop().await;
}

/// Directories through the API: added, a TPP of that directory registers
/// at once; changed and removed under `If-Match`, after which its
/// software statements are refused; file-owned ones are not changed; a
/// directory the registrar would refuse is refused whole; and another
/// instance picks up the change within the propagation time.
#[actix_web::test]
async fn admin_directories_are_live() {
    for backend in crate::harness::BACKENDS {
        let (mut setup, ops, _, _) = setup(backend);
        setup.users = vec![crate::fapi::demo_user()];
        let file_dir = |cfg: &mut strongroom::config::Config| {
            let mut d = crate::dcr::directory_config();
            d["name"] = json!("file-dir");
            d["issuer"] = json!("File Directory Ltd");
            cfg.directories = vec![serde_json::from_value(d).unwrap()];
        };
        let a = Admin::start_with(&setup, file_dir).await;
        // A second instance shares a PostgreSQL database (a SQLite file
        // has one server).
        let b = match backend {
            Backend::Postgres => Some(Admin::start_with(&setup, file_dir).await),
            Backend::Sqlite => None,
        };
        let t = token(&a.srv, &ops, ALL).await;
        let sw = crate::dcr::Software::new(&setup, "tppAdminDir01");
        let reg = crate::dcr::register(&a.srv, &sw, &sw.request_claims(&a.srv)).await;
        assert_eq!(reg.status, 400, "unknown directory first: {}", reg.json);

        let body = crate::dcr::directory_config().to_string();
        let r = call(
            &a,
            &ops,
            &t,
            Method::POST,
            "/admin/v1/directories",
            Some(("application/json", body.clone())),
            None,
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.json);
        assert_eq!(r.json["file_owned"], false);
        let tag = etag(&r);
        let reg = crate::dcr::register(&a.srv, &sw, &sw.request_claims(&a.srv)).await;
        assert_eq!(reg.status, 201, "registers at once: {}", reg.json);
        // The other instance within the propagation time.
        let started = Instant::now();
        while let Some(b) = &b {
            let sw2 = crate::dcr::Software::new(
                &setup,
                &format!("tppB{}", started.elapsed().as_millis()),
            );
            let reg = crate::dcr::register(&b.srv, &sw2, &sw2.request_claims(&b.srv)).await;
            if reg.status == 201 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "B within 2 s: {}",
                reg.json
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let r = call(
            &a,
            &ops,
            &t,
            Method::POST,
            "/admin/v1/directories",
            Some(("application/json", body)),
            None,
        )
        .await;
        assert_error(&r, 409, &["conflict"]);
        let mut bad = crate::dcr::directory_config();
        bad["name"] = json!("broken");
        bad["issuer"] = json!("Broken Ltd");
        bad.as_object_mut().unwrap().remove("jwks");
        let r = call(
            &a,
            &ops,
            &t,
            Method::POST,
            "/admin/v1/directories",
            Some(("application/json", bad.to_string())),
            None,
        )
        .await;
        assert_error(&r, 400, &["invalid_request"]);
        let r = call(
            &a,
            &ops,
            &t,
            Method::POST,
            "/admin/v1/directories",
            Some((
                "application/json",
                json!({"name": "x", "colour": 1}).to_string(),
            )),
            None,
        )
        .await;
        assert_error(&r, 400, &["invalid_request"]);

        let r = call(
            &a,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/directories",
            None,
            None,
        )
        .await;
        let names: Vec<(&str, bool)> = r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["name"].as_str().unwrap(),
                    d["file_owned"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(names, vec![("file-dir", true), ("test", false)]);
        let r = call(
            &a,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/directories/file-dir",
            None,
            None,
        )
        .await;
        let file_tag = etag(&r);
        let r = call(
            &a,
            &ops,
            &t,
            Method::DELETE,
            "/admin/v1/directories/file-dir",
            None,
            Some(&file_tag),
        )
        .await;
        assert_error(&r, 409, &["conflict"]);

        let merge = "application/merge-patch+json";
        let patch = json!({"base_scopes": ["openid"]}).to_string();
        let r = call(
            &a,
            &ops,
            &t,
            Method::PATCH,
            "/admin/v1/directories/test",
            Some((merge, patch.clone())),
            None,
        )
        .await;
        assert_error(&r, 428, &["precondition_required"]);
        let r = call(
            &a,
            &ops,
            &t,
            Method::PATCH,
            "/admin/v1/directories/test",
            Some((merge, patch.clone())),
            Some(&tag),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["base_scopes"], json!(["openid"]));
        let patched = etag(&r);
        let r = call(
            &a,
            &ops,
            &t,
            Method::PATCH,
            "/admin/v1/directories/test",
            Some((merge, patch)),
            Some(&tag),
        )
        .await;
        assert_error(&r, 412, &["precondition_failed"]);

        let r = call(
            &a,
            &ops,
            &t,
            Method::DELETE,
            "/admin/v1/directories/test",
            None,
            Some(&patched),
        )
        .await;
        assert_eq!(r.status, 204, "{}", r.json);
        let sw3 = crate::dcr::Software::new(&setup, "tppAfterRemoval");
        let reg = crate::dcr::register(&a.srv, &sw3, &sw3.request_claims(&a.srv)).await;
        assert_eq!(reg.status, 400, "removed at once: {}", reg.json);
        let r = call(
            &a,
            &ops,
            &t,
            Method::GET,
            "/admin/v1/audit?resource=directories&limit=200",
            None,
            None,
        )
        .await;
        let seen: Vec<(String, i64)> = r.json["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["action"].as_str().unwrap().to_owned(),
                    l["status"].as_i64().unwrap(),
                )
            })
            .collect();
        for want in [
            ("directories.create", 201),
            ("directories.create", 409),
            ("directories.create", 400),
            ("directories.delete", 409),
            ("directories.patch", 428),
            ("directories.patch", 200),
            ("directories.patch", 412),
            ("directories.delete", 204),
        ] {
            assert!(
                seen.contains(&(want.0.into(), want.1)),
                "{want:?} in {seen:?}"
            );
        }
        a.stop().await;
        if let Some(b) = b {
            b.stop().await;
        }
    }
}

/// The `expires_in` of a new client_credentials token of `who`.
async fn expires_in(srv: &TestServer, who: &Tpp) -> i64 {
    let url = srv.url("/token");
    let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
    form.extend(who.auth_fields(srv));
    let a = post_form(
        &srv.client(None),
        &url,
        &form,
        Some(who.dpop_proof("POST", &url, None)),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.json);
    a.json["expires_in"].as_i64().unwrap()
}

/// `[tokens]` through the API: a change applies to the next token at once
/// here and within the propagation time on another instance, survives a
/// restart, is validated as the file is, and is dropped again with DELETE;
/// `admin.file_owned = ["tokens"]` keeps the file's.
#[actix_web::test]
async fn admin_token_settings_are_live() {
    for backend in crate::harness::BACKENDS {
        let (setup, ops, _, _) = setup(backend);
        let a = Admin::start(&setup).await;
        let b = match backend {
            Backend::Postgres => Some(Admin::start(&setup).await),
            Backend::Sqlite => None,
        };
        let file_default = expires_in(&a.srv, &ops).await;
        let t = token(&a.srv, &ops, &format!("{ALL} admin:settings")).await;
        let path = "/admin/v1/settings/tokens";
        let r = call(&a, &ops, &t, Method::GET, path, None, None).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["source"], "file");
        assert_eq!(r.json["access_token_lifetime_secs"], file_default);
        assert_eq!(r.json["profile"], "fapi2", "the profile, read-only");
        assert_eq!(r.json["dpop_iat_window_secs"], 60);
        let tag = etag(&r);
        let r = call(
            &a,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((
                "application/merge-patch+json",
                json!({"dpop_iat_window_secs": 5}).to_string(),
            )),
            Some(&tag),
        )
        .await;
        assert_error(&r, 400, &["invalid_request"]);
        let merge = "application/merge-patch+json";
        let r = call(
            &a,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((merge, json!({"code_lifetime_secs": 300}).to_string())),
            Some(&tag),
        )
        .await;
        assert_error(&r, 400, &["invalid_request"]);
        assert!(
            r.json["error_description"]
                .as_str()
                .unwrap()
                .contains("code_lifetime_secs")
        );
        let r = call(
            &a,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((
                merge,
                json!({"access_token_lifetime_secs": 123}).to_string(),
            )),
            None,
        )
        .await;
        assert_error(&r, 428, &["precondition_required"]);
        let r = call(
            &a,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((
                merge,
                json!({"access_token_lifetime_secs": 123}).to_string(),
            )),
            Some(&tag),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["source"], "admin");
        let changed = etag(&r);
        assert_eq!(expires_in(&a.srv, &ops).await, 123, "at once here");
        if let Some(b) = &b {
            let started = Instant::now();
            while expires_in(&b.srv, &ops).await != 123 {
                assert!(started.elapsed() < Duration::from_secs(2), "B within 2 s");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let r = call(
            &a,
            &ops,
            &t,
            Method::PATCH,
            path,
            Some((merge, json!({"access_token_lifetime_secs": 7}).to_string())),
            Some(&tag),
        )
        .await;
        assert_error(&r, 412, &["precondition_failed"]);

        // A restart keeps the change.
        a.stop().await;
        let a = Admin::start(&setup).await;
        assert_eq!(expires_in(&a.srv, &ops).await, 123, "after a restart");

        let t = token(&a.srv, &ops, &format!("{ALL} admin:settings")).await;
        let r = call(&a, &ops, &t, Method::DELETE, path, None, Some(&changed)).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_eq!(r.json["source"], "file");
        assert_eq!(
            expires_in(&a.srv, &ops).await,
            file_default,
            "back to the file's"
        );
        let r = call(&a, &ops, &t, Method::DELETE, path, None, Some("*")).await;
        assert_error(&r, 404, &["not_found"]);
        a.stop().await;
        if let Some(b) = b {
            b.stop().await;
        }
    }
    // File-owned.
    let (setup, ops, _, _) = setup(Backend::Sqlite);
    let a = Admin::start_with(&setup, |cfg| cfg.admin.file_owned = vec!["tokens".into()]).await;
    let t = token(&a.srv, &ops, &format!("{ALL} admin:settings")).await;
    let r = call(
        &a,
        &ops,
        &t,
        Method::PATCH,
        "/admin/v1/settings/tokens",
        Some((
            "application/merge-patch+json",
            json!({"access_token_lifetime_secs": 9}).to_string(),
        )),
        Some("*"),
    )
    .await;
    assert_error(&r, 409, &["conflict"]);
    assert!(
        r.json["error_description"]
            .as_str()
            .unwrap()
            .contains("file-owned")
    );
    a.stop().await;
}

/// Where an authorization of `tpp` goes first: the bank's login app when
/// the hooks take it (its URL without the hand-off).
async fn first_stop(srv: &TestServer, tpp: &Tpp) -> String {
    let pkce = crate::tpp::Pkce::new();
    let request_uri = tpp
        .push(srv, tpp.authz_params(&pkce, "openid accounts"))
        .await;
    let browser = srv.browser();
    let res = browser
        .get(crate::tpp::authorize_url(srv, &tpp.client_id, &request_uri))
        .send()
        .await
        .unwrap();
    let mut loc = crate::tpp::location(&res);
    if loc.starts_with('/') {
        let res = browser.get(srv.url(&loc)).send().await.unwrap();
        loc = crate::tpp::location(&res);
    }
    loc.split('?').next().unwrap().to_owned()
}

/// `[hooks]` through the API: secrets never shown and kept when sent back
/// redacted, the login app moved live, discovery-bound fields refused,
/// a configuration the bridge refuses refused whole, the stored document
/// sealed, and DELETE back to the file's.
#[actix_web::test]
async fn admin_hook_settings_are_live_and_sealed() {
    let (mut setup, ops, _, _) = setup(Backend::Sqlite);
    let tpp = Tpp::new("tpp-hooked");
    setup.clients.push(tpp.pkjwt_metadata());
    let adm = Admin::start_with(&setup, |cfg| {
        cfg.hooks = Some(consent_bridge::HooksConfig {
            login_url: "https://bank-a.example/login".into(),
            consent_url: "https://bank-a.example/consent".into(),
            shared_secret: crate::tpp::b64(&[7u8; 32]),
            consent_service_token: "service-token-secret-123".into(),
            bank_issuer: "https://bank-a.example".into(),
            clients: vec!["tpp-hooked".into()],
            require_intent: false,
            ..consent_bridge::HooksConfig::default()
        });
    })
    .await;
    assert_eq!(
        first_stop(&adm.srv, &tpp).await,
        "https://bank-a.example/login"
    );
    let t = token(&adm.srv, &ops, &format!("{ALL} admin:hooks")).await;
    let path = "/admin/v1/settings/hooks";
    let r = call(&adm, &ops, &t, Method::GET, path, None, None).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["shared_secret"], "<redacted>");
    assert_eq!(r.json["consent_service_token"], "<redacted>");
    assert!(!r.json.to_string().contains("service-token-secret-123"));
    let tag = etag(&r);

    let merge = "application/merge-patch+json";
    let r = call(
        &adm,
        &ops,
        &t,
        Method::PATCH,
        path,
        Some((merge, json!({"consent_claim": "other_claim"}).to_string())),
        Some(&tag),
    )
    .await;
    assert_error(&r, 409, &["conflict"]);
    let r = call(
        &adm,
        &ops,
        &t,
        Method::PATCH,
        path,
        Some((merge, json!({"shared_secret": "too-short"}).to_string())),
        Some(&tag),
    )
    .await;
    assert_error(&r, 400, &["invalid_request"]);
    // The whole GET document sent back with one change: secrets kept.
    let mut doc = call(&adm, &ops, &t, Method::GET, path, None, None)
        .await
        .json;
    doc["login_url"] = json!("https://bank-b.example/login");
    let r = call(
        &adm,
        &ops,
        &t,
        Method::PUT,
        path,
        Some(("application/json", doc.to_string())),
        Some(&tag),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["source"], "admin");
    let changed = etag(&r);
    assert_eq!(
        first_stop(&adm.srv, &tpp).await,
        "https://bank-b.example/login",
        "at once"
    );

    // Sealed at rest: the secret is not in the database file in clear.
    let db = std::fs::read(setup.data_dir.join("strongroom.db")).unwrap_or_default();
    let wal = std::fs::read(setup.data_dir.join("strongroom.db-wal")).unwrap_or_default();
    let needle = b"service-token-secret-123";
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "sealed in the database"
        );
    }
    // A restart keeps the change (opened with the key-encryption key).
    adm.stop().await;
    let adm = Admin::start_with(&setup, |cfg| {
        cfg.hooks = Some(consent_bridge::HooksConfig {
            login_url: "https://bank-a.example/login".into(),
            consent_url: "https://bank-a.example/consent".into(),
            shared_secret: crate::tpp::b64(&[7u8; 32]),
            consent_service_token: "service-token-secret-123".into(),
            bank_issuer: "https://bank-a.example".into(),
            clients: vec!["tpp-hooked".into()],
            require_intent: false,
            ..consent_bridge::HooksConfig::default()
        });
    })
    .await;
    assert_eq!(
        first_stop(&adm.srv, &tpp).await,
        "https://bank-b.example/login",
        "after a restart"
    );
    let t = token(&adm.srv, &ops, &format!("{ALL} admin:hooks")).await;
    let r = call(&adm, &ops, &t, Method::DELETE, path, None, Some(&changed)).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(
        first_stop(&adm.srv, &tpp).await,
        "https://bank-a.example/login",
        "the file's again"
    );
    let r = call(
        &adm,
        &ops,
        &t,
        Method::GET,
        "/admin/v1/audit?resource=settings",
        None,
        None,
    )
    .await;
    assert!(
        !r.json.to_string().contains("service-token-secret-123"),
        "no secret in the audit log"
    );
    adm.stop().await;
}

/// `[ciba]` through the API: the polling interval and the resolve hook
/// change for the next request, the service token stays secret and is kept
/// when sent back redacted, and an invalid section is refused.
#[actix_web::test]
async fn admin_ciba_settings_are_live() {
    use std::sync::{Arc, Mutex};
    /// (path, Authorization) of each call to the bank.
    type Calls = Arc<Mutex<Vec<(String, Option<String>)>>>;
    let hits: Calls = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let bank = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = hits.clone();
    let server = actix_web::HttpServer::new(move || {
        let seen = seen.clone();
        actix_web::App::new().route(
            "/{path}",
            actix_web::web::post().to(
                move |req: actix_web::HttpRequest, path: actix_web::web::Path<String>| {
                    let seen = seen.clone();
                    async move {
                        let auth = req
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_owned);
                        seen.lock().unwrap().push((path.into_inner(), auth));
                        if req.path().starts_with("/resolve") {
                            actix_web::HttpResponse::Ok().json(json!({"sub": "cust-alice"}))
                        } else {
                            actix_web::HttpResponse::NoContent().finish()
                        }
                    }
                },
            ),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);

    let (mut setup, ops, _, _) = setup(Backend::Sqlite);
    let tpp = Tpp::new("tpp-ciba-admin");
    let mut m = tpp.pkjwt_metadata();
    m["grant_types"] = json!(["urn:openid:params:grant-type:ciba"]);
    m["backchannel_token_delivery_mode"] = json!("poll");
    m["backchannel_authentication_request_signing_alg"] = json!("ES256");
    m.as_object_mut().unwrap().remove("redirect_uris");
    setup.clients.push(m);
    let bank_for_cfg = bank.clone();
    let adm = Admin::start_with(&setup, move |cfg| {
        cfg.hooks = Some(consent_bridge::HooksConfig {
            login_url: "https://bank.example/login".into(),
            consent_url: "https://bank.example/consent".into(),
            shared_secret: crate::tpp::b64(&[5u8; 32]),
            bank_issuer: "https://bank.example".into(),
            require_intent: false,
            ..consent_bridge::HooksConfig::default()
        });
        cfg.ciba = Some(ciba::CibaConfig {
            resolve_url: format!("{bank_for_cfg}/resolve-a"),
            notify_url: format!("{bank_for_cfg}/notify"),
            service_token: "ciba-service-token-xyz".into(),
            interval_secs: 1,
            timeout_ms: 1000,
            ..ciba::CibaConfig::default()
        });
    })
    .await;
    let bc_authorize = || async {
        let t = crate::tpp::now();
        let claims = json!({"iss": tpp.client_id, "aud": adm.srv.issuer, "iat": t, "nbf": t,
            "exp": t + 300, "jti": crate::tpp::random(16), "scope": "openid accounts",
            "login_hint": "alice", "binding_message": "W4SCT"});
        let mut form = vec![("request".to_string(), tpp.key.sign(None, &claims))];
        form.extend(tpp.auth_fields(&adm.srv));
        post_form(
            &adm.srv.client(None),
            &adm.srv.url("/bc-authorize"),
            &form,
            None,
        )
        .await
    };
    let a = bc_authorize().await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["interval"], 1);

    let t = token(&adm.srv, &ops, &format!("{ALL} admin:hooks")).await;
    let path = "/admin/v1/settings/ciba";
    let r = call(&adm, &ops, &t, Method::GET, path, None, None).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["service_token"], "<redacted>");
    let tag = etag(&r);
    let merge = "application/merge-patch+json";
    let r = call(
        &adm,
        &ops,
        &t,
        Method::PATCH,
        path,
        Some((merge, json!({"interval_secs": 0}).to_string())),
        Some(&tag),
    )
    .await;
    assert_error(&r, 400, &["invalid_request"]);
    let r = call(
        &adm,
        &ops,
        &t,
        Method::PATCH,
        path,
        Some((
            merge,
            json!({"interval_secs": 7, "resolve_url": format!("{bank}/resolve-b"),
            "service_token": "<redacted>"})
            .to_string(),
        )),
        Some(&tag),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let a = bc_authorize().await;
    assert_eq!(a.status, 200, "{}", a.json);
    assert_eq!(a.json["interval"], 7, "the new interval at once");
    let calls = hits.lock().unwrap().clone();
    let resolves: Vec<&(String, Option<String>)> = calls
        .iter()
        .filter(|(p, _)| p.starts_with("resolve"))
        .collect();
    assert_eq!(resolves.len(), 2, "{calls:?}");
    assert_eq!(resolves[0].0, "resolve-a");
    assert_eq!(resolves[1].0, "resolve-b", "the new resolve hook");
    assert_eq!(
        resolves[1].1.as_deref(),
        Some("Bearer ciba-service-token-xyz"),
        "the secret kept"
    );
    // Without [ciba] in the file the section is not offered.
    adm.stop().await;
    let (plain, ops, _, _) = self::setup(Backend::Sqlite);
    let adm = Admin::start(&plain).await;
    let t = token(&adm.srv, &ops, &format!("{ALL} admin:hooks")).await;
    let r = call(&adm, &ops, &t, Method::GET, path, None, None).await;
    assert_error(&r, 409, &["conflict"]);
    adm.stop().await;
}

/// The consent page of a fresh authorization of `tpp` for `scope`, after
/// the built-in login.
async fn consent_page(srv: &TestServer, tpp: &Tpp, scope: &str) -> String {
    let pkce = crate::tpp::Pkce::new();
    let request_uri = tpp.push(srv, tpp.authz_params(&pkce, scope)).await;
    let browser = srv.browser();
    let res = browser
        .get(crate::tpp::authorize_url(srv, &tpp.client_id, &request_uri))
        .send()
        .await
        .unwrap();
    let login = crate::tpp::location(&res);
    let res = crate::tpp::submit_login(
        &browser,
        &srv.url(&login),
        crate::fapi::USER,
        crate::fapi::PASSWORD,
    )
    .await;
    let consent = crate::tpp::location(&res);
    assert!(consent.ends_with("/consent"), "{consent}");
    browser
        .get(srv.url(&consent))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `[scopes]` through the API: the consent page's words change for the
/// next customer, the claims each scope releases are shown, a scope
/// without a description is refused.
#[actix_web::test]
async fn admin_scope_words_are_live() {
    let (mut setup, ops, _, _) = setup(Backend::Sqlite);
    setup.users = vec![crate::fapi::demo_user()];
    let tpp = Tpp::new("tpp-words");
    setup.clients.push(tpp.pkjwt_metadata());
    let adm = Admin::start(&setup).await;
    let before = consent_page(&adm.srv, &tpp, "openid accounts").await;
    assert!(!before.contains("Your accounts, balances and nothing else"));
    let t = token(&adm.srv, &ops, &format!("{ALL} admin:settings")).await;
    let path = "/admin/v1/settings/scopes";
    let r = call(&adm, &ops, &t, Method::GET, path, None, None).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let released = &r.json["released_claims"];
    assert!(
        released["profile"]
            .as_array()
            .unwrap()
            .contains(&json!("given_name"))
    );
    assert!(
        released["email"]
            .as_array()
            .unwrap()
            .contains(&json!("email_verified"))
    );
    let tag = etag(&r);
    let merge = "application/merge-patch+json";
    let r = call(
        &adm,
        &ops,
        &t,
        Method::PATCH,
        path,
        Some((merge, json!({"accounts": {"description": ""}}).to_string())),
        Some(&tag),
    )
    .await;
    assert_error(&r, 400, &["invalid_request"]);
    let r = call(
        &adm,
        &ops,
        &t,
        Method::PATCH,
        path,
        Some((
            merge,
            json!({"accounts": {"description": "Your accounts, balances and nothing else",
            "translations": {"fr": "Vos comptes et vos soldes"}}})
            .to_string(),
        )),
        Some(&tag),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert!(r.json.get("released_claims").is_some());
    let after = consent_page(&adm.srv, &tpp, "openid accounts").await;
    assert!(
        after.contains("Your accounts, balances and nothing else"),
        "the new words at once"
    );
    // A GET sent back whole (with its read-only members) is accepted.
    let r = call(&adm, &ops, &t, Method::GET, path, None, None).await;
    let tag = etag(&r);
    let r = call(
        &adm,
        &ops,
        &t,
        Method::PUT,
        path,
        Some(("application/json", r.json.to_string())),
        Some(&tag),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    adm.stop().await;
}

/// Issue 25 item 6: the admin API takes `subject_type`,
/// `sector_identifier_uri` and `subject` with the same checks as DCR: the
/// sector document is read and must list every redirect URI.
#[actix_web::test]
async fn the_admin_api_checks_the_subject_metadata() {
    for backend in crate::harness::BACKENDS {
        let (setup, ops, _, _) = setup(backend);
        let tpp = Tpp::new("tpp-admin-pairwise");
        let missing = serve_https_json(&setup, "/sector.json", json!([]));
        let listed = serve_https_json(&setup, "/sector.json", json!([tpp.redirect_uri]));
        let adm = Admin::start(&setup).await;
        let t = token(&adm.srv, &ops, ALL).await;
        let with = |extra: Value| {
            let mut m = tpp.pkjwt_metadata();
            for (k, v) in extra.as_object().unwrap() {
                m[k] = v.clone();
            }
            ("application/json", m.to_string())
        };
        for (extra, says) in [
            (
                json!({"subject_type": "pairwise", "sector_identifier_uri": missing}),
                "is not listed at sector_identifier_uri",
            ),
            (json!({"subject_type": "consent"}), "public or pairwise"),
            (
                json!({"subject_type": "public", "subject": "consent"}),
                "leave subject_type out",
            ),
        ] {
            let a = call(
                &adm,
                &ops,
                &t,
                Method::POST,
                "/admin/v1/clients",
                Some(with(extra.clone())),
                None,
            )
            .await;
            assert_eq!(a.status, 400, "{extra}: {}", a.json);
            assert_eq!(a.json["error"], "invalid_client_metadata");
            assert!(
                a.json["error_description"].as_str().unwrap().contains(says),
                "{extra}: {}",
                a.json
            );
        }
        let a = call(
            &adm,
            &ops,
            &t,
            Method::POST,
            "/admin/v1/clients",
            Some(with(
                json!({"subject_type": "pairwise", "sector_identifier_uri": listed}),
            )),
            None,
        )
        .await;
        assert_eq!(a.status, 201, "{}", a.json);
        assert_eq!(a.json["metadata"]["subject_type"], "pairwise");
        adm.stop().await;
    }
}
