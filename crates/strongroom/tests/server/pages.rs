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
