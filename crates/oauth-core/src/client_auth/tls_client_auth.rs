//! `tls_client_auth`: PKI mutual-TLS client authentication (RFC 8705 §2.1).
//! The certificate must chain to the configured CA bundle (decided by the
//! server, recorded in [`PeerCertificate::ca_verified`]), be valid now, and
//! carry the ONE subject DN or SAN value the client registered
//! (RFC 8705 §2.1.2).

use std::net::IpAddr;

use super::{AUTH_FAILED, failed};
use crate::cert::{DistinguishedName, PeerCertificate};
use crate::client::{Client, ClientMetadata};
use crate::error::OAuthError;

pub(super) fn verify(client: &Client, cert: &PeerCertificate, now: i64) -> Result<(), OAuthError> {
    if !cert.ca_verified {
        return Err(failed(
            client.id(),
            "certificate does not chain to a trusted CA",
        ));
    }
    if !cert.is_valid_at(now) {
        return Err(failed(
            client.id(),
            "certificate is outside its validity period",
        ));
    }
    if !matches_registration(&client.metadata, cert) {
        // A DN is not a secret: the operator needs both sides to fix the
        // registration (or tell the TPP which certificate to present).
        tracing::info!(
            client_id = client.id(),
            reason = "certificate does not carry the registered subject",
            presented_subject_dn = %cert.subject_dn,
            presented_issuer_dn = %cert.issuer_dn,
            registered = %registered_subject(&client.metadata),
            "client authentication failed"
        );
        return Err(OAuthError::invalid_client(AUTH_FAILED));
    }
    Ok(())
}

/// The one subject the client registered, as `metadata name=value`, for the
/// log.
fn registered_subject(meta: &ClientMetadata) -> String {
    [
        (
            "tls_client_auth_subject_dn",
            &meta.tls_client_auth_subject_dn,
        ),
        ("tls_client_auth_san_dns", &meta.tls_client_auth_san_dns),
        ("tls_client_auth_san_uri", &meta.tls_client_auth_san_uri),
        ("tls_client_auth_san_ip", &meta.tls_client_auth_san_ip),
        ("tls_client_auth_san_email", &meta.tls_client_auth_san_email),
    ]
    .into_iter()
    .find_map(|(name, v)| v.as_deref().map(|v| format!("{name}={v}")))
    .unwrap_or_else(|| "none".to_owned())
}

/// Whether `cert` carries the subject the client registered: the
/// `tls_client_auth_subject_dn` compared semantically (RFC 4514 order, case
/// and spacing do not matter), or a SAN of the registered kind equal to the
/// registered value (DNS names case-insensitively, IP addresses as
/// addresses, e-mail domains case-insensitively). Exactly one of them is
/// registered ([`ClientMetadata::validate`]); none means no match.
pub(super) fn matches_registration(meta: &ClientMetadata, cert: &PeerCertificate) -> bool {
    if let Some(dn) = &meta.tls_client_auth_subject_dn {
        return DistinguishedName::parse_rfc4514(dn).is_ok_and(|dn| dn.matches(&cert.subject));
    }
    if let Some(dns) = &meta.tls_client_auth_san_dns {
        return cert.san_dns.iter().any(|s| s.eq_ignore_ascii_case(dns));
    }
    if let Some(uri) = &meta.tls_client_auth_san_uri {
        return cert.san_uri.iter().any(|s| s == uri);
    }
    if let Some(ip) = &meta.tls_client_auth_san_ip {
        let Ok(want) = ip.trim().parse::<IpAddr>() else {
            return false;
        };
        return cert
            .san_ip
            .iter()
            .any(|s| s.parse::<IpAddr>().is_ok_and(|got| got == want));
    }
    if let Some(email) = &meta.tls_client_auth_san_email {
        return cert.san_email.iter().any(|s| same_mailbox(s, email));
    }
    false
}

/// RFC 5321 §2.4: the local part is case-sensitive, the domain is not.
fn same_mailbox(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{DnType, SanType};
    use serde_json::{Value, json};

    use crate::cert::PeerCertificate;
    use crate::client::{AuthMethod, AuthenticatedClient};
    use crate::client_auth::test_support::*;
    use crate::client_auth::{AUTH_FAILED, ClientAuthRequest, authenticate_at};
    use crate::error::OAuthError;
    use crate::jwks_resolver::JwksResolver;
    use crate::jwks_resolver::test_support::MockFetcher;
    use crate::policy::{Policy, Profile};

    fn tls_client(id: &str, registration: Value) -> crate::client::Client {
        let mut meta = json!({
            "client_id": id, "redirect_uris": ["https://tpp.example/cb"],
            "token_endpoint_auth_method": "tls_client_auth",
        });
        for (k, v) in registration.as_object().unwrap() {
            meta[k] = v.clone();
        }
        client(meta, None)
    }

    async fn run(
        store: &MemStore,
        id: Option<&str>,
        cert: Option<&PeerCertificate>,
    ) -> Result<AuthenticatedClient, OAuthError> {
        let req = ClientAuthRequest {
            endpoint_url: TOKEN_URL,
            client_id: id,
            certificate: cert,
            ..Default::default()
        };
        let jwks = JwksResolver::new(MockFetcher::default());
        authenticate_at(store, &jwks, &Policy::new(ISSUER, Profile::Fapi2), req, T0).await
    }

    /// Certificate order: C, O, CN, i.e. `CN=tpp-1,O=Example TPP,C=GB` in
    /// RFC 4514 and `C=GB, O=Example TPP, CN=tpp-1` as x509 prints it.
    fn tpp_cert(ca: &TestCa, cn: &str) -> PeerCertificate {
        ca.issue(
            &[
                (DnType::CountryName, "GB"),
                (DnType::OrganizationName, "Example TPP"),
                (DnType::CommonName, cn),
            ],
            vec![
                SanType::DnsName("client.tpp.example".try_into().unwrap()),
                SanType::URI("https://tpp.example/software/1".try_into().unwrap()),
                SanType::IpAddress("10.1.2.3".parse().unwrap()),
                SanType::IpAddress("2001:db8::1".parse().unwrap()),
                SanType::Rfc822Name("Ops@TPP.example".try_into().unwrap()),
            ],
        )
    }

    #[tokio::test]
    async fn subject_dn_matches_semantically() {
        let ca = TestCa::new();
        let cert = tpp_cert(&ca, "tpp-1");
        for (i, dn) in [
            "CN=tpp-1,O=Example TPP,C=GB",
            "cn=TPP-1, o=example tpp, c=gb",
            "CN = tpp-1 ,  O=Example   TPP ,C=GB",
            "2.5.4.3=tpp-1,OID.2.5.4.10=Example TPP,C=GB",
        ]
        .iter()
        .enumerate()
        {
            let id = format!("c{i}");
            let store = MemStore::with_clients(&[&tls_client(
                &id,
                json!({"tls_client_auth_subject_dn": dn}),
            )]);
            let ok = run(&store, Some(&id), Some(&cert)).await;
            assert!(ok.is_ok(), "{dn}: {ok:?}");
            assert_eq!(ok.unwrap().method, AuthMethod::TlsClientAuth);
        }
        // The certificate-order printing is a different DN (reversed RDNs).
        for dn in [
            "C=GB,O=Example TPP,CN=tpp-1",
            "CN=tpp-2,O=Example TPP,C=GB",
            "CN=tpp-1,O=Example TPP",
        ] {
            let store = MemStore::with_clients(&[&tls_client(
                "c",
                json!({"tls_client_auth_subject_dn": dn}),
            )]);
            let err = run(&store, Some("c"), Some(&cert)).await.unwrap_err();
            assert_eq!(err.code.as_str(), "invalid_client", "{dn}");
            assert_eq!(err.description.as_deref(), Some(AUTH_FAILED));
        }
    }

    #[tokio::test]
    async fn san_values_match() {
        let ca = TestCa::new();
        let cert = tpp_cert(&ca, "tpp-1");
        let accept = [
            json!({"tls_client_auth_san_dns": "CLIENT.tpp.example"}),
            json!({"tls_client_auth_san_uri": "https://tpp.example/software/1"}),
            json!({"tls_client_auth_san_ip": "10.1.2.3"}),
            json!({"tls_client_auth_san_ip": "2001:db8:0:0:0:0:0:1"}),
            json!({"tls_client_auth_san_email": "Ops@tpp.EXAMPLE"}),
        ];
        for reg in accept {
            let store = MemStore::with_clients(&[&tls_client("c", reg.clone())]);
            assert!(run(&store, Some("c"), Some(&cert)).await.is_ok(), "{reg}");
        }
        let refuse = [
            json!({"tls_client_auth_san_dns": "other.tpp.example"}),
            json!({"tls_client_auth_san_uri": "https://tpp.example/software/2"}),
            json!({"tls_client_auth_san_uri": "HTTPS://tpp.example/software/1/"}),
            json!({"tls_client_auth_san_ip": "10.1.2.4"}),
            json!({"tls_client_auth_san_ip": "not-an-ip"}),
            json!({"tls_client_auth_san_email": "ops@tpp.example"}),
        ];
        for reg in refuse {
            let store = MemStore::with_clients(&[&tls_client("c", reg.clone())]);
            assert_eq!(
                code(run(&store, Some("c"), Some(&cert)).await),
                "invalid_client",
                "{reg}"
            );
        }
    }

    #[tokio::test]
    async fn untrusted_expired_or_missing_certificates_fail() {
        let ca = TestCa::new();
        let store = MemStore::with_clients(&[&tls_client(
            "c",
            json!({"tls_client_auth_subject_dn": "CN=tpp-1,O=Example TPP,C=GB"}),
        )]);
        let good = tpp_cert(&ca, "tpp-1");
        assert!(run(&store, Some("c"), Some(&good)).await.is_ok());

        let mut untrusted = good.clone();
        untrusted.ca_verified = false;
        assert_eq!(
            code(run(&store, Some("c"), Some(&untrusted)).await),
            "invalid_client"
        );
        let mut expired = good.clone();
        expired.not_after = T0 - 1;
        assert_eq!(
            code(run(&store, Some("c"), Some(&expired)).await),
            "invalid_client"
        );
        let mut early = good.clone();
        early.not_before = T0 + 1;
        assert_eq!(
            code(run(&store, Some("c"), Some(&early)).await),
            "invalid_client"
        );
        // A self-signed certificate with the right subject is not enough.
        let (self_signed, _) = self_signed_cert("tpp-1");
        assert_eq!(
            code(run(&store, Some("c"), Some(&self_signed)).await),
            "invalid_client"
        );
        // No certificate, or no client_id to say who it is.
        let err = run(&store, Some("c"), None).await.unwrap_err();
        assert_eq!(err.code.as_str(), "invalid_client");
        assert_eq!(err.status(), 401);
        assert_eq!(code(run(&store, None, Some(&good)).await), "invalid_client");
        // Unknown client.
        assert_eq!(
            code(run(&store, Some("nobody"), Some(&good)).await),
            "invalid_client"
        );
    }

    #[tokio::test]
    async fn a_certificate_does_not_authenticate_a_private_key_jwt_client() {
        let ca = TestCa::new();
        let key = TestKey::ec(Some("k1"));
        let pk = client(
            json!({"client_id": "pk", "redirect_uris": ["https://tpp.example/cb"],
                "jwks": {"keys": [key.jwk]}}),
            None,
        );
        let store = MemStore::with_clients(&[&pk]);
        let cert = tpp_cert(&ca, "pk");
        assert_eq!(
            code(run(&store, Some("pk"), Some(&cert)).await),
            "invalid_client"
        );
        // ...but it may ride along with the assertion (certificate-bound tokens).
        let a = key.sign(&assertion_claims("pk"));
        let req = ClientAuthRequest {
            certificate: Some(&cert),
            client_id: Some("pk"),
            ..assertion_request(&a)
        };
        let jwks = JwksResolver::new(MockFetcher::default());
        let ok = authenticate_at(&store, &jwks, &Policy::new(ISSUER, Profile::Fapi2), req, T0)
            .await
            .unwrap();
        assert_eq!(ok.method, AuthMethod::PrivateKeyJwt);
    }
}
