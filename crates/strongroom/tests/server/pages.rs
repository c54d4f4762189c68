//! The customer's pages as a browser receives them: each page's
//! Content-Security-Policy names exactly where its forms can lead (Chromium
//! applies `form-action` to the redirect after a form POST), nothing broader
//! and never another client's redirect URI.

use std::collections::HashMap;

use crate::fapi::{PASSWORD, USER, World, world};
use crate::harness::Backend;
use crate::tpp::*;

/// The policy's directives, each with its source list.
fn csp(res: &reqwest::Response) -> HashMap<String, Vec<String>> {
    let v = res
        .headers()
        .get("content-security-policy")
        .expect("a Content-Security-Policy")
        .to_str()
        .unwrap();
    let mut out = HashMap::new();
    for d in v.split(';') {
        let mut t = d.split_whitespace().map(str::to_string);
        if let Some(name) = t.next() {
            assert!(
                out.insert(name.clone(), t.collect::<Vec<_>>()).is_none(),
                "{name} twice in {v}"
            );
        }
    }
    for (name, sources) in &out {
        for s in sources {
            assert!(!s.contains('*'), "wildcard in {name}: {v}");
            assert!(
                !s.ends_with(':') || s.contains('/'),
                "bare scheme source {s} in {name}: {v}"
            );
        }
    }
    assert_eq!(out["default-src"], ["'none'"], "{v}");
    assert_eq!(out["frame-ancestors"], ["'none'"], "{v}");
    assert!(!out.contains_key("script-src"), "{v}");
    out
}

/// A URL without query and fragment: what a CSP source for it lists.
fn without_query(url: &str) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Starts an interaction for `tpp`; returns the login page's path.
async fn start(w: &World, tpp: &Tpp, browser: &reqwest::Client) -> String {
    let (request_uri, _) = w.push_dpop(tpp, &Pkce::new(), "openid accounts").await;
    let res = browser
        .get(authorize_url(&w.srv, &tpp.client_id, &request_uri))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let next = location(&res);
    assert!(next.ends_with("/login"), "{next}");
    next
}

#[actix_web::test]
async fn each_page_allows_exactly_its_own_redirect_targets() {
    let w = world(Backend::Sqlite).await;
    let browser = w.srv.browser();
    let login = start(&w, &w.dpop, &browser).await;
    let own = vec!["'self'".to_string(), w.dpop.redirect_uri.clone()];

    let page = browser.get(w.srv.url(&login)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = csp(&page);
    assert_eq!(policy["form-action"], own);
    let html = page.text().await.unwrap();
    assert!(!html.contains(&w.other.redirect_uri));

    // A wrong password shows the page again, with the same policy.
    let again = submit_login(&browser, &w.srv.url(&login), USER, "wrong").await;
    assert_eq!(again.status(), 200);
    assert_eq!(csp(&again)["form-action"], own);

    let res = submit_login(&browser, &w.srv.url(&login), USER, PASSWORD).await;
    assert_eq!(res.status(), 303);
    let consent = location(&res);
    assert!(consent.ends_with("/consent"), "{consent}");
    let page = browser.get(w.srv.url(&consent)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = csp(&page);
    assert_eq!(policy["form-action"], own);
    assert!(
        policy["style-src"].iter().all(|s| s.starts_with('\'')),
        "{policy:?}"
    );

    // Approve ends at a URL the policy names: Chromium lets it through.
    let res = browser
        .post(w.srv.url(&consent))
        .form(&[("action", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert!(query(&back).contains_key("code"), "{back}");
    assert!(policy["form-action"].contains(&without_query(&back)));

    // Cancel on the login page of another client's interaction: that
    // client's URI only, and the redirect is to it.
    let browser = w.srv.browser();
    let login = start(&w, &w.other, &browser).await;
    let page = browser.get(w.srv.url(&login)).send().await.unwrap();
    let policy = csp(&page);
    assert_eq!(
        policy["form-action"],
        ["'self'".to_string(), w.other.redirect_uri.clone()]
    );
    assert!(
        !page
            .headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .contains(&w.dpop.redirect_uri)
    );
    let res = browser
        .post(w.srv.url(&login))
        .form(&[("action", "cancel")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let back = location(&res);
    assert_eq!(query(&back)["error"], "access_denied");
    assert!(policy["form-action"].contains(&without_query(&back)));

    // The error page has no form: nothing may be posted from it.
    let res = browser.get(w.srv.url("/authorize")).send().await.unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(csp(&res)["form-action"], ["'none'"]);
    w.srv.stop().await;
}

const EVIL_NAME: &str = "<script>alert(\"x\")</script> & 'Co'";

/// A server whose first client has a hostile name and a logo, privacy
/// policy and terms; the second is plain.
async fn branded_world() -> World {
    let mut setup = crate::harness::Setup::new(Backend::Sqlite);
    let dpop = Tpp::new("tpp-dpop");
    let other = Tpp::new("tpp-other");
    let mut meta = dpop.pkjwt_metadata();
    meta["client_name"] = serde_json::json!(EVIL_NAME);
    meta["logo_uri"] = serde_json::json!("https://tpp-dpop.example/logo.png?size=96");
    meta["policy_uri"] = serde_json::json!("https://tpp-dpop.example/privacy");
    meta["tos_uri"] = serde_json::json!("https://tpp-dpop.example/terms");
    setup.clients = vec![meta, other.pkjwt_metadata()];
    setup.users = vec![crate::fapi::demo_user()];
    setup.tweak = Some(|cfg| {
        cfg.ui.bank_name = "Bank of Tests".into();
        cfg.scopes.insert(
            "accounts".into(),
            serde_json::from_value(serde_json::json!({
                "description": "See your current accounts",
                "translations": {"fr": "Voir vos comptes courants"}
            }))
            .unwrap(),
        );
    });
    let srv = setup.start().await;
    World {
        srv,
        dpop,
        other,
        mtls: Tpp::new("unused"),
    }
}

/// PAR with extra parameters; then `/authorize` in `browser`; returns the
/// login page's path.
async fn start_with(
    w: &World,
    tpp: &Tpp,
    browser: &reqwest::Client,
    extra: &[(&str, &str)],
) -> String {
    let mut form = tpp.authz_params(&Pkce::new(), "openid accounts payments offline_access");
    form.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let request_uri = tpp.push(&w.srv, form).await;
    let res = browser
        .get(authorize_url(&w.srv, &tpp.client_id, &request_uri))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    location(&res)
}

/// The value of `attr` on the first element that has `marker` in its tag.
fn attr<'a>(html: &'a str, marker: &str, attr: &str) -> Option<&'a str> {
    let at = html.find(marker)?;
    let tag_start = html[..at].rfind('<')?;
    let tag = &html[tag_start..tag_start + html[tag_start..].find('>')?];
    let key = format!("{attr}=\"");
    let v = &tag[tag.find(&key)? + key.len()..];
    Some(&v[..v.find('"')?])
}

#[actix_web::test]
async fn pages_say_what_is_asked_in_the_customers_language_and_escape_the_client() {
    let w = branded_world().await;
    let browser = w.srv.browser();
    // ui_locales (from the pushed request) wins over Accept-Language.
    let login = start_with(&w, &w.dpop, &browser, &[("ui_locales", "xx de-CH fr")]).await;
    let page = browser
        .get(w.srv.url(&login))
        .header("accept-language", "fr;q=1, en;q=0.5")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = csp(&page);
    // The logo, exactly: its URL without the query, https only.
    assert_eq!(
        policy["img-src"],
        ["'self'", "https://tpp-dpop.example/logo.png"]
    );
    assert_eq!(policy["style-src"], ["'self'"]);
    let html = page.text().await.unwrap();
    assert!(html.contains("<html lang=\"de\">"), "{html}");
    assert!(html.contains("Bei Bank of Tests anmelden"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains(
            "&lt;script&gt;alert(&quot;x&quot;)&lt;&#x2f;script&gt; &amp; &#x27;Co&#x27;"
        ) || html
            .contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;Co&#x27;"),
        "{html}"
    );
    // Accessible: one h1, a main, labelled inputs.
    assert_eq!(html.matches("<h1").count(), 1);
    assert!(html.contains("<main"));
    assert!(html.contains("<label for=\"username\"") && html.contains("id=\"username\""));

    // A wrong password: the message is an alert tied to the fields, the
    // username is kept, the password is not.
    let again = browser
        .post(w.srv.url(&login))
        .form(&[
            ("username", "alice\"><b>"),
            ("password", "not-this-one"),
            ("action", "login"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    let html = again.text().await.unwrap();
    assert!(html.contains("role=\"alert\" id=\"login-error\""), "{html}");
    assert_eq!(
        attr(&html, "id=\"username\"", "value"),
        Some("alice&quot;&gt;&lt;b&gt;")
    );
    assert_eq!(
        attr(&html, "id=\"username\"", "aria-describedby"),
        Some("login-error")
    );
    assert_eq!(
        attr(&html, "id=\"password\"", "aria-describedby"),
        Some("login-error")
    );
    assert!(!html.contains("not-this-one"));

    let res = submit_login(&browser, &w.srv.url(&login), USER, PASSWORD).await;
    let consent = location(&res);
    // Accept-Language alone does not override the pushed ui_locales.
    let page = browser
        .get(w.srv.url(&consent))
        .header("accept-language", "fr")
        .send()
        .await
        .unwrap();
    let html = page.text().await.unwrap();
    assert!(html.contains("<html lang=\"de\">"), "{html}");
    // Configured scope words (untranslated to German: the default
    // description), built-in ones, and an unknown scope by its name.
    assert!(html.contains("See your current accounts"), "{html}");
    assert!(
        html.contains("Zahlungen auslösen, die Sie freigeben"),
        "{html}"
    );
    // Links whose names stand on their own, and how long access lasts.
    assert!(
        html.contains("href=\"https://tpp-dpop.example/privacy\""),
        "{html}"
    );
    assert!(
        html.contains("Datenschutzerklärung von &lt;script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("Nutzungsbedingungen von &lt;script&gt;"),
        "{html}"
    );
    assert!(html.contains("30 Tage"), "{html}");
    assert!(html.contains("Zugriff erlauben") && html.contains("Zugriff ablehnen"));
    assert!(!html.contains("<script"), "{html}");
    w.srv.stop().await;
}

#[actix_web::test]
async fn accept_language_picks_by_q_value_and_unknown_is_english() {
    let w = branded_world().await;
    for (header, lang, words) in [
        (
            "de;q=0.2, fr-CA;q=0.8, en;q=0.5",
            "fr",
            "Voir vos comptes courants",
        ),
        ("ja, zh-Hant", "en", "See your current accounts"),
        ("", "en", "Allow access"),
    ] {
        let browser = w.srv.browser();
        let login = start_with(&w, &w.other, &browser, &[]).await;
        let mut req = browser.get(w.srv.url(&login));
        if !header.is_empty() {
            req = req.header("accept-language", header);
        }
        let html = req.send().await.unwrap().text().await.unwrap();
        assert!(
            html.contains(&format!("<html lang=\"{lang}\">")),
            "{header}: {html}"
        );
        let res = submit_login(&browser, &w.srv.url(&login), USER, PASSWORD).await;
        let mut req = browser.get(w.srv.url(&location(&res)));
        if !header.is_empty() {
            req = req.header("accept-language", header);
        }
        let html = req.send().await.unwrap().text().await.unwrap();
        assert!(html.contains(words), "{header}: {html}");
    }
    // The error page too, from Accept-Language alone.
    let res = w
        .srv
        .browser()
        .get(w.srv.url("/authorize"))
        .header("accept-language", "de")
        .send()
        .await
        .unwrap();
    let html = res.text().await.unwrap();
    assert!(html.contains("<html lang=\"de\">"), "{html}");
    assert!(html.contains("Diese Anfrage kann nicht abgeschlossen werden"));

    // Discovery says exactly what ships.
    let meta: serde_json::Value = w
        .srv
        .client(None)
        .get(w.srv.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        meta["ui_locales_supported"],
        serde_json::json!(["en", "fr", "de"])
    );
    w.srv.stop().await;
}

#[actix_web::test]
async fn assets_are_served_by_plain_name_only_and_cached_by_content() {
    let w = branded_world().await;
    let http = w.srv.client(None);
    let html = http
        .get(w.srv.url("/authorize"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let css = attr(&html, "rel=\"stylesheet\"", "href")
        .unwrap()
        .to_string();
    assert!(css.starts_with("/assets/style.css?v="), "{css}");
    let res = http.get(w.srv.url(&css)).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/css; charset=utf-8");
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    assert!(css.ends_with(etag.trim_matches('"')), "{css} {etag}");
    let body = res.text().await.unwrap();
    assert!(body.contains(".primary"));
    let res = http
        .get(w.srv.url("/assets/style.css"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 304);
    assert!(
        !res.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );

    let theme = http
        .get(w.srv.url("/assets/theme.css"))
        .send()
        .await
        .unwrap();
    assert!(theme.text().await.unwrap().contains("--sr-primary:#0f4c81"));
    let svg = http
        .get(w.srv.url("/assets/logo.svg"))
        .send()
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    assert!(
        svg.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("sandbox")
    );

    for bad in [
        "/assets/..%2F..%2FCargo.toml",
        "/assets/%2e%2e",
        "/assets/.env",
        "/assets/../Cargo.toml",
        "/assets/style.css%00",
        "/assets/nope.css",
        "/assets/",
        "/assets/a%5Cb.css",
    ] {
        let res = http.get(w.srv.url(bad)).send().await.unwrap();
        let status = res.status().as_u16();
        assert!(matches!(status, 404 | 400), "{bad}: {status}");
        assert!(!res.text().await.unwrap().contains("[package]"), "{bad}");
    }
    w.srv.stop().await;
}
