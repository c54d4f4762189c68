//! The subject a client sees (OpenID Connect Core §8; OIDC Registration §2
//! `subject_type` and `sector_identifier_uri`).
//!
//! The bank names its customer once, at login (the grant's `sub`): that is
//! the *local* subject, and the bank's side (its hooks, `/bank/grants`,
//! CIBA hints, sessions, the stored records) only ever sees it. What a
//! client is shown as `sub` — in every id_token, at userinfo, in
//! introspection and JWT access tokens — is computed from it by
//! [`client_subject`], one of:
//!
//! - `customer`: the local subject itself (OIDC `public`, §8);
//! - `pairwise`: a hash of the client's sector identifier, the local
//!   subject and a deployment secret (OIDC `pairwise`, §8.1), so that two
//!   clients of different sectors cannot correlate the customer;
//! - `consent`: the bank's consent (intent) id of the grant, which UK TPPs
//!   such as Open Banking Connector expect by default. Not an OIDC subject
//!   type: the same customer has a new `sub` with every consent.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::client::{Client, ClientMetadata};
use crate::error::{ErrorCode, OAuthError};
use crate::jwks_resolver::JwksFetcher;
use crate::policy::{Policy, Profile};

/// OIDC Core §8 / OIDC Discovery `subject_types_supported`: what discovery
/// advertises, exactly the `subject_type` values clients may register.
pub const SUBJECT_TYPES: [&str; 2] = ["public", "pairwise"];

/// Which identifier a client is shown as `sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectKind {
    /// The customer's id from the bank's login (OIDC `public`).
    Customer,
    /// OIDC Core §8.1 pairwise identifier.
    Pairwise,
    /// The grant's consent (intent) id.
    Consent,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Customer => "customer",
            SubjectKind::Pairwise => "pairwise",
            SubjectKind::Consent => "consent",
        }
    }

    /// The OIDC `subject_type` it is, if any (`consent` is none).
    pub fn subject_type(self) -> Option<&'static str> {
        match self {
            SubjectKind::Customer => Some("public"),
            SubjectKind::Pairwise => Some("pairwise"),
            SubjectKind::Consent => None,
        }
    }

    fn from_subject_type(t: &str) -> Option<SubjectKind> {
        match t {
            "public" => Some(SubjectKind::Customer),
            "pairwise" => Some(SubjectKind::Pairwise),
            _ => None,
        }
    }
}

/// The deployment secret of pairwise identifiers (OIDC Core §8.1 "salt"):
/// derived from the key-encryption key, so every instance sharing the
/// database (and so the key) computes the same identifiers, across
/// restarts. Never printed.
#[derive(Clone)]
pub struct PairwiseSalt(Arc<Zeroizing<Vec<u8>>>);

impl PairwiseSalt {
    pub fn new(secret: &[u8]) -> PairwiseSalt {
        PairwiseSalt(Arc::new(Zeroizing::new(secret.to_vec())))
    }
}

impl fmt::Debug for PairwiseSalt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairwiseSalt(<redacted>)")
    }
}

/// The deployment's subject settings (`[subject]`).
#[derive(Debug, Clone, Default)]
pub struct SubjectPolicy {
    /// For clients that choose nothing themselves and whose profile has no
    /// default of its own; `customer` when unset.
    pub default: Option<SubjectKind>,
    /// Per profile (the client's own `fapi_profile` or the deployment's).
    pub profiles: Vec<(Profile, SubjectKind)>,
    /// The pairwise salt; without it no pairwise identifier is issued.
    pub salt: Option<PairwiseSalt>,
}

impl ClientMetadata {
    /// The subject the client chose itself: Strongroom's `subject`, else
    /// OIDC's `subject_type` (`public` is the customer's id).
    pub fn own_subject_kind(&self) -> Option<SubjectKind> {
        self.subject.or_else(|| {
            self.subject_type
                .as_deref()
                .and_then(SubjectKind::from_subject_type)
        })
    }

    /// OIDC Registration §2 `subject_type` and `sector_identifier_uri`,
    /// and Strongroom's `subject`, for [`ClientMetadata::validate`]: a
    /// known `subject_type`, not contradicting `subject`; an https
    /// `sector_identifier_uri`; and a sector for a pairwise client (OIDC
    /// Core §8.1: redirect URIs on more than one host, or none, need a
    /// `sector_identifier_uri`).
    pub(crate) fn validate_subject(&self) -> Result<(), OAuthError> {
        let bad = |d: String| OAuthError::new(ErrorCode::InvalidClientMetadata, d);
        if let Some(t) = &self.subject_type {
            let Some(kind) = SubjectKind::from_subject_type(t) else {
                return Err(bad(format!(
                    "subject_type {t} is not supported (public or pairwise)"
                )));
            };
            if let Some(s) = self.subject
                && s != kind
            {
                return Err(bad(match s.subject_type() {
                    Some(st) => format!("subject {} is subject_type {st}, not {t}", s.as_str()),
                    None => format!(
                        "subject {} is not an OIDC subject_type: leave subject_type out",
                        s.as_str()
                    ),
                }));
            }
        }
        if let Some(uri) = &self.sector_identifier_uri {
            let u = url::Url::parse(uri)
                .map_err(|_| bad("sector_identifier_uri is not a URL".into()))?;
            if u.scheme() != "https" || u.host_str().is_none() {
                return Err(bad(
                    "sector_identifier_uri must be an https URL (OIDC Registration §2)".into(),
                ));
            }
        }
        if self.own_subject_kind() == Some(SubjectKind::Pairwise) {
            sector_identifier(self)?;
        }
        Ok(())
    }
}

/// OIDC Core §8.1: the host of the `sector_identifier_uri`, else the one
/// host of the redirect URIs.
pub fn sector_identifier(m: &ClientMetadata) -> Result<String, OAuthError> {
    let host = |uri: &str| {
        url::Url::parse(uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
    };
    if let Some(uri) = &m.sector_identifier_uri {
        return host(uri).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::InvalidClientMetadata,
                "sector_identifier_uri has no host",
            )
        });
    }
    let mut hosts: Vec<String> = m.redirect_uris.iter().filter_map(|u| host(u)).collect();
    hosts.sort();
    hosts.dedup();
    match hosts.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "a pairwise client without redirect_uris needs a sector_identifier_uri (OIDC Core §8.1)",
        )),
        _ => Err(OAuthError::new(
            ErrorCode::InvalidClientMetadata,
            "a pairwise client with redirect_uris on several hosts needs a sector_identifier_uri (OIDC Core §8.1)",
        )),
    }
}

/// OIDC Core §8.1: SHA-256 over the sector identifier, the local subject
/// and the salt, base64url (43 characters). Each part is length-prefixed,
/// so no two (sector, subject) pairs hash the same input.
pub fn pairwise_subject(sector: &str, local_sub: &str, salt: &PairwiseSalt) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [sector.as_bytes(), local_sub.as_bytes(), &salt.0[..]] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    URL_SAFE_NO_PAD.encode(ctx.finish().as_ref())
}

impl Policy {
    /// What `client` is shown as `sub`: its own choice (`subject`, else
    /// `subject_type`), else its profile's default, else the deployment's,
    /// else the customer's id.
    pub fn subject_kind_for(&self, client: &Client) -> SubjectKind {
        let profile = self.profile_for(client);
        client
            .metadata
            .own_subject_kind()
            .or_else(|| {
                self.subject
                    .profiles
                    .iter()
                    .find(|(p, _)| *p == profile)
                    .map(|(_, k)| *k)
            })
            .or(self.subject.default)
            .unwrap_or(SubjectKind::Customer)
    }
}

/// The `sub` of everything `client` is given about the customer
/// `local_sub` in the grant of `consent_id`: the one function every
/// id_token, userinfo response, introspection answer and JWT access token
/// takes it from. A consent-subject client's grant without a consent id
/// (a flow without an intent) shows the customer's id.
pub fn client_subject(
    policy: &Policy,
    client: &Client,
    local_sub: &str,
    consent_id: Option<&str>,
) -> Result<String, OAuthError> {
    match policy.subject_kind_for(client) {
        SubjectKind::Customer => Ok(local_sub.to_owned()),
        SubjectKind::Consent => Ok(consent_id
            .filter(|c| !c.is_empty())
            .unwrap_or(local_sub)
            .to_owned()),
        SubjectKind::Pairwise => {
            let Some(salt) = &policy.subject.salt else {
                tracing::error!(client_id = %client.id(), "pairwise subject without a salt");
                return Err(OAuthError::server_error());
            };
            let sector = sector_identifier(&client.metadata).map_err(|e| {
                // Registration checks the sector, so this is a stored record gone bad.
                tracing::error!(client_id = %client.id(), error = ?e.description, "no sector identifier");
                OAuthError::server_error()
            })?;
            Ok(pairwise_subject(&sector, local_sub, salt))
        }
    }
}

/// OIDC Registration §5 (and §2 `sector_identifier_uri`): the document at
/// the client's `sector_identifier_uri`, fetched over https (the jwks_uri
/// fetcher: timeout, size limit, no redirects), must be a JSON array of
/// URIs that contains every registered redirect URI. Checked when a
/// registration is made or changed; `invalid_client_metadata` otherwise.
pub async fn check_sector_identifier_uri<F: JwksFetcher>(
    fetcher: &F,
    m: &ClientMetadata,
) -> Result<(), OAuthError> {
    let Some(uri) = &m.sector_identifier_uri else {
        return Ok(());
    };
    let bad = |d: String| OAuthError::new(ErrorCode::InvalidClientMetadata, d);
    let body = fetcher
        .fetch_document(uri, "sector_identifier_uri")
        .await
        .map_err(|e| {
            // The detail (a status, a timeout, a transport error) is
            // logged, never sent: it would tell a registrant how a host it
            // names answers the server (FetchError).
            tracing::info!(error = %e, "sector_identifier_uri fetch failed");
            bad(format!(
                "sector_identifier_uri {uri} could not be read over https"
            ))
        })?;
    let listed: Vec<String> = serde_json::from_slice(&body).map_err(|_| {
        bad(format!(
            "sector_identifier_uri {uri} is not a JSON array of redirect URIs (OIDC Registration §5)"
        ))
    })?;
    if let Some(missing) = m
        .redirect_uris
        .iter()
        .find(|r| !listed.iter().any(|l| l == *r))
    {
        return Err(bad(format!(
            "redirect_uri {missing} is not listed at sector_identifier_uri {uri} (OIDC Registration §5)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwks_resolver::FetchError;
    use serde_json::json;

    fn metadata(extra: serde_json::Value) -> ClientMetadata {
        let mut m = json!({
            "client_id": "tpp-1",
            "redirect_uris": ["https://tpp.example/cb", "https://tpp.example/cb2"],
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks": {"keys": []},
        });
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        serde_json::from_value(m).unwrap()
    }

    fn client(extra: serde_json::Value) -> Client {
        Client::new(metadata(extra), None).unwrap()
    }

    fn salt(b: u8) -> PairwiseSalt {
        PairwiseSalt::new(&[b; 32])
    }

    #[test]
    fn pairwise_is_stable_per_sector_and_differs_across_sectors_subjects_and_salts() {
        let a = pairwise_subject("tpp.example", "cust-1", &salt(1));
        assert_eq!(a, pairwise_subject("tpp.example", "cust-1", &salt(1)));
        assert_eq!(a.len(), 43);
        assert_ne!(a, pairwise_subject("other.example", "cust-1", &salt(1)));
        assert_ne!(a, pairwise_subject("tpp.example", "cust-2", &salt(1)));
        assert_ne!(a, pairwise_subject("tpp.example", "cust-1", &salt(2)));
        // Length prefixes: moving bytes between sector and subject changes it.
        assert_ne!(
            pairwise_subject("tpp.exampl", "ecust-1", &salt(1)),
            a,
            "parts are not simply concatenated"
        );
        assert!(!a.contains("cust-1"));
    }

    #[test]
    fn the_sector_is_the_sector_uri_host_else_the_one_redirect_host() {
        assert_eq!(
            sector_identifier(&metadata(json!({}))).unwrap(),
            "tpp.example"
        );
        let two_hosts = metadata(json!({
            "redirect_uris": ["https://a.example/cb", "https://b.example/cb"],
        }));
        assert_eq!(
            sector_identifier(&two_hosts).unwrap_err().code,
            ErrorCode::InvalidClientMetadata
        );
        let with_uri = metadata(json!({
            "redirect_uris": ["https://a.example/cb", "https://b.example/cb"],
            "sector_identifier_uri": "https://Sector.Example/redirects.json",
        }));
        assert_eq!(sector_identifier(&with_uri).unwrap(), "sector.example");
    }

    #[test]
    fn subject_metadata_is_validated() {
        let refused = |extra: serde_json::Value| {
            let e = metadata(extra).validate().unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClientMetadata, "{e:?}");
            e.description.unwrap().into_owned()
        };
        assert!(refused(json!({"subject_type": "consent"})).contains("public or pairwise"));
        assert!(
            refused(json!({"subject_type": "public", "subject": "pairwise"}))
                .contains("subject_type pairwise")
        );
        assert!(
            refused(json!({"subject_type": "pairwise", "subject": "consent"}))
                .contains("leave subject_type out")
        );
        assert!(
            refused(json!({
                "subject_type": "pairwise",
                "redirect_uris": ["https://a.example/cb", "https://b.example/cb"],
            }))
            .contains("sector_identifier_uri")
        );
        assert!(
            refused(json!({"sector_identifier_uri": "http://tpp.example/s.json"}))
                .contains("https")
        );
        for ok in [
            json!({"subject_type": "public"}),
            json!({"subject_type": "pairwise", "subject": "pairwise"}),
            json!({"subject": "consent"}),
            json!({
                "subject_type": "pairwise",
                "redirect_uris": ["https://a.example/cb", "https://b.example/cb"],
                "sector_identifier_uri": "https://tpp.example/s.json",
            }),
        ] {
            metadata(ok.clone())
                .validate()
                .unwrap_or_else(|e| panic!("{ok}: {e:?}"));
        }
    }

    #[test]
    fn the_client_choice_wins_over_the_profile_and_the_deployment() {
        let mut policy = Policy::new("https://op.example", Profile::Fapi2);
        policy.subject.salt = Some(salt(1));
        let plain = client(json!({}));
        assert_eq!(policy.subject_kind_for(&plain), SubjectKind::Customer);
        policy.subject.default = Some(SubjectKind::Consent);
        assert_eq!(policy.subject_kind_for(&plain), SubjectKind::Consent);
        let uk = client(json!({
            "fapi_profile": "uk-ob",
            "response_types": ["code id_token"],
        }));
        policy.subject.profiles = vec![(Profile::UkOpenBanking, SubjectKind::Customer)];
        assert_eq!(policy.subject_kind_for(&uk), SubjectKind::Customer);
        assert_eq!(policy.subject_kind_for(&plain), SubjectKind::Consent);
        let public = client(json!({"subject_type": "public"}));
        assert_eq!(policy.subject_kind_for(&public), SubjectKind::Customer);

        assert_eq!(
            client_subject(&policy, &plain, "cust-1", Some("intent-9")).unwrap(),
            "intent-9"
        );
        assert_eq!(
            client_subject(&policy, &plain, "cust-1", None).unwrap(),
            "cust-1",
            "no consent: the customer"
        );
        let pairwise = client(json!({"subject_type": "pairwise"}));
        let p = client_subject(&policy, &pairwise, "cust-1", Some("intent-9")).unwrap();
        assert_eq!(p, pairwise_subject("tpp.example", "cust-1", &salt(1)));
        policy.subject.salt = None;
        assert_eq!(
            client_subject(&policy, &pairwise, "cust-1", None)
                .unwrap_err()
                .code,
            ErrorCode::ServerError
        );
    }

    struct Doc(Result<&'static str, ()>);
    impl JwksFetcher for Doc {
        async fn fetch(&self, _url: &str) -> Result<Vec<u8>, FetchError> {
            self.0
                .map(|s| s.as_bytes().to_vec())
                .map_err(|()| FetchError::Timeout)
        }
    }

    #[tokio::test]
    async fn the_sector_document_must_list_every_redirect_uri() {
        let m = metadata(json!({"sector_identifier_uri": "https://tpp.example/s.json"}));
        check_sector_identifier_uri(
            &Doc(Ok(
                r#"["https://tpp.example/cb","https://tpp.example/cb2","https://x/y"]"#,
            )),
            &m,
        )
        .await
        .unwrap();
        for (doc, says) in [
            (
                Ok(r#"["https://tpp.example/cb"]"#),
                "https://tpp.example/cb2 is not listed",
            ),
            (Ok(r#"{"redirect_uris": []}"#), "not a JSON array"),
            (Err(()), "could not be read"),
        ] {
            let e = check_sector_identifier_uri(&Doc(doc), &m)
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidClientMetadata);
            assert!(e.description.as_deref().unwrap().contains(says), "{e:?}");
            // How the fetch failed stays in the log.
            assert!(
                !e.description.as_deref().unwrap().contains("timed out"),
                "{e:?}"
            );
        }
        // No sector_identifier_uri: nothing to fetch.
        check_sector_identifier_uri(&Doc(Err(())), &metadata(json!({})))
            .await
            .unwrap();
    }
}
