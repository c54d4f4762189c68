//! The public URL of a request, from configuration only.
//!
//! A DPoP proof's `htu` (RFC 9449 §4.3 check 9) and, under FAPI 1.0, a
//! client assertion's `aud` (RFC 7523 §3 item 3) are compared with the URL
//! of the endpoint the request reached. That URL must be ours, never one a
//! request names: taken from `Host`, `X-Forwarded-Host` or `Forwarded`, it
//! would let a proof or assertion made for another server be used here
//! (RFC 9449 §11.1; the audience-injection attacks behind FAPI 2.0 §5.3.2.1
//! item 8). So the base is the configured issuer on the browser-facing
//! listener and the configured mTLS base URL (RFC 8705 §5) on the mTLS
//! listener. A trusted proxy (`tls.trusted_proxies`) that fronts both names
//! on one listener may pick between them with the forwarded host; a host
//! that names neither is ignored, and scheme and port headers never count.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;

use crate::tls::IpCidr;

/// One configured base URL and the authority (`host[:port]`, lower case,
/// default port omitted) a forwarded host must equal to pick it.
#[derive(Debug, Clone)]
struct Base {
    url: String,
    authority: String,
}

impl Base {
    fn new(url: &str) -> Base {
        let url = url.trim_end_matches('/').to_owned();
        let authority = url::Url::parse(&url)
            .ok()
            .and_then(|u| {
                let host = u.host_str()?.to_ascii_lowercase();
                Some(match u.port() {
                    Some(p) => format!("{host}:{p}"),
                    None => host,
                })
            })
            .unwrap_or_default();
        Base { url, authority }
    }
}

/// The configured public URLs and which listener serves which.
#[derive(Debug, Clone)]
pub struct PublicUrls {
    browser: Base,
    mtls: Option<Base>,
    /// The local address of the mTLS listener, once bound.
    mtls_listener: Option<SocketAddr>,
    trusted_proxies: Vec<IpCidr>,
    /// The token endpoint on each base: FAPI 1.0 accepts them as
    /// client-assertion audiences at every endpoint.
    token_endpoints: Box<[String]>,
}

impl PublicUrls {
    /// `issuer`: the browser-facing base (and the single listener's);
    /// `mtls`: the mTLS listener's base, when there is one.
    #[must_use]
    pub fn new(issuer: &str, mtls: Option<&str>, trusted_proxies: Vec<IpCidr>) -> PublicUrls {
        let browser = Base::new(issuer);
        let mtls = mtls.map(Base::new);
        let token_endpoints = std::iter::once(&browser)
            .chain(mtls.as_ref())
            .map(|b| format!("{}{}", b.url, crate::api::TOKEN_PATH))
            .collect();
        PublicUrls {
            browser,
            mtls,
            mtls_listener: None,
            trusted_proxies,
            token_endpoints,
        }
    }

    /// The token endpoint's URL on each listener (main, then mTLS).
    #[must_use]
    pub fn token_endpoint_urls(&self) -> &[String] {
        &self.token_endpoints
    }

    /// The same, knowing the mTLS listener's bound address.
    #[must_use]
    pub fn with_mtls_listener(mut self, addr: Option<SocketAddr>) -> PublicUrls {
        self.mtls_listener = addr;
        self
    }

    /// The configured URL of the endpoint this request reached: a
    /// configured base and the request's path.
    #[must_use]
    pub fn request_url(&self, req: &HttpRequest) -> String {
        let local = req.app_config().local_addr();
        let peer = req.peer_addr().map(|a| a.ip());
        let forwarded = self.is_trusted(peer).then(|| forwarded_host(req)).flatten();
        format!(
            "{}{}",
            self.base(local, forwarded.as_deref()).url,
            req.path()
        )
    }

    fn is_trusted(&self, peer: Option<IpAddr>) -> bool {
        peer.is_some_and(|ip| self.trusted_proxies.iter().any(|n| n.contains(ip)))
    }

    /// The base for a request that arrived at `local`, with the host a
    /// trusted proxy forwarded (`None` when untrusted or absent).
    fn base(&self, local: SocketAddr, forwarded: Option<&str>) -> &Base {
        let listener = match (&self.mtls, self.mtls_listener) {
            (Some(mtls), Some(addr)) if addr == local => mtls,
            _ => &self.browser,
        };
        let Some(host) = forwarded else {
            return listener;
        };
        let host = host.trim().to_ascii_lowercase();
        let host = host.strip_suffix(":443").unwrap_or(&host);
        std::iter::once(&self.browser)
            .chain(self.mtls.as_ref())
            .find(|b| !b.authority.is_empty() && b.authority == host)
            .unwrap_or(listener)
    }
}

/// The host a proxy forwarded: RFC 7239 `Forwarded: host=` of the first
/// element, else the first `X-Forwarded-Host`.
fn forwarded_host(req: &HttpRequest) -> Option<String> {
    let headers = req.headers();
    if let Some(v) = headers.get("forwarded").and_then(|v| v.to_str().ok()) {
        let first = v.split(',').next().unwrap_or("");
        for pair in first.split(';') {
            if let Some((k, v)) = pair.split_once('=')
                && k.trim().eq_ignore_ascii_case("host")
            {
                return Some(v.trim().trim_matches('"').to_owned());
            }
        }
    }
    headers
        .get("x-forwarded-host")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    const BROWSER: &str = "127.0.0.1:8443";
    const MTLS: &str = "127.0.0.1:8444";

    fn urls(proxies: &[&str]) -> PublicUrls {
        PublicUrls::new(
            "https://as.bank.example",
            Some("https://mtls.as.bank.example:8444/"),
            proxies.iter().map(|p| p.parse().unwrap()).collect(),
        )
        .with_mtls_listener(Some(MTLS.parse().unwrap()))
    }

    /// A request to `/token` from `peer` with a forged `Host`. (The
    /// listener it arrived at is TestRequest's fixed address, which is not
    /// the mTLS one; `base` takes the listener explicitly.)
    fn from(peer: &str, headers: &[(&str, &str)]) -> HttpRequest {
        let mut r = TestRequest::with_uri("/token")
            .peer_addr(peer.parse().unwrap())
            .insert_header(("host", "evil.example"));
        for h in headers {
            r = r.insert_header(*h);
        }
        r.to_http_request()
    }

    #[test]
    fn token_endpoints_on_both_listeners() {
        assert_eq!(
            urls(&[]).token_endpoint_urls(),
            [
                "https://as.bank.example/token",
                "https://mtls.as.bank.example:8444/token"
            ]
        );
    }

    #[test]
    fn each_listener_has_its_configured_base() {
        let u = urls(&[]);
        assert_eq!(
            u.base(BROWSER.parse().unwrap(), None).url,
            "https://as.bank.example"
        );
        assert_eq!(
            u.base(MTLS.parse().unwrap(), None).url,
            "https://mtls.as.bank.example:8444"
        );
    }

    #[test]
    fn request_headers_never_make_the_url() {
        let u = urls(&[]);
        for h in [
            ("x-forwarded-host", "evil.example"),
            ("forwarded", "host=evil.example;proto=http"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-port", "1"),
            ("x-forwarded-host", "mtls.as.bank.example:8444"),
        ] {
            let req = from("203.0.113.9:4000", &[h]);
            let url = u.request_url(&req);
            assert!(url.ends_with("/token"), "{url}");
            assert!(!url.contains("evil"), "{h:?} made {url}");
            // The untrusted peer may not pick the other configured URL either.
            assert!(!url.contains("mtls"), "{h:?} made {url}");
        }
    }

    #[test]
    fn a_trusted_proxy_picks_only_between_configured_urls() {
        let u = urls(&["10.0.0.0/8"]);
        let local: SocketAddr = BROWSER.parse().unwrap();
        assert_eq!(
            u.base(local, Some("MTLS.as.bank.example:8444")).url,
            "https://mtls.as.bank.example:8444"
        );
        assert_eq!(
            u.base(local, Some("as.bank.example:443")).url,
            "https://as.bank.example"
        );
        assert_eq!(
            u.base(local, Some("evil.example")).url,
            "https://as.bank.example"
        );
        let m: SocketAddr = MTLS.parse().unwrap();
        assert_eq!(
            u.base(m, Some("as.bank.example")).url,
            "https://as.bank.example"
        );
        assert_eq!(
            u.base(m, Some("evil.example")).url,
            "https://mtls.as.bank.example:8444"
        );
        let req = from(
            "10.1.2.3:5000",
            &[(
                "forwarded",
                "for=1.2.3.4;host=\"mtls.as.bank.example:8444\", host=x",
            )],
        );
        assert_eq!(
            forwarded_host(&req).as_deref(),
            Some("mtls.as.bank.example:8444")
        );
        let req = from(
            "10.1.2.3:5000",
            &[("x-forwarded-host", "evil.example, as.bank.example")],
        );
        assert!(u.request_url(&req).starts_with("https://as.bank.example/"));
    }
}
