//! The suite's relying party: variants, clients, the PAR → authorize →
//! token → resource flow, and the checks the OIDF suite applies to every
//! flow (oidf-modules.md §5).

use std::collections::HashMap;

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use crate::jose::{self, ClientKey, Identity, dpop_claims, dpop_proof, now, random};

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
pub const USER: &str = "conformance-user";
pub const PASSWORD: &str = "conformance-password-1";

/// A failed check, with its reason.
pub type R<T = ()> = Result<T, String>;

#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        {
            let ok: bool = $cond;
            if !ok {
                return Err(format!($($arg)+));
            }
        }
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Plan {
    /// fapi2-security-profile-final-test-plan (unsigned requests, plain response).
    Sp,
    /// fapi2-message-signing-final-test-plan (JAR at PAR, JARM).
    Ms,
    /// fapi-ciba-id1-test-plan (signed backchannel requests, MTLS-bound
    /// tokens; see ciba.rs).
    Ciba,
    /// fapi1-advanced-final-test-plan (request objects by value or pushed,
    /// the hybrid flow or JARM, MTLS-bound tokens; see fapi1.rs).
    Fapi1,
}

impl Plan {
    pub fn name(self) -> &'static str {
        match self {
            Plan::Sp => "fapi2-security-profile-final",
            Plan::Ms => "fapi2-message-signing-final",
            Plan::Ciba => "fapi-ciba-id1",
            Plan::Fapi1 => "fapi1-advanced-final",
        }
    }
}

/// One cell of the variant matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub plan: Plan,
    /// client_auth_type=mtls + sender_constrain=mtls; otherwise
    /// private_key_jwt + DPoP.
    pub mtls: bool,
    /// openid=openid_connect; otherwise plain_oauth.
    pub openid: bool,
    /// CIBA only: ciba_mode=ping; otherwise poll.
    pub ping: bool,
    /// FAPI 1.0 only: fapi_profile=openbanking_uk; otherwise plain_fapi.
    pub uk: bool,
    /// FAPI 1.0 only: fapi_auth_request_method=pushed; otherwise by_value.
    pub pushed: bool,
    /// FAPI 1.0 only: fapi_response_mode=jarm (`code` +
    /// `response_mode=jwt`); otherwise plain_response (`code id_token`).
    pub jarm_mode: bool,
}

impl Variant {
    pub fn label(&self) -> String {
        if self.plan == Plan::Fapi1 {
            return format!(
                "{}, {}, {}, {}",
                if self.mtls { "mtls" } else { "private_key_jwt" },
                if self.uk {
                    "openbanking_uk"
                } else {
                    "plain_fapi"
                },
                if self.pushed { "pushed" } else { "by_value" },
                if self.jarm_mode {
                    "jarm"
                } else {
                    "plain_response"
                }
            );
        }
        if self.plan == Plan::Ciba {
            return format!(
                "{}, {}, plain_fapi",
                if self.mtls { "mtls" } else { "private_key_jwt" },
                if self.ping { "ping" } else { "poll" }
            );
        }
        format!(
            "{}, {}{}",
            if self.mtls {
                "mtls+mtls"
            } else {
                "private_key_jwt+dpop"
            },
            if self.openid {
                "openid_connect"
            } else {
                "plain_oauth"
            },
            if self.plan == Plan::Ms {
                ", signed+jarm"
            } else {
                ""
            }
        )
    }
    /// A plain variant of `plan` (no FAPI 1.0 choices).
    pub const fn of(plan: Plan, mtls: bool, openid: bool, ping: bool) -> Variant {
        Variant {
            plan,
            mtls,
            openid,
            ping,
            uk: false,
            pushed: false,
            jarm_mode: false,
        }
    }
    /// Signed request objects: the Message Signing plan, and FAPI 1.0
    /// Advanced (§5.2.2-1), by value or pushed.
    pub fn signed(&self) -> bool {
        self.plan == Plan::Ms || self.plan == Plan::Fapi1
    }
    pub fn jarm(&self) -> bool {
        self.plan == Plan::Ms || (self.plan == Plan::Fapi1 && self.jarm_mode)
    }
    /// FAPI 1.0 `response_type=code id_token`: the response in the
    /// fragment, with an id_token that is a detached signature.
    pub fn hybrid(&self) -> bool {
        self.plan == Plan::Fapi1 && !self.jarm_mode
    }
    /// The request goes through PAR (always, except FAPI 1.0 by_value).
    pub fn par(&self) -> bool {
        self.plan != Plan::Fapi1 || self.pushed
    }
    /// DPoP-bound tokens: private_key_jwt in the FAPI 2.0 plans; FAPI-CIBA
    /// and FAPI 1.0 bind every token to the client certificate.
    pub fn dpop(&self) -> bool {
        !self.mtls && self.plan != Plan::Ciba && self.plan != Plan::Fapi1
    }
}

/// A client of the suite, registered statically at the server.
pub struct Client {
    pub id: String,
    pub key: ClientKey,
    pub dpop: ClientKey,
    pub redirect_uri: String,
    pub identity: Option<Identity>,
    pub mtls: bool,
    /// HTTPS client presenting this client's certificate (if any).
    pub http: reqwest::Client,
}

impl Client {
    pub fn generate(
        id: &str,
        mtls: bool,
        second: bool,
        pki: &jose::Pki,
    ) -> (Client, Option<Identity>) {
        let alg = if second {
            Algorithm::PS256
        } else {
            Algorithm::ES256
        };
        let key = ClientKey::generate(alg, &format!("{id}-sig"));
        let dpop = ClientKey::generate(Algorithm::ES256, &format!("{id}-dpop"));
        let redirect_uri = if second {
            format!("https://{id}.example/cb?dummy1=lorem&dummy2=ipsum")
        } else {
            format!("https://{id}.example/cb")
        };
        let identity = mtls.then(|| pki.client(id, "Conformance TPP Ltd"));
        let http = jose::https_client(&pki.ca_pem, identity.as_ref(), false);
        let dup = identity.as_ref().map(|i| Identity {
            cert_pem: i.cert_pem.clone(),
            key_pem: i.key_pem.clone(),
            subject_dn: i.subject_dn.clone(),
        });
        (
            Client {
                id: id.into(),
                key,
                dpop,
                redirect_uri,
                identity,
                mtls,
                http,
            },
            dup,
        )
    }

    /// A client that always holds a certificate from `pki` (FAPI-CIBA and
    /// FAPI 1.0 bind every access token to it); `mtls` says whether it
    /// also authenticates with it.
    pub fn generate_with_certificate(
        id: &str,
        mtls: bool,
        second: bool,
        pki: &jose::Pki,
    ) -> Client {
        let (mut c, _) = Client::generate(id, mtls, second, pki);
        if c.identity.is_none() {
            let identity = pki.client(id, "Conformance TPP Ltd");
            c.http = jose::https_client(&pki.ca_pem, Some(&identity), false);
            c.identity = Some(identity);
        }
        c
    }

    /// Static client metadata for Strongroom's [[clients]].
    pub fn metadata(&self) -> Value {
        let mut m = json!({
            "client_id": self.id,
            "client_name": format!("Conformance {}", self.id),
            "redirect_uris": [self.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
            "scope": "openid profile email accounts offline_access",
            "jwks": {"keys": [self.key.jwk]},
        });
        if self.mtls {
            m["token_endpoint_auth_method"] = json!("tls_client_auth");
            m["tls_client_auth_subject_dn"] =
                json!(self.identity.as_ref().map(|i| i.subject_dn.clone()));
            m["tls_client_certificate_bound_access_tokens"] = json!(true);
        } else {
            m["token_endpoint_auth_method"] = json!("private_key_jwt");
            m["token_endpoint_auth_signing_alg"] = json!(match self.key.alg {
                Algorithm::ES256 => "ES256",
                _ => "PS256",
            });
            m["dpop_bound_access_tokens"] = json!(true);
        }
        m
    }

    pub fn assertion_claims(&self, aud: Value) -> Value {
        let t = now();
        json!({"iss": self.id, "sub": self.id, "aud": aud, "iat": t, "exp": t + 60, "jti": random(16)})
    }

    /// Client authentication fields for a back-channel request.
    pub fn auth_fields(&self, issuer: &str) -> Vec<(String, String)> {
        let mut f = vec![("client_id".to_string(), self.id.clone())];
        if !self.mtls {
            f.push(("client_assertion_type".into(), ASSERTION_TYPE.into()));
            f.push((
                "client_assertion".into(),
                self.key.sign(None, &self.assertion_claims(json!(issuer))),
            ));
        }
        f
    }
}

pub type Params = Vec<(String, String)>;

pub fn get<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

pub fn set(p: &mut Params, k: &str, v: Option<&str>) {
    p.retain(|(n, _)| n != k);
    if let Some(v) = v {
        p.push((k.into(), v.into()));
    }
}

/// An HTTP answer: status, JSON (or the text as a JSON string), headers.
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
    pub fn text(&self) -> String {
        match &self.json {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        }
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    pub fn brief(&self) -> String {
        let t = self.text();
        format!(
            "HTTP {} {}",
            self.status,
            t.chars().take(300).collect::<String>()
        )
    }
}

pub async fn answer(res: Result<reqwest::Response, reqwest::Error>) -> R<Answer> {
    let res = res.map_err(|e| format!("HTTP request failed: {e}"))?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.map_err(|e| format!("reading body: {e}"))?;
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer {
        status,
        json,
        headers,
    })
}

/// What came back to the client's redirect URI, or the page the AS showed.
pub enum AuthzOutcome {
    /// Parameters of the redirect (JARM already verified and unpacked).
    Redirect(HashMap<String, String>),
    /// An error page at the authorization server (status, text).
    Page(u16, String),
}

/// A server under test, as the suite sees it after discovery.
pub struct Env {
    pub issuer: String,
    pub ca_pem: String,
    pub discovery: Value,
    pub jwks: Value,
    /// A plain HTTPS client (no certificate).
    pub http: reqwest::Client,
    pub pkjwt: [Client; 2],
    pub mtls: [Client; 2],
    /// A FAPI 1.0 deployment: authorization responses may come in the
    /// fragment (the hybrid flow), and client assertions at the token
    /// endpoint name the token endpoint URL as `aud`, as the OIDF FAPI 1.0
    /// plan sends them.
    pub fapi1: bool,
}

/// The pseudo-parameter [`Env::redirect_params`] adds when the response
/// parameters came in the fragment.
pub const IN_FRAGMENT: &str = "#fragment";

pub struct Flow {
    pub params: Params,
    pub token: Answer,
    pub access_token: String,
}

impl Env {
    pub fn clients(&self, v: &Variant) -> (&Client, &Client) {
        let pair = if v.mtls { &self.mtls } else { &self.pkjwt };
        (&pair[0], &pair[1])
    }

    /// An endpoint from discovery; clients holding a certificate (mTLS
    /// authentication, or certificate-bound tokens) use the RFC 8705 aliases.
    pub fn ep(&self, c: &Client, name: &str) -> String {
        if (c.mtls || c.identity.is_some())
            && let Some(u) = self.discovery["mtls_endpoint_aliases"][name].as_str()
        {
            return u.to_string();
        }
        self.discovery[name]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn scope(&self, v: &Variant) -> &'static str {
        if v.openid {
            "openid accounts offline_access"
        } else {
            "accounts offline_access"
        }
    }

    /// Client authentication for a request to the endpoint named `endpoint`
    /// in discovery: the assertion's `aud` is the issuer, except at the
    /// token endpoint of a FAPI 1.0 deployment (the token endpoint URL,
    /// OIDC Core §9, as the OIDF FAPI 1.0 plan sends it).
    pub fn auth_fields(&self, c: &Client, endpoint: &str) -> Params {
        if self.fapi1 && endpoint == "token_endpoint" {
            let aud = self.discovery["token_endpoint"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            return c.auth_fields(&aud);
        }
        c.auth_fields(&self.issuer)
    }

    /// A typical authorization request (without client_id) and its PKCE verifier.
    pub fn auth_params(&self, v: &Variant, c: &Client) -> (Params, String) {
        let verifier = random(32);
        let mut p: Params = vec![
            (
                "response_type".into(),
                if v.hybrid() { "code id_token" } else { "code" }.into(),
            ),
            ("redirect_uri".into(), c.redirect_uri.clone()),
            ("scope".into(), self.scope(v).into()),
            ("state".into(), random(12)),
        ];
        // FAPI 1.0 Advanced §5.2.2-18: PKCE with PAR; the OIDF plan sends
        // none by value (ensure-valid-pkce-succeeds adds it).
        if v.par() {
            p.push((
                "code_challenge".into(),
                jose::sha256_b64(verifier.as_bytes()),
            ));
            p.push(("code_challenge_method".into(), "S256".into()));
        }
        if v.openid {
            p.push(("nonce".into(), random(12)));
        }
        if v.jarm() {
            p.push(("response_mode".into(), "jwt".into()));
        }
        (p, verifier)
    }

    /// Request-object claims carrying `params` (JAR, RFC 9101 + FAPI 2.0 MS).
    pub fn request_object_claims(&self, c: &Client, params: &Params) -> Value {
        let t = now();
        let mut claims = json!({
            "iss": c.id, "aud": self.issuer, "client_id": c.id,
            "iat": t, "nbf": t, "exp": t + 300, "jti": random(16),
        });
        for (k, v) in params {
            // RFC 9101 §4: `claims` is a JSON object inside the object.
            claims[k.as_str()] = match (k.as_str(), serde_json::from_str::<Value>(v)) {
                ("claims", Ok(o)) if o.is_object() => o,
                _ => json!(v),
            };
        }
        claims
    }

    /// The PAR form: signed request object (MS) or plain parameters (SP),
    /// plus client authentication.
    pub fn par_form(&self, v: &Variant, c: &Client, params: &Params) -> Params {
        let mut form = if v.signed() {
            let claims = self.request_object_claims(c, params);
            vec![(
                "request".into(),
                c.key.sign(Some("oauth-authz-req+jwt"), &claims),
            )]
        } else {
            params.clone()
        };
        form.extend(self.auth_fields(c, "pushed_authorization_request_endpoint"));
        form
    }

    pub fn par_dpop(&self, v: &Variant, c: &Client) -> Option<String> {
        v.dpop().then(|| {
            dpop_proof(
                &c.dpop,
                &dpop_claims(
                    "POST",
                    &self.ep(c, "pushed_authorization_request_endpoint"),
                    None,
                ),
            )
        })
    }

    pub async fn post(
        &self,
        c: &Client,
        url: &str,
        form: &Params,
        dpop: Option<String>,
    ) -> R<Answer> {
        let mut req = c.http.post(url).form(form);
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        answer(req.send().await).await
    }

    pub async fn par_raw(&self, c: &Client, form: &Params, dpop: Option<String>) -> R<Answer> {
        self.post(
            c,
            &self.ep(c, "pushed_authorization_request_endpoint"),
            form,
            dpop,
        )
        .await
    }

    /// PAR, checked as §5.3 requires; returns request_uri.
    pub async fn par(&self, v: &Variant, c: &Client, params: &Params) -> R<String> {
        let a = self
            .par_raw(c, &self.par_form(v, c, params), self.par_dpop(v, c))
            .await?;
        self.check_par(&a)
    }

    pub fn check_par(&self, a: &Answer) -> R<String> {
        ensure!(a.status == 201, "PAR must answer 201: {}", a.brief());
        let uri = a.json["request_uri"]
            .as_str()
            .ok_or(format!("PAR response without request_uri: {}", a.brief()))?;
        let random_part = uri
            .strip_prefix("urn:ietf:params:oauth:request_uri:")
            .unwrap_or(uri);
        let bits = jose::entropy_bits(random_part);
        ensure!(
            bits >= 96.0,
            "request_uri has only {bits:.0} bits of entropy"
        );
        let exp = a.json["expires_in"]
            .as_i64()
            .ok_or("PAR response without numeric expires_in")?;
        ensure!(
            (5..31_536_000).contains(&exp),
            "PAR expires_in {exp} outside [5 s, 1 year)"
        );
        Ok(uri.to_string())
    }

    /// Drives the authorization endpoint and the login/consent pages as a
    /// browser would. `extra` is appended to the authorization URL.
    pub async fn authorize(
        &self,
        c: &Client,
        request_uri: &str,
        extra: &Params,
        approve: bool,
    ) -> R<AuthzOutcome> {
        let browser = jose::https_client(&self.ca_pem, None, true);
        let mut url = url::Url::parse(
            self.discovery["authorization_endpoint"]
                .as_str()
                .unwrap_or_default(),
        )
        .map_err(|e| format!("authorization_endpoint: {e}"))?;
        url.query_pairs_mut()
            .append_pair("client_id", &c.id)
            .append_pair("request_uri", request_uri);
        for (k, v) in extra {
            url.query_pairs_mut().append_pair(k, v);
        }
        self.browse(&browser, c, url.as_str(), approve).await
    }

    pub async fn browse(
        &self,
        browser: &reqwest::Client,
        c: &Client,
        url: &str,
        approve: bool,
    ) -> R<AuthzOutcome> {
        let base = url::Url::parse(&self.issuer).map_err(|e| e.to_string())?;
        let mut res = browser.get(url).send().await.map_err(|e| e.to_string())?;
        let mut steps = 0;
        loop {
            steps += 1;
            // Through the bank's apps (consent bridge) a flow takes up to
            // eight hops: authorize, login, bank login, return, consent,
            // bank consent, return, client.
            ensure!(steps < 12, "too many redirects in the browser flow");
            let status = res.status().as_u16();
            if !(300..400).contains(&status) {
                let body = res.text().await.unwrap_or_default();
                if status == 200 && body.contains("name=\"username\"") {
                    return Err("a login form outside the expected flow".into());
                }
                return Ok(AuthzOutcome::Page(status, body));
            }
            let loc = res
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .ok_or("redirect without Location")?
                .to_string();
            let next = base.join(&loc).map_err(|e| e.to_string())?;
            if next.as_str().starts_with(
                &c.redirect_uri
                    .split('?')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ) && next.host_str() != base.host_str()
            {
                return self
                    .redirect_params(c, next.as_str())
                    .map(AuthzOutcome::Redirect);
            }
            if next.path().ends_with("/login") {
                let page = browser
                    .get(next.as_str())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if page.status().is_redirection() {
                    // The login happens elsewhere (the bank's login app).
                    res = page;
                    continue;
                }
                ensure!(page.status() == 200, "login page: HTTP {}", page.status());
                let html = page.text().await.unwrap_or_default();
                ensure!(
                    html.contains("name=\"username\"") && html.contains("name=\"password\""),
                    "login page has no username/password form"
                );
                res = browser
                    .post(next.as_str())
                    .form(&[
                        ("username", USER),
                        ("password", PASSWORD),
                        ("action", "login"),
                    ])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
            } else if next.path().ends_with("/consent") {
                let page = browser
                    .get(next.as_str())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if page.status().is_redirection() {
                    // The bank's consent app.
                    res = page;
                    continue;
                }
                ensure!(page.status() == 200, "consent page: HTTP {}", page.status());
                let html = page.text().await.unwrap_or_default();
                ensure!(
                    html.contains("value=\"approve\""),
                    "consent page has no approve button"
                );
                res = browser
                    .post(next.as_str())
                    .form(&[("action", if approve { "approve" } else { "deny" })])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
            } else {
                res = browser
                    .get(next.as_str())
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }

    /// The parameters of the redirect back to the client: the query must
    /// carry them (never the fragment; on a FAPI 1.0 deployment the
    /// fragment may, marked with [`IN_FRAGMENT`], and the variant's checks
    /// decide); the client's own query is kept (happy-flow's
    /// dummy1/dummy2) and a JARM `response` is verified.
    pub fn redirect_params(&self, c: &Client, url: &str) -> R<HashMap<String, String>> {
        let u = url::Url::parse(url).map_err(|e| format!("redirect URL: {e}"))?;
        let in_fragment = u.fragment().is_some_and(|f| {
            url::form_urlencoded::parse(f.as_bytes()).any(|(k, _)| {
                ["code", "state", "error", "id_token", "response"].contains(&k.as_ref())
            })
        });
        ensure!(
            self.fapi1 || !in_fragment,
            "authorization response parameters in the fragment: {url}"
        );
        let registered = url::Url::parse(&c.redirect_uri).map_err(|e| e.to_string())?;
        for (k, v) in registered.query_pairs() {
            ensure!(
                u.query_pairs().any(|(k2, v2)| k2 == k && v2 == v),
                "the redirect lost the registered query parameter {k}={v}: {url}"
            );
        }
        let mut q: HashMap<String, String> = u.query_pairs().into_owned().collect();
        for (k, _) in registered.query_pairs() {
            q.remove(k.as_ref());
        }
        if in_fragment {
            ensure!(
                q.is_empty(),
                "response parameters both in the query and in the fragment: {url}"
            );
            q = url::form_urlencoded::parse(u.fragment().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
            if q.contains_key("response") {
                return Err(format!(
                    "a JARM response in the fragment (response_mode=jwt with code is query.jwt): {url}"
                ));
            }
            q.insert(IN_FRAGMENT.into(), "1".into());
            return Ok(q);
        }
        if let Some(jwt) = q.get("response").cloned() {
            let claims = jose::verify_server_jws(&jwt, &self.jwks)?;
            ensure!(
                claims["iss"] == json!(self.issuer),
                "JARM iss {} ≠ issuer",
                claims["iss"]
            );
            let aud_ok = claims["aud"] == json!(c.id)
                || claims["aud"]
                    .as_array()
                    .is_some_and(|a| a.contains(&json!(c.id)));
            ensure!(aud_ok, "JARM aud {} ≠ client_id", claims["aud"]);
            let exp = claims["exp"].as_i64().ok_or("JARM without exp")?;
            ensure!(exp > now(), "JARM response already expired");
            ensure!(
                exp <= now() + 600 + 5,
                "JARM exp more than 10 minutes ahead"
            );
            // The raw JWT is kept under `response` to show JARM was used.
            let mut out = HashMap::from([("response".to_string(), jwt.clone())]);
            if let Some(o) = claims.as_object() {
                // aud/exp/iat are the JWT's own claims, not response parameters.
                for (k, v) in o
                    .iter()
                    .filter(|(k, _)| !["aud", "exp", "iat"].contains(&k.as_str()))
                {
                    if let Some(s) = v.as_str() {
                        out.insert(k.clone(), s.to_string());
                    }
                }
            }
            return Ok(out);
        }
        Ok(q)
    }

    /// §5.4 on a successful authorization response; returns the code.
    pub fn check_authz_success(
        &self,
        v: &Variant,
        q: &HashMap<String, String>,
        state: Option<&str>,
    ) -> R<String> {
        ensure!(!q.contains_key("error"), "authorization error: {q:?}");
        ensure!(
            q.contains_key(IN_FRAGMENT) == v.hybrid(),
            "{}: {q:?}",
            if v.hybrid() {
                "response_type=code id_token must answer in the fragment (OAuth 2.0 Multiple Response Types §5)"
            } else {
                "the authorization response must not be in the fragment"
            }
        );
        if v.jarm() {
            // Verified in redirect_params (signature, iss, aud, exp).
            ensure!(
                q.contains_key("response"),
                "response_mode=jwt was requested but the response is not JARM: {q:?}"
            );
        }
        {
            ensure!(
                q.get("iss").map(String::as_str) == Some(self.issuer.as_str()),
                "iss in the authorization response must equal the issuer: {q:?}"
            );
        }
        ensure!(
            q.get("state").map(String::as_str) == state,
            "state must be returned exactly (expected {state:?}): {q:?}"
        );
        ensure!(!q.contains_key("s_hash"), "s_hash must not appear: {q:?}");
        let code = q.get("code").ok_or(format!("no code: {q:?}"))?;
        ensure!(code.len() >= 22, "code shorter than 128 bits");
        ensure!(jose::entropy_bits(code) >= 96.0, "code entropy < 96 bits");
        Ok(code.clone())
    }

    /// §5.9: an authorization error redirect.
    pub fn check_authz_error(
        &self,
        q: &HashMap<String, String>,
        state: Option<&str>,
        expected: &[&str],
    ) -> R {
        let e = q
            .get("error")
            .ok_or(format!("expected an error redirect, got {q:?}"))?;
        ensure!(
            expected.contains(&e.as_str()),
            "error {e}, expected one of {expected:?}"
        );
        ensure!(
            q.get("state").map(String::as_str) == state,
            "error redirect state mismatch: {q:?}"
        );
        for k in q
            .keys()
            .filter(|k| k.as_str() != "response" && k.as_str() != IN_FRAGMENT)
        {
            ensure!(
                [
                    "error",
                    "error_description",
                    "error_uri",
                    "state",
                    "session_state",
                    "iss"
                ]
                .contains(&k.as_str()),
                "unexpected parameter {k} in an error redirect"
            );
        }
        Ok(())
    }

    pub fn token_dpop(&self, c: &Client, key: &ClientKey) -> String {
        dpop_proof(
            key,
            &dpop_claims("POST", &self.ep(c, "token_endpoint"), None),
        )
    }

    pub fn code_form(
        &self,
        c: &Client,
        code: &str,
        verifier: Option<&str>,
        redirect_uri: &str,
    ) -> Params {
        let mut f: Params = vec![
            ("grant_type".into(), "authorization_code".into()),
            ("code".into(), code.into()),
            ("redirect_uri".into(), redirect_uri.into()),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier".into(), v.into()));
        }
        f.extend(self.auth_fields(c, "token_endpoint"));
        f
    }

    pub async fn token_raw(&self, c: &Client, form: &Params, dpop: Option<String>) -> R<Answer> {
        self.post(c, &self.ep(c, "token_endpoint"), form, dpop)
            .await
    }

    /// Redeems a code the usual way.
    pub async fn redeem(&self, v: &Variant, c: &Client, code: &str, verifier: &str) -> R<Answer> {
        let dpop = v.dpop().then(|| self.token_dpop(c, &c.dpop));
        self.token_raw(
            c,
            &self.code_form(c, code, Some(verifier), &c.redirect_uri),
            dpop,
        )
        .await
    }

    /// §5.5 + §5.6 on a token response; returns the access token.
    pub fn check_token(
        &self,
        v: &Variant,
        c: &Client,
        a: &Answer,
        nonce: Option<&str>,
        expect_id_token: bool,
    ) -> R<String> {
        ensure!(a.status == 200, "token endpoint: {}", a.brief());
        let ct = a.header("content-type").unwrap_or_default();
        ensure!(
            ct.starts_with("application/json"),
            "token response content-type {ct}"
        );
        let cc = a.header("cache-control").unwrap_or_default();
        ensure!(
            cc.contains("no-store"),
            "token response without Cache-Control: no-store"
        );
        let at = a.json["access_token"].as_str().ok_or("no access_token")?;
        ensure!(
            at.len() >= 22 && jose::entropy_bits(at) >= 96.0,
            "access_token too short / low entropy"
        );
        ensure!(jose::is_vschar(at), "access_token outside VSCHAR");
        let tt = a.json["token_type"].as_str().unwrap_or_default();
        let want = if v.dpop() { "DPoP" } else { "Bearer" };
        ensure!(
            tt.eq_ignore_ascii_case(want),
            "token_type {tt}, expected {want}"
        );
        let exp = a.json["expires_in"]
            .as_i64()
            .ok_or("expires_in missing or not a number")?;
        ensure!(exp > 0 && exp < 31_536_000, "expires_in {exp} out of range");
        if let Some(rt) = a.json.get("refresh_token") {
            let rt = rt.as_str().ok_or("refresh_token not a string")?;
            ensure!(
                rt.len() >= 22 && jose::entropy_bits(rt) >= 96.0,
                "refresh_token too short / low entropy"
            );
            ensure!(jose::is_vschar(rt), "refresh_token outside VSCHAR");
        }
        match (expect_id_token, a.json.get("id_token")) {
            (true, Some(idt)) => {
                self.check_id_token(
                    c,
                    idt.as_str().ok_or("id_token not a string")?,
                    nonce,
                    Some(at),
                )?;
            }
            (true, None) => return Err("openid flow without an id_token".into()),
            (false, Some(_)) => return Err("id_token issued without the openid scope".into()),
            (false, None) => {}
        }
        Ok(at.to_string())
    }

    /// §5.6.
    pub fn check_id_token(
        &self,
        c: &Client,
        jwt: &str,
        nonce: Option<&str>,
        access_token: Option<&str>,
    ) -> R<Value> {
        let claims = jose::verify_server_jws(jwt, &self.jwks)?;
        let t = now();
        ensure!(
            claims["iss"] == json!(self.issuer),
            "id_token iss {}",
            claims["iss"]
        );
        let aud_ok = claims["aud"] == json!(c.id)
            || claims["aud"]
                .as_array()
                .is_some_and(|a| a.contains(&json!(c.id)));
        ensure!(aud_ok, "id_token aud {} lacks the client_id", claims["aud"]);
        let exp = claims["exp"].as_i64().ok_or("id_token without exp")?;
        ensure!(
            exp > t && exp < t + 10 * 365 * 86400,
            "id_token exp {exp} not in the future (or in ms)"
        );
        let iat = claims["iat"].as_i64().ok_or("id_token without iat")?;
        ensure!(
            iat <= t + 5 && iat > t - 300,
            "id_token iat {iat} in the future or > 5 min old"
        );
        if let Some(at) = claims.get("auth_time") {
            let at = at.as_i64().ok_or("auth_time not a number")?;
            ensure!(
                at <= t + 5 && at > t - 365 * 86400,
                "auth_time {at} out of range"
            );
        }
        if let Some(acr) = claims.get("acr") {
            ensure!(acr.as_str().is_some_and(|s| !s.is_empty()), "acr empty");
        }
        ensure!(
            claims["sub"].as_str().is_some_and(|s| !s.is_empty()),
            "id_token without sub"
        );
        match nonce {
            Some(n) => ensure!(
                claims["nonce"] == json!(n),
                "id_token nonce {} ≠ {n}",
                claims["nonce"]
            ),
            None => ensure!(
                claims.get("nonce").is_none(),
                "id_token carries a nonce though none was sent"
            ),
        }
        if let (Some(h), Some(at)) = (claims.get("at_hash"), access_token) {
            let alg = jsonwebtoken::decode_header(jwt)
                .map_err(|e| e.to_string())?
                .alg;
            let digest = if alg == Algorithm::EdDSA {
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, at.as_bytes())
            } else {
                aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, at.as_bytes())
            };
            let half = &digest.as_ref()[..digest.as_ref().len() / 2];
            ensure!(
                h == &json!(jose::b64(half)),
                "at_hash does not match the access token"
            );
        }
        for k in ["c_hash", "s_hash"] {
            ensure!(
                claims.get(k).is_none_or(|v| v.is_string()),
                "{k} not a string"
            );
        }
        Ok(claims)
    }

    /// A resource request: the userinfo endpoint (the plan's resourceUrl).
    pub async fn resource_raw(
        &self,
        c: &Client,
        scheme: &str,
        at: &str,
        dpop: Option<String>,
        extra: &[(&str, &str)],
    ) -> R<Answer> {
        let url = self.ep(c, "userinfo_endpoint");
        let mut req = c
            .http
            .get(&url)
            .header("Authorization", format!("{scheme} {at}"));
        if let Some(p) = dpop {
            req = req.header("DPoP", p);
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        answer(req.send().await).await
    }

    pub fn resource_dpop(&self, c: &Client, key: &ClientKey, at: &str) -> String {
        dpop_proof(
            key,
            &dpop_claims("GET", &self.ep(c, "userinfo_endpoint"), Some(at)),
        )
    }

    /// §5.7. For plain_oauth the userinfo endpoint answers 403
    /// insufficient_scope once the token and its binding are accepted, so
    /// that counts as "the token works" there.
    pub async fn check_resource(&self, v: &Variant, c: &Client, at: &str) -> R {
        let scheme = if v.dpop() { "DPoP" } else { "Bearer" };
        let interaction = "c0a8f5ad-7d1b-4c4e-9c1e-2f5b0d8a9e11";
        let dpop = v.dpop().then(|| self.resource_dpop(c, &c.dpop, at));
        let a = self
            .resource_raw(
                c,
                scheme,
                at,
                dpop,
                &[
                    ("x-fapi-auth-date", "Tue, 11 Sep 2012 19:43:31 GMT"),
                    ("x-fapi-customer-ip-address", "198.51.100.119"),
                    ("x-fapi-interaction-id", interaction),
                ],
            )
            .await?;
        self.resource_ok(v, &a)?;
        let date = a
            .header("date")
            .ok_or("resource response without a Date header")?;
        let when = httpdate::parse_http_date(&date)
            .map_err(|_| format!("Date header {date} is not RFC 1123"))?;
        let skew = when
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| (d.as_secs() as i64 - now()).abs())
            .unwrap_or(i64::MAX);
        ensure!(skew <= 300, "Date header {date} is {skew} s off");
        // FAPI 1.0 Advanced §6.2.1-11: the resource server shall echo it.
        ensure!(
            v.plan != Plan::Fapi1 || a.header("x-fapi-interaction-id").is_some(),
            "the resource response does not echo x-fapi-interaction-id (FAPI 1.0 Advanced §6.2.1-11)"
        );
        if let Some(echo) = a.header("x-fapi-interaction-id") {
            ensure!(
                echo == interaction,
                "x-fapi-interaction-id not echoed: {echo}"
            );
        }
        // IPv6 customer address.
        let dpop = v.dpop().then(|| self.resource_dpop(c, &c.dpop, at));
        let a = self
            .resource_raw(
                c,
                scheme,
                at,
                dpop,
                &[("x-fapi-customer-ip-address", "2001:db8::1")],
            )
            .await?;
        self.resource_ok(v, &a)?;
        // The access token in the query string must be refused.
        let url = format!("{}?access_token={}", self.ep(c, "userinfo_endpoint"), at);
        let mut req = c.http.get(&url);
        if v.dpop() {
            req = req.header(
                "DPoP",
                dpop_proof(
                    &c.dpop,
                    &dpop_claims("GET", &self.ep(c, "userinfo_endpoint"), Some(at)),
                ),
            );
        }
        let a = answer(req.send().await).await?;
        ensure!(
            a.status >= 400,
            "access token in the query string was accepted: {}",
            a.brief()
        );
        Ok(())
    }

    pub fn resource_ok(&self, v: &Variant, a: &Answer) -> R {
        if v.openid {
            ensure!(
                a.status == 200 || a.status == 201,
                "resource call refused: {}",
                a.brief()
            );
            let ct = a.header("content-type").unwrap_or_default();
            ensure!(
                ct.contains("json") || ct.contains("jwt"),
                "resource content-type {ct}"
            );
        } else {
            let www = a.header("www-authenticate").unwrap_or_default();
            ensure!(
                a.status == 200 || (a.status == 403 && www.contains("insufficient_scope")),
                "resource call refused the token itself: {} {www}",
                a.brief()
            );
        }
        Ok(())
    }

    /// The whole flow with `params` (built by the caller): PAR,
    /// authorization, token, resource — with every §5 check.
    pub async fn flow_with(
        &self,
        v: &Variant,
        c: &Client,
        params: Params,
        verifier: String,
    ) -> R<Flow> {
        let uri = self.par(v, c, &params).await?;
        let q = match self.authorize(c, &uri, &vec![], true).await? {
            AuthzOutcome::Redirect(q) => q,
            AuthzOutcome::Page(s, body) => {
                return Err(format!(
                    "authorization ended on a page: HTTP {s} {}",
                    crate::modules::page_text(&body)
                ));
            }
        };
        let code = self.check_authz_success(v, &q, get(&params, "state"))?;
        let token = self.redeem(v, c, &code, &verifier).await?;
        let at = self.check_token(v, c, &token, get(&params, "nonce"), v.openid)?;
        self.check_resource(v, c, &at).await?;
        Ok(Flow {
            params,
            token,
            access_token: at,
        })
    }

    pub async fn flow(&self, v: &Variant, c: &Client) -> R<Flow> {
        let (p, verifier) = self.auth_params(v, c);
        self.flow_with(v, c, p, verifier).await
    }

    /// Up to the code (PAR + authorization), without redeeming it.
    pub async fn code(&self, v: &Variant, c: &Client) -> R<(Params, String, String)> {
        let (p, verifier) = self.auth_params(v, c);
        let uri = self.par(v, c, &p).await?;
        let q = match self.authorize(c, &uri, &vec![], true).await? {
            AuthzOutcome::Redirect(q) => q,
            AuthzOutcome::Page(s, _) => {
                return Err(format!("authorization ended on a page: HTTP {s}"));
            }
        };
        let code = self.check_authz_success(v, &q, get(&p, "state"))?;
        Ok((p, verifier, code))
    }
}

/// §5.9 on a token-endpoint (or PAR) error: status 400 (401 only for
/// invalid_client), JSON, charset, and one of the `expected` codes.
pub fn check_error(a: &Answer, expected: &[&str]) -> R {
    ensure!(
        a.status != 200 && a.status != 201,
        "the request was ACCEPTED (expected {expected:?}): {}",
        a.brief()
    );
    let e = a.error();
    ensure!(
        expected.contains(&e),
        "error {:?} (expected one of {expected:?}): {}",
        e,
        a.brief()
    );
    ensure!(
        a.status == 400 || (a.status == 401 && e == "invalid_client"),
        "HTTP {} for {e} (400, or 401 for invalid_client)",
        a.status
    );
    ensure!(
        jose::is_error_charset(e),
        "error code outside the RFC 6749 charset"
    );
    if let Some(d) = a.json["error_description"].as_str() {
        ensure!(
            jose::is_error_charset(d),
            "error_description outside the RFC 6749 charset: {d:?}"
        );
    }
    Ok(())
}
