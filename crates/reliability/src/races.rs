//! Races: `racers` concurrent uses of one one-time value, spread over the
//! instances, released together once every racer holds a warm connection.
//! Exactly one must win each round; the losers get the spec's error.

use std::sync::Arc;
use std::time::Instant;

use conformance::flow::{Answer, AuthzOutcome, Params, answer, get};
use tokio::sync::Barrier;

use crate::cluster::{Cluster, R};
use crate::flows::{self, DPOP};

#[derive(Default, Debug, Clone)]
pub struct Tally {
    pub name: &'static str,
    pub rounds: usize,
    pub requests: usize,
    pub one_winner: usize,
    pub secs: f64,
    pub failures: Vec<String>,
}

impl Tally {
    fn fail(&mut self, round: usize, why: String) {
        if self.failures.len() < 20 {
            self.failures.push(format!("round {round}: {why}"));
        }
    }
}

/// One racer's request: which instance, which endpoint, what it sends.
struct Shot {
    inst: usize,
    /// Sent by the instance's CIBA client (which holds a certificate)
    /// rather than pkjwt[0].
    ciba: bool,
    url: String,
    form: Params,
    dpop: Option<String>,
}

/// Fires the shots together; answers in shot order.
async fn fire(cluster: &Arc<Cluster>, shots: Vec<Shot>) -> Vec<R<Answer>> {
    let barrier = Arc::new(Barrier::new(shots.len()));
    let mut tasks = Vec::new();
    for s in shots {
        let (cl, barrier) = (cluster.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            let inst = &cl.instances[s.inst];
            let http = if s.ciba {
                &inst.ciba[0].http
            } else {
                &inst.env.pkjwt[0].http
            };
            // A connection of its own, warm, before the start.
            let _ = http
                .get(format!("{}/healthz", cl.issuer))
                .send()
                .await
                .map(|r| r.status());
            barrier.wait().await;
            let mut req = http.post(&s.url).form(&s.form);
            if let Some(p) = s.dpop {
                req = req.header("DPoP", p);
            }
            answer(req.send().await).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(
            t.await
                .unwrap_or_else(|e| Err(format!("racer panicked: {e}"))),
        );
    }
    out
}

/// Splits answers into winners (`ok`) and losers, checking each loser's
/// status and error code.
fn judge(
    t: &mut Tally,
    round: usize,
    answers: &[R<Answer>],
    ok: u16,
    lose_status: &[u16],
    lose_error: &[&str],
) -> Vec<usize> {
    let mut winners = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        match a {
            Ok(a) if a.status == ok => winners.push(i),
            Ok(a) if lose_status.contains(&a.status) && lose_error.contains(&a.error()) => {}
            Ok(a) => t.fail(round, format!("racer {i}: unexpected answer {}", a.brief())),
            Err(e) => t.fail(round, format!("racer {i}: {e}")),
        }
    }
    t.requests += answers.len();
    if winners.len() == 1 {
        t.one_winner += 1;
    } else {
        let sample = answers
            .iter()
            .find_map(|a| a.as_ref().ok().filter(|a| a.status != ok))
            .map(|a| a.brief())
            .unwrap_or_default();
        t.fail(
            round,
            format!("{} winners (a loser: {sample})", winners.len()),
        );
    }
    winners
}

/// Introspects each (kind, token, expected `active`) at `env`.
async fn expect_active(
    t: &mut Tally,
    round: usize,
    env: &conformance::flow::Env,
    tokens: &[(&str, &str, bool)],
) {
    for (kind, token, want) in tokens {
        match flows::active(env, token).await {
            Ok(a) if a == *want => {}
            Ok(a) => t.fail(
                round,
                format!("the winner's {kind} token: active = {a}, expected {want}"),
            ),
            Err(e) => t.fail(round, e),
        }
    }
}

fn spread(cluster: &Cluster, racers: usize, round: usize) -> impl Iterator<Item = usize> + '_ {
    let n = cluster.instances.len();
    (0..racers).map(move |j| (j + round) % n)
}

/// Token requests of pkjwt[0], spread over the instances: `make` gives
/// each racer's form and DPoP proof for its instance.
async fn fire_tokens(
    cluster: &Arc<Cluster>,
    racers: usize,
    round: usize,
    make: impl Fn(&conformance::flow::Env) -> (Params, String),
) -> Vec<R<Answer>> {
    let shots = spread(cluster, racers, round)
        .map(|i| {
            let env = &cluster.instances[i].env;
            let (form, dpop) = make(env);
            Shot {
                inst: i,
                ciba: false,
                url: env.ep(&env.pkjwt[0], "token_endpoint"),
                form,
                dpop: Some(dpop),
            }
        })
        .collect();
    fire(cluster, shots).await
}

/// The same authorization code: one token response; the replays are
/// `invalid_grant` and revoke what the winner got (RFC 6749 §4.1.2).
pub async fn code(cluster: &Arc<Cluster>, rounds: usize, racers: usize) -> Tally {
    let mut t = Tally {
        name: "authorization code",
        ..Tally::default()
    };
    let t0 = Instant::now();
    for r in 0..rounds {
        let home = &cluster.instances[r % cluster.instances.len()];
        let (_, verifier, code) = match flows::code_at(&home.env, home.ip).await {
            Ok(x) => x,
            Err(e) => {
                t.fail(r, format!("getting a code: {e}"));
                continue;
            }
        };
        let answers = fire_tokens(cluster, racers, r, |env| {
            let c = &env.pkjwt[0];
            let form = env.code_form(c, &code, Some(&verifier), &c.redirect_uri);
            (form, flows::token_proof(env))
        })
        .await;
        // The code is spent in the write that stores its tokens, so the
        // one request that spent it always has them (revoked since by the
        // replays): exactly one 200, every other answer `invalid_grant`.
        let w = judge(&mut t, r, &answers, 200, &[400], &["invalid_grant"]);
        t.rounds += 1;
        if let [w] = w[..]
            && let Ok(a) = &answers[w]
            && let Ok((at, rt)) = flows::token_pair(a)
        {
            let env = &cluster.instances[(r + 1) % cluster.instances.len()].env;
            expect_active(
                &mut t,
                r,
                env,
                &[("access", &at, false), ("refresh", &rt, false)],
            )
            .await;
        }
    }
    t.secs = t0.elapsed().as_secs_f64();
    t
}

/// The same refresh token (rotation on): one new pair; the others
/// `invalid_grant`, and the winner's new tokens stay valid.
pub async fn refresh(cluster: &Arc<Cluster>, rounds: usize, racers: usize) -> Tally {
    let mut t = Tally {
        name: "refresh token (rotation)",
        ..Tally::default()
    };
    let t0 = Instant::now();
    for r in 0..rounds {
        let home = &cluster.instances[r % cluster.instances.len()];
        let (_, rt) = match flows::tokens_at(&home.env, home.ip).await {
            Ok(x) => x,
            Err(e) => {
                t.fail(r, format!("getting tokens: {e}"));
                continue;
            }
        };
        let answers = fire_tokens(cluster, racers, r, |env| {
            (flows::refresh_form(env, &rt), flows::token_proof(env))
        })
        .await;
        let w = judge(&mut t, r, &answers, 200, &[400], &["invalid_grant"]);
        t.rounds += 1;
        if let [w] = w[..]
            && let Ok(a) = &answers[w]
            && let Ok((at, new_rt)) = flows::token_pair(a)
        {
            let env = &cluster.instances[(r + 1) % cluster.instances.len()].env;
            let expected = [
                ("new access", at.as_str(), true),
                ("new refresh", new_rt.as_str(), true),
                ("old refresh", rt.as_str(), false),
            ];
            expect_active(&mut t, r, env, &expected).await;
        }
    }
    t.secs = t0.elapsed().as_secs_f64();
    t
}

/// The same client assertion (`jti`, RFC 7523 §3): one token; the others
/// `invalid_client`.
pub async fn assertion(cluster: &Arc<Cluster>, rounds: usize, racers: usize) -> Tally {
    let mut t = Tally {
        name: "client assertion jti",
        ..Tally::default()
    };
    token_race(
        cluster,
        rounds,
        racers,
        &mut t,
        (&[401], "invalid_client"),
        flows::assertion,
        |env, one| (flows::client_credentials(env, one), flows::token_proof(env)),
    )
    .await;
    t
}

/// The same DPoP proof (RFC 9449 §11.1): one token; the others
/// `invalid_dpop_proof`.
pub async fn dpop(cluster: &Arc<Cluster>, rounds: usize, racers: usize) -> Tally {
    let mut t = Tally {
        name: "DPoP proof jti",
        ..Tally::default()
    };
    token_race(
        cluster,
        rounds,
        racers,
        &mut t,
        (&[400, 401], "invalid_dpop_proof"),
        flows::token_proof,
        |env, one| {
            (
                flows::client_credentials(env, &flows::assertion(env)),
                one.to_string(),
            )
        },
    )
    .await;
    t
}

/// Rounds of client-credentials requests sharing the one value `fresh`
/// makes per round; `make` gives a racer's form and DPoP proof with it.
async fn token_race(
    cluster: &Arc<Cluster>,
    rounds: usize,
    racers: usize,
    t: &mut Tally,
    (lose_status, lose_error): (&[u16], &str),
    fresh: fn(&conformance::flow::Env) -> String,
    make: impl Fn(&conformance::flow::Env, &str) -> (Params, String),
) {
    let t0 = Instant::now();
    for r in 0..rounds {
        let one = fresh(&cluster.instances[0].env);
        let answers = fire_tokens(cluster, racers, r, |env| make(env, &one)).await;
        judge(t, r, &answers, 200, lose_status, &[lose_error]);
        t.rounds += 1;
    }
    t.secs = t0.elapsed().as_secs_f64();
}

/// The same `request_uri` (RFC 9126 §4): every racer signs in and reaches
/// the consent page, then all approve together; one code comes back, the
/// others end on `invalid_request_uri` (a redirect or the error page).
pub async fn request_uri(cluster: &Arc<Cluster>, rounds: usize, racers: usize) -> Tally {
    let mut t = Tally {
        name: "PAR request_uri",
        ..Tally::default()
    };
    let t0 = Instant::now();
    for r in 0..rounds {
        let home = &cluster.instances[r % cluster.instances.len()].env;
        let c = &home.pkjwt[0];
        let (p, _) = home.auth_params(&DPOP, c);
        let uri = match home.par(&DPOP, c, &p).await {
            Ok(u) => u,
            Err(e) => {
                t.fail(r, format!("PAR: {e}"));
                continue;
            }
        };
        let barrier = Arc::new(Barrier::new(racers));
        let mut tasks = Vec::new();
        for i in spread(cluster, racers, r) {
            let (cl, barrier, uri, state) = (
                cluster.clone(),
                barrier.clone(),
                uri.clone(),
                get(&p, "state").map(str::to_string),
            );
            tasks.push(tokio::spawn(async move {
                let inst = &cl.instances[i];
                let env = &inst.env;
                let c = &env.pkjwt[0];
                let b = flows::browser(env, inst.ip);
                let consent = flows::to_consent(env, &b, c, &uri).await;
                barrier.wait().await;
                let consent = consent?;
                match flows::approve(env, &b, c, &consent).await? {
                    AuthzOutcome::Redirect(q) if q.contains_key("code") => env
                        .check_authz_success(&DPOP, &q, state.as_deref())
                        .map(|_| true),
                    AuthzOutcome::Redirect(q)
                        if q.get("error").map(String::as_str) == Some("invalid_request_uri") =>
                    {
                        Ok(false)
                    }
                    AuthzOutcome::Page(400, body) if body.contains("invalid_request_uri") => {
                        Ok(false)
                    }
                    AuthzOutcome::Redirect(q) => Err(format!("redirect {q:?}")),
                    AuthzOutcome::Page(s, body) => Err(format!(
                        "page HTTP {s}: {}",
                        conformance::modules::page_text(&body)
                            .chars()
                            .take(200)
                            .collect::<String>()
                    )),
                }
            }));
        }
        let mut winners = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            match task.await {
                Ok(Ok(true)) => winners += 1,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => t.fail(r, format!("racer {i}: {e}")),
                Err(e) => t.fail(r, format!("racer {i} panicked: {e}")),
            }
        }
        t.requests += racers;
        t.rounds += 1;
        if winners == 1 {
            t.one_winner += 1;
        } else {
            t.fail(r, format!("{winners} winners"));
        }
    }
    t.secs = t0.elapsed().as_secs_f64();
    t
}

/// The same approved CIBA `auth_req_id` (CIBA §10.1, poll mode): one token
/// response, the others `invalid_grant`; the winner's access token stays
/// active.
pub async fn ciba(cluster: &Arc<Cluster>, rounds: usize, racers: usize) -> Tally {
    let mut t = Tally {
        name: "CIBA auth_req_id",
        ..Tally::default()
    };
    let t0 = Instant::now();
    let poll = conformance::ciba::variants()[0];
    // Approved ten at a time (each waits out the polling interval once).
    let mut ready = std::collections::VecDeque::new();
    for r in 0..rounds {
        if ready.is_empty() {
            let batch: Vec<_> = (r..rounds.min(r + 10))
                .map(|k| {
                    let cl = cluster.clone();
                    tokio::spawn(async move {
                        let home = &cl.instances[k % cl.instances.len()];
                        conformance::ciba::approved(&home.env, &cl.side, &poll, &home.ciba[0]).await
                    })
                })
                .collect();
            for task in batch {
                ready.push_back(task.await.unwrap_or_else(|e| Err(e.to_string())));
            }
        }
        let p = match ready.pop_front() {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                t.fail(r, format!("an approved request: {e}"));
                continue;
            }
            None => continue,
        };
        let shots = spread(cluster, racers, r)
            .map(|i| {
                let inst = &cluster.instances[i];
                let c = &inst.ciba[0];
                Shot {
                    inst: i,
                    ciba: true,
                    url: inst.env.ep(c, "token_endpoint"),
                    form: conformance::ciba::token_form(&inst.env, c, &p.auth_req_id),
                    dpop: None,
                }
            })
            .collect();
        let answers = fire(cluster, shots).await;
        let w = judge(&mut t, r, &answers, 200, &[400], &["invalid_grant"]);
        t.rounds += 1;
        if let [w] = w[..]
            && let Ok(a) = &answers[w]
            && let Some(at) = a.json["access_token"].as_str()
        {
            let env = &cluster.instances[(r + 1) % cluster.instances.len()].env;
            expect_active(&mut t, r, env, &[("access", at, true)]).await;
        }
    }
    t.secs = t0.elapsed().as_secs_f64();
    t
}

/// The TPP organisation of the software statements.
const ORG_ID: &str = "0015800001041REAAY";

/// The same signed registration request (its `jti`, RFC 7591 §3.2.2; UK
/// Open Banking DCR) at `POST /register` over mTLS: one client registered,
/// the others `invalid_client_metadata`; one client of that software in
/// the database.
pub async fn registration(cluster: &Arc<Cluster>, rounds: usize, racers: usize) -> Tally {
    use conformance::jose::{ClientKey, now, random};
    use serde_json::json;
    let mut t = Tally {
        name: "registration request jti",
        ..Tally::default()
    };
    let t0 = Instant::now();
    let env0 = &cluster.instances[0].env;
    for r in 0..rounds {
        let software_id = format!("relsw{r}{}", random(8).replace(['-', '_'], "x"));
        let identity = cluster.pki.client_dn(&[
            (rcgen::DnType::CountryName, "GB"),
            (rcgen::DnType::OrganizationName, "OpenBanking"),
            (rcgen::DnType::OrganizationalUnitName, ORG_ID),
            (rcgen::DnType::CommonName, &software_id),
        ]);
        let key = ClientKey::generate(
            jsonwebtoken::Algorithm::ES256,
            &format!("{software_id}-sig"),
        );
        let tn = now();
        let ssa = cluster.directory.sign(
            Some("JWT"),
            &json!({
                "iss": crate::cluster::DIRECTORY_ISS, "iat": tn, "jti": random(12),
                "software_id": software_id, "software_client_name": "Reliability AISP",
                "software_client_uri": "https://tpp.example", "software_version": "1.0",
                "software_environment": "sandbox", "software_mode": "Test",
                "software_redirect_uris": [format!("https://{software_id}.example/cb")],
                "software_roles": ["AISP"], "software_jwks": {"keys": [key.jwk]},
                "org_id": ORG_ID, "org_name": "Reliability TPP Ltd", "org_status": "Active",
            }),
        );
        let request = key.sign(
            Some("JWT"),
            &json!({
                "iss": software_id, "aud": env0.issuer, "iat": tn, "exp": tn + 300, "jti": random(16),
                "redirect_uris": [format!("https://{software_id}.example/cb")],
                "token_endpoint_auth_method": "private_key_jwt",
                "token_endpoint_auth_signing_alg": "ES256",
                "grant_types": ["authorization_code", "refresh_token", "client_credentials"],
                "response_types": ["code"], "scope": "openid accounts",
                "id_token_signed_response_alg": "PS256", "application_type": "web",
                "software_statement": ssa,
            }),
        );
        let https: Vec<reqwest::Client> = cluster
            .instances
            .iter()
            .map(|i| {
                conformance::jose::https_client_at(&env0.ca_pem, Some(&identity), None, Some(i.ip))
            })
            .collect();
        let url = env0.ep(&env0.mtls[0], "registration_endpoint");
        let barrier = Arc::new(Barrier::new(racers));
        let tasks: Vec<_> = spread(cluster, racers, r)
            .map(|i| {
                let (http, barrier, url, body) = (
                    https[i].clone(),
                    barrier.clone(),
                    url.clone(),
                    request.clone(),
                );
                tokio::spawn(async move {
                    let _ = http.get(url.replace("/register", "/healthz")).send().await;
                    barrier.wait().await;
                    answer(
                        http.post(&url)
                            .header("content-type", "application/jwt")
                            .header("accept", "application/json")
                            .body(body)
                            .send()
                            .await,
                    )
                    .await
                })
            })
            .collect();
        let mut answers = Vec::new();
        for task in tasks {
            answers.push(
                task.await
                    .unwrap_or_else(|e| Err(format!("racer panicked: {e}"))),
            );
        }
        judge(
            &mut t,
            r,
            &answers,
            201,
            &[400],
            &["invalid_client_metadata"],
        );
        t.rounds += 1;
        match crate::cluster::count(
            &cluster.db_url,
            &format!("SELECT count(*) FROM clients WHERE software_id = '{software_id}'"),
        ) {
            Ok(1) => {}
            Ok(n) => t.fail(r, format!("{n} clients of the software in the database")),
            Err(e) => t.fail(r, e),
        }
    }
    t.secs = t0.elapsed().as_secs_f64();
    t
}
