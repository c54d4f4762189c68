//! Outbound HTTPS for clients' `jwks_uri` and `sector_identifier_uri` (and
//! directories' JWKS):
//! https only, a short timeout, a response size limit, no redirects, the
//! system's trust roots (plus the dev CA in dev mode), and the one
//! process-wide crypto provider.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use oauth_core::jwks_resolver::{FetchError, JwksFetcher};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct HttpFetcher {
    client: reqwest::Client,
}

impl HttpFetcher {
    /// Builds the client; `extra_ca` is added to the system roots.
    pub fn new(extra_ca: Option<&Path>) -> Result<HttpFetcher, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_ca {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
        let provider = Arc::new(crate::tls::crypto_provider(crate::tls::TlsProfile::Fapi2));
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .user_agent(concat!("strongroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(HttpFetcher { client })
    }
}

impl JwksFetcher for HttpFetcher {
    async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        self.fetch_as(
            url,
            "jwks_uri",
            "application/jwk-set+json, application/json",
        )
        .await
    }

    async fn fetch_document(&self, url: &str, target: &'static str) -> Result<Vec<u8>, FetchError> {
        self.fetch_as(url, target, "application/json").await
    }
}

impl HttpFetcher {
    async fn fetch_as(
        &self,
        url: &str,
        target: &'static str,
        accept: &'static str,
    ) -> Result<Vec<u8>, FetchError> {
        if !url.starts_with("https://") {
            return Err(FetchError::NotHttps);
        }
        let started = std::time::Instant::now();
        let r = self.get(url, accept).await;
        let status = match &r {
            Ok(_) | Err(FetchError::TooLarge(_)) => Some(200),
            Err(FetchError::Status(s)) => Some(*s),
            Err(_) => None,
        };
        oauth_core::telemetry::outbound(target, started, status);
        r
    }

    async fn get(&self, url: &str, accept: &'static str) -> Result<Vec<u8>, FetchError> {
        let mut res = self
            .client
            .get(url)
            .header("accept", accept)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    FetchError::Timeout
                } else {
                    FetchError::Transport(e.to_string())
                }
            })?;
        if !res.status().is_success() {
            return Err(FetchError::Status(res.status().as_u16()));
        }
        if res
            .content_length()
            .is_some_and(|n| n as usize > MAX_JWKS_BYTES)
        {
            return Err(FetchError::TooLarge(MAX_JWKS_BYTES));
        }
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| {
            if e.is_timeout() {
                FetchError::Timeout
            } else {
                FetchError::Transport(e.to_string())
            }
        })? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(FetchError::TooLarge(MAX_JWKS_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
