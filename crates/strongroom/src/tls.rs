//! TLS for the two listeners and the client certificate of each request.
//!
//! - [`ServerTls`] builds the rustls configurations: the browser listener
//!   never asks for a client certificate (no certificate picker on the
//!   consent page); the mTLS listener offers client authentication but does
//!   not require it and accepts any certificate whose key the client proves
//!   it holds, because which certificates a client may use is per-client
//!   policy (RFC 8705 §2), not a property of the listener.
//! - [`ClientCertTrust`] decides, once per connection, whether the presented
//!   chain verifies to the configured CA bundle (`tls_client_auth`, RFC 8705
//!   §2.1); the result travels in [`PeerCertificate::ca_verified`].
//! - [`on_connect`] and [`peer_certificate`] carry the certificate from the
//!   handshake, or from a trusted TLS-terminating proxy's header (RFC 9440),
//!   to handlers.

use std::any::Any;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::http::header::HeaderName;
use actix_web::{HttpRequest, web};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use oauth_core::cert::PeerCertificate;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls::{
    CipherSuite, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// Which TLS 1.2 cipher suites the server offers. Both profiles allow only
/// TLS 1.2 and 1.3; TLS 1.3 always offers its AEAD suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsProfile {
    /// FAPI 2.0 Security Profile §5.2.1: TLS 1.2 limited to the RFC 9325
    /// §4.2 recommendations, ECDHE with AES-GCM, RSA or ECDSA certificates.
    Fapi2,
    /// FAPI 1.0 Part 2 §8.5: TLS 1.2 limited to
    /// `TLS_ECDHE_RSA_WITH_AES_{128_GCM_SHA256,256_GCM_SHA384}`; needs an
    /// RSA server certificate.
    Fapi1,
}

impl TlsProfile {
    fn allows(self, suite: CipherSuite) -> bool {
        match suite {
            CipherSuite::TLS13_AES_128_GCM_SHA256
            | CipherSuite::TLS13_AES_256_GCM_SHA384
            | CipherSuite::TLS13_CHACHA20_POLY1305_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => true,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => self == TlsProfile::Fapi2,
            _ => false,
        }
    }
}

/// The aws-lc-rs provider restricted to the profile's cipher suites. Always
/// passed explicitly (`builder_with_provider`): the process default could be
/// another provider if a dependency enables rustls' `ring` feature.
pub fn crypto_provider(profile: TlsProfile) -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|s| profile.allows(s.suite()));
    provider
}

/// A TLS set-up problem, printed by the server as one line before exiting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or does not hold what it should.
    #[error("{}: {problem}", path.display())]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The certificate and key files do not form a usable pair.
    #[error("{} / {}: {problem}", cert.display(), key.display())]
    KeyPair {
        /// The certificate chain file.
        cert: PathBuf,
        /// The private key file.
        key: PathBuf,
        /// What rustls refused.
        problem: String,
    },
    /// A `trusted_proxies` entry is not an IP address or CIDR.
    #[error("trusted proxy {0:?} is not an IP address or CIDR")]
    TrustedProxy(String),
    /// The client certificate header name is not a valid header name.
    #[error("client certificate header {0:?} is not a valid header name")]
    HeaderName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, problem: impl fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

fn pem_problem(e: rustls_pki_types::pem::Error, what: &str) -> String {
    match e {
        rustls_pki_types::pem::Error::NoItemsFound => format!("no {what} found in the file"),
        rustls_pki_types::pem::Error::Io(io) => format!("cannot read ({io})"),
        other => format!("not a valid PEM file ({other})"),
    }
}

/// Reads a PEM bundle of certificates; an empty bundle is an error.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, pem_problem(e, "CERTIFICATE")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, pem_problem(e, "CERTIFICATE")))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE found in the file"));
    }
    Ok(certs)
}

/// The server's two rustls configurations, sharing one certificate and
/// cipher policy.
#[derive(Clone)]
pub struct ServerTls {
    browser: ServerConfig,
    mtls: ServerConfig,
}

impl ServerTls {
    /// Loads the server chain (leaf first) and private key (PKCS#8, PKCS#1 or
    /// SEC1 PEM) and builds both configurations for TLS 1.2 and 1.3 with the
    /// profile's suites.
    ///
    /// ALPN is left to actix-web, which prepends `h2` and `http/1.1` to the
    /// configuration when it binds (setting them here would list them twice).
    pub fn build(
        profile: TlsProfile,
        cert_chain_pem_path: &Path,
        key_pem_path: &Path,
    ) -> Result<Self, TlsError> {
        let chain = load_certs(cert_chain_pem_path)?;
        let key = PrivateKeyDer::from_pem_file(key_pem_path)
            .map_err(|e| file_error(key_pem_path, pem_problem(e, "PRIVATE KEY")))?;
        let provider = Arc::new(crypto_provider(profile));
        let builder = || {
            ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
                .map_err(|e| TlsError::Config(e.to_string()))
        };
        let pair_error = |e: rustls::Error| TlsError::KeyPair {
            cert: cert_chain_pem_path.to_owned(),
            key: key_pem_path.to_owned(),
            problem: e.to_string(),
        };
        let mut browser = builder()?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(pair_error)?;
        let mut mtls = builder()?
            .with_client_cert_verifier(Arc::new(AnyClientCert {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_single_cert(chain, key)
            .map_err(pair_error)?;
        // Our suite order (strongest first within each version) wins over the
        // client's, so a client offering weak-but-allowed suites first still
        // gets the best common one.
        browser.ignore_client_order = true;
        mtls.ignore_client_order = true;
        Ok(Self { browser, mtls })
    }

    /// For the browser listener: never sends a CertificateRequest.
    pub fn browser(&self) -> ServerConfig {
        self.browser.clone()
    }

    /// For the mTLS listener (RFC 8705): requests a client certificate,
    /// accepts its absence, and accepts any certificate once the client has
    /// proved possession of its key in the handshake.
    pub fn mtls(&self) -> ServerConfig {
        self.mtls.clone()
    }
}

/// Accepts any client certificate; chain trust is evaluated afterwards by
/// [`ClientCertTrust`] and recorded, never enforced in the handshake, so
/// `self_signed_tls_client_auth` clients (RFC 8705 §2.2) can connect. The
/// handshake signature is still checked: the client must hold the key.
#[derive(Debug)]
struct AnyClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // An empty list tells clients any certificate is acceptable
        // (RFC 8446 §4.2.4), which is the truth here.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The CA bundle that makes a client certificate trusted for
/// `tls_client_auth` (RFC 8705 §2.1).
pub struct ClientCertTrust {
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl fmt::Debug for ClientCertTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertTrust")
            .field("has_ca_bundle", &self.verifier.is_some())
            .finish()
    }
}

impl ClientCertTrust {
    /// Loads the CA bundle; `None` means no certificate is ever CA-verified
    /// (only `self_signed_tls_client_auth` can then use certificates).
    pub fn new(ca_bundle_pem_path: Option<&Path>) -> Result<Self, TlsError> {
        let Some(path) = ca_bundle_pem_path else {
            return Ok(Self { verifier: None });
        };
        let mut roots = RootCertStore::empty();
        for cert in load_certs(path)? {
            roots
                .add(cert)
                .map_err(|e| file_error(path, format!("unusable CA certificate ({e})")))?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| file_error(path, e))?;
        Ok(Self {
            verifier: Some(verifier),
        })
    }

    /// Parses the presented chain (leaf first) and checks it against the CA
    /// bundle now. An untrusted, expired or wrong-purpose chain still yields
    /// the certificate, with `ca_verified == false`; `None` only when there
    /// is no chain or the leaf cannot be parsed.
    pub fn evaluate(&self, chain: &[CertificateDer<'_>]) -> Option<Arc<PeerCertificate>> {
        self.evaluate_at(chain, UnixTime::now())
    }

    /// [`Self::evaluate`] at a given time.
    pub fn evaluate_at(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Option<Arc<PeerCertificate>> {
        let (leaf, intermediates) = chain.split_first()?;
        let ca_verified = self.verifier.as_ref().is_some_and(|v| {
            v.verify_client_cert(leaf, intermediates, now)
                .inspect_err(|e| tracing::debug!(error = %e, "client certificate not CA-verified"))
                .is_ok()
        });
        match PeerCertificate::from_der(leaf, chain.len(), ca_verified) {
            Ok(cert) => Some(Arc::new(cert)),
            Err(e) => {
                tracing::debug!(error = %e, "unparseable client certificate ignored");
                None
            }
        }
    }
}

/// The client certificate of a TLS connection, stored in the connection's
/// extensions by [`on_connect`].
#[derive(Debug, Clone)]
pub struct ConnectionCert(pub Arc<PeerCertificate>);

/// The `HttpServer::on_connect` callback: evaluates the client certificate
/// once per TLS connection and stores it as [`ConnectionCert`].
pub fn on_connect(
    trust: Arc<ClientCertTrust>,
) -> impl Fn(&dyn Any, &mut Extensions) + Send + Sync + 'static {
    move |conn, extensions| {
        let Some(tls) = conn.downcast_ref::<actix_tls::accept::rustls_0_23::TlsStream<
            actix_web::rt::net::TcpStream,
        >>() else {
            return;
        };
        let (_, session) = tls.get_ref();
        if let Some(chain) = session.peer_certificates()
            && let Some(cert) = trust.evaluate(chain)
        {
            extensions.insert(ConnectionCert(cert));
        }
    }
}

/// An IP network (`10.0.0.0/8`, `2001:db8::/32`) or single address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpCidr {
    addr: IpAddr,
    prefix: u8,
}

impl IpCidr {
    /// Whether `ip` lies in this network; IPv4-mapped IPv6 addresses
    /// (`::ffff:10.0.0.1`, as dual-stack sockets report IPv4 peers) count as
    /// their IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpCidr {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        let bad = || TlsError::TrustedProxy(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let written = IpAddr::from_str(addr).map_err(|_| bad())?;
        let max = if written.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| bad())?
            }
            Some(_) => return Err(bad()),
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        // `::ffff:a.b.c.d/n` is stored as the IPv4 network it denotes, the
        // same form `contains` compares peers in.
        let addr = written.to_canonical();
        let prefix = if addr.is_ipv4() && written.is_ipv6() {
            prefix.checked_sub(96).ok_or_else(bad)?
        } else {
            prefix
        };
        Ok(Self { addr, prefix })
    }
}

/// Where client certificates come from besides the TLS connection: a header
/// set by a TLS-terminating proxy (RFC 9440 `Client-Cert`, nginx
/// `$ssl_client_escaped_cert`, AWS ALB `X-Amzn-Mtls-Clientcert`), believed
/// only from the listed proxy addresses. Registered as
/// `web::Data<ClientCertSource>`.
#[derive(Debug)]
pub struct ClientCertSource {
    trust: Arc<ClientCertTrust>,
    header: Option<HeaderName>,
    chain_header: Option<HeaderName>,
    trusted_proxies: Vec<IpCidr>,
}

impl ClientCertSource {
    /// `header`: the request header a trusted proxy puts the client
    /// certificate in (`None`: only TLS connection certificates count).
    /// When it is RFC 9440's `Client-Cert`, intermediates are also read from
    /// `Client-Cert-Chain` (RFC 9440 §2.3).
    pub fn new(
        trust: Arc<ClientCertTrust>,
        header: Option<String>,
        trusted_proxies: &[String],
    ) -> Result<Self, TlsError> {
        let header = header
            .map(|h| HeaderName::from_str(h.trim()).map_err(|_| TlsError::HeaderName(h)))
            .transpose()?;
        let chain_header = header
            .as_ref()
            .filter(|h| h.as_str() == "client-cert")
            .map(|_| HeaderName::from_static("client-cert-chain"));
        let trusted_proxies = trusted_proxies
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()?;
        Ok(Self {
            trust,
            header,
            chain_header,
            trusted_proxies,
        })
    }

    /// The addresses whose forwarded headers are believed
    /// (`tls.trusted_proxies`, parsed once here).
    pub fn trusted_proxies(&self) -> &[IpCidr] {
        &self.trusted_proxies
    }

    /// The CA trust used for header certificates.
    pub fn trust(&self) -> &Arc<ClientCertTrust> {
        &self.trust
    }

    fn cert_from_header(&self, req: &HttpRequest) -> Option<Arc<PeerCertificate>> {
        let header = self.header.as_ref()?;
        let value = req.headers().get(header)?;
        let peer = req.peer_addr().map(|a| a.ip());
        if !peer.is_some_and(|ip| self.trusted_proxies.iter().any(|n| n.contains(ip))) {
            tracing::debug!(
                header = %header,
                peer = ?peer,
                "client certificate header from an untrusted address ignored"
            );
            return None;
        }
        let Some(leaf) = value.to_str().ok().and_then(parse_cert_header) else {
            tracing::debug!(header = %header, "client certificate header not understood");
            return None;
        };
        let mut chain = vec![leaf];
        if let Some(list) = self
            .chain_header
            .as_ref()
            .and_then(|h| req.headers().get(h))
            .and_then(|v| v.to_str().ok())
        {
            chain.extend(list.split(',').filter_map(parse_sf_binary));
        }
        self.trust.evaluate(&chain)
    }
}

/// The client certificate of this request: the TLS connection's, or else one
/// forwarded by a trusted proxy in the configured header. The value to hand
/// to client authentication and token binding (RFC 8705).
pub fn peer_certificate(req: &HttpRequest) -> Option<Arc<PeerCertificate>> {
    if let Some(ConnectionCert(cert)) = req.conn_data::<ConnectionCert>() {
        return Some(cert.clone());
    }
    req.app_data::<web::Data<ClientCertSource>>()?
        .cert_from_header(req)
}

/// Parses a forwarded certificate: an RFC 9440 §2.2 byte sequence
/// (`:<base64 DER>:`) or a URL-encoded PEM (nginx `$ssl_client_escaped_cert`).
pub fn parse_cert_header(value: &str) -> Option<CertificateDer<'static>> {
    let value = value.trim();
    if value.starts_with(':') {
        return parse_sf_binary(value);
    }
    let pem = percent_decode(value)?;
    CertificateDer::from_pem_slice(&pem).ok()
}

/// An RFC 8941 §3.3.5 byte sequence: base64 between colons.
fn parse_sf_binary(item: &str) -> Option<CertificateDer<'static>> {
    let inner = item.trim().strip_prefix(':')?.strip_suffix(':')?;
    let der = STANDARD
        .decode(inner)
        .or_else(|_| STANDARD_NO_PAD.decode(inner))
        .ok()?;
    (!der.is_empty()).then(|| CertificateDer::from(der))
}

/// `%XX` decoding only: `+` stays `+`, since base64 inside PEM uses it.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devcerts::{DevCerts, DnType, KeyAlg, ensure_dev_certs, issue_client_cert};
    use actix_web::{App, HttpServer};
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant, SystemTime};

    const OPENSSL: &str = "/usr/bin/openssl";
    const CURL: &str = "/usr/bin/curl";

    fn install_provider() {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }

    /// Runs a program with stdin closed and a timeout; returns whether it
    /// exited successfully and its stdout and stderr together.
    fn run(program: &str, args: &[&str]) -> (bool, String) {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{program} {args:?} timed out");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = out_reader.join().unwrap() + &err_reader.join().unwrap();
        (status.success(), text)
    }

    async fn run_async(program: &'static str, args: Vec<String>) -> (bool, String) {
        actix_web::rt::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(program, &args)
        })
        .await
        .unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_owned()).collect()
    }

    async fn whoami(req: HttpRequest) -> String {
        match peer_certificate(&req) {
            Some(c) => format!(
                "{}|{}|{}|{}",
                c.subject_dn, c.x5t_s256, c.ca_verified, c.chain_len
            ),
            None => "none".to_owned(),
        }
    }

    struct TestServer {
        dir: tempfile::TempDir,
        dev: DevCerts,
        ca_pem: String,
        ca_key_pem: String,
        browser: u16,
        mtls: u16,
        handle: actix_web::dev::ServerHandle,
    }

    impl TestServer {
        async fn start(profile: TlsProfile) -> Self {
            install_provider();
            let dir = tempfile::tempdir().unwrap();
            let dev = ensure_dev_certs(dir.path()).unwrap();
            let tls = ServerTls::build(profile, &dev.server_chain, &dev.server_key).unwrap();
            let trust = Arc::new(ClientCertTrust::new(Some(&dev.ca_cert)).unwrap());
            let source = web::Data::new(ClientCertSource::new(trust.clone(), None, &[]).unwrap());
            let browser = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mtls = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let (browser_port, mtls_port) = (
                browser.local_addr().unwrap().port(),
                mtls.local_addr().unwrap().port(),
            );
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(source.clone())
                    .route("/", web::get().to(whoami))
            })
            .workers(1)
            .disable_signals()
            .on_connect(on_connect(trust))
            .listen_rustls_0_23(browser, tls.browser())
            .unwrap()
            .listen_rustls_0_23(mtls, tls.mtls())
            .unwrap()
            .run();
            let handle = server.handle();
            actix_web::rt::spawn(server);
            Self {
                ca_pem: std::fs::read_to_string(&dev.ca_cert).unwrap(),
                ca_key_pem: std::fs::read_to_string(&dev.ca_key).unwrap(),
                dir,
                dev,
                browser: browser_port,
                mtls: mtls_port,
                handle,
            }
        }

        fn ca(&self) -> String {
            self.dev.ca_cert.display().to_string()
        }

        /// Writes a client certificate and key into the temp dir.
        fn client_files(&self, name: &str, cert_pem: &str, key_pem: &str) -> (String, String) {
            let cert = self.dir.path().join(format!("{name}.pem"));
            let key = self.dir.path().join(format!("{name}-key.pem"));
            std::fs::write(&cert, cert_pem).unwrap();
            std::fs::write(&key, key_pem).unwrap();
            (cert.display().to_string(), key.display().to_string())
        }

        async fn s_client(&self, port: u16, extra: &[&str]) -> (bool, String) {
            let mut args = s(&[
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                "localhost",
                "-CAfile",
                &self.ca(),
                "-verify_return_error",
            ]);
            args.extend(s(extra));
            run_async(OPENSSL, args).await
        }

        async fn curl(&self, port: u16, extra: &[&str]) -> (bool, String) {
            let mut args = s(&["-sS", "--max-time", "20", "--cacert", &self.ca()]);
            args.extend(s(extra));
            args.push(format!("https://localhost:{port}/"));
            run_async(CURL, args).await
        }

        async fn stop(self) {
            self.handle.stop(false).await;
        }
    }

    /// OpenSSL reports an alert it *received* as "... alert <description>"
    /// with "SSL alert number N"; a handshake the client itself gave up on
    /// (no usable protocol or cipher) shows neither and writes nothing, so
    /// this proves the client's hello went out and the server refused it.
    fn assert_server_alert(output: &str, descriptions: &[&str]) {
        let refused = descriptions
            .iter()
            .any(|d| output.contains(&format!("alert {d}")))
            && output.contains("SSL alert number")
            && !output.contains("and written 0 bytes");
        assert!(
            refused,
            "expected one of {descriptions:?} alerts from the server, got:\n{output}"
        );
    }

    #[test]
    fn profiles_filter_cipher_suites() {
        let names = |p| {
            let mut v: Vec<String> = crypto_provider(p)
                .cipher_suites
                .iter()
                .map(|s| format!("{:?}", s.suite()))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            names(TlsProfile::Fapi1),
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ]
        );
        assert_eq!(
            names(TlsProfile::Fapi2),
            [
                "TLS13_AES_128_GCM_SHA256",
                "TLS13_AES_256_GCM_SHA384",
                "TLS13_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ]
        );
    }

    async fn check_protocol_policy(profile: TlsProfile) {
        let srv = TestServer::start(profile).await;
        for port in [srv.browser, srv.mtls] {
            let (ok, out) = srv
                .s_client(port, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
                .await;
            assert!(!ok, "TLS 1.1 must be refused:\n{out}");
            assert!(
                out.contains("Protocol  : TLSv1.1"),
                "the client must offer TLS 1.1:\n{out}"
            );
            // rustls answers a hello without TLS 1.2+ with handshake_failure.
            assert_server_alert(&out, &["protocol version", "handshake failure"]);

            let (ok, out) = srv
                .s_client(
                    port,
                    &["-tls1_2", "-cipher", "ECDHE-RSA-AES128-SHA256:AES128-SHA"],
                )
                .await;
            assert!(!ok, "CBC suites must be refused:\n{out}");
            assert_server_alert(&out, &["handshake failure"]);

            let (ok, out) = srv
                .s_client(
                    port,
                    &[
                        "-tls1_2",
                        "-cipher",
                        "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-CHACHA20-POLY1305",
                    ],
                )
                .await;
            assert!(!ok, "ChaCha20 on TLS 1.2 must be refused:\n{out}");
            assert_server_alert(&out, &["handshake failure"]);

            for cipher in ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"] {
                let (ok, out) = srv.s_client(port, &["-tls1_2", "-cipher", cipher]).await;
                assert!(ok, "{cipher} must work:\n{out}");
                assert!(out.contains(&format!("Cipher is {cipher}")), "{out}");
                assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
            }

            let (ok, out) = srv.s_client(port, &["-tls1_3"]).await;
            assert!(ok, "TLS 1.3 must work:\n{out}");
            assert!(out.contains("New, TLSv1.3"), "{out}");

            let (ok, out) = srv
                .curl(
                    port,
                    &["--http2", "-o", "/dev/null", "-w", "%{http_version}"],
                )
                .await;
            assert!(ok, "{out}");
            assert_eq!(out, "2", "ALPN must select h2");
        }
        srv.stop().await;
    }

    #[actix_web::test]
    async fn fapi2_protocol_and_cipher_policy() {
        check_protocol_policy(TlsProfile::Fapi2).await;
    }

    #[actix_web::test]
    async fn fapi1_protocol_and_cipher_policy() {
        check_protocol_policy(TlsProfile::Fapi1).await;
    }

    /// The x5t#S256 value computed by OpenSSL, for an independent check.
    fn openssl_thumbprint(cert_path: &str) -> String {
        let (ok, out) = run(
            OPENSSL,
            &[
                "x509",
                "-in",
                cert_path,
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
        );
        assert!(ok, "{out}");
        let hex = out.trim().rsplit('=').next().unwrap().replace(':', "");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    #[actix_web::test]
    async fn mtls_listener_reports_client_certificates() {
        let srv = TestServer::start(TlsProfile::Fapi2).await;
        let subject = [
            (DnType::CountryName, "GB"),
            (DnType::OrganizationName, "Example TPP"),
            (DnType::OrganizationalUnitName, "Payments"),
            (DnType::CommonName, "tpp-client-1"),
        ];

        // CA-issued: subject, thumbprint and trust reach the handler.
        let (cert, key) = issue_client_cert(
            &srv.ca_pem,
            &srv.ca_key_pem,
            &subject,
            &["tpp.example.com"],
            KeyAlg::EcdsaP256,
        )
        .unwrap();
        let (cert_path, key_path) = srv.client_files("issued", &cert, &key);
        let expected_x5t = openssl_thumbprint(&cert_path);
        let (ok, rfc2253) = run(
            OPENSSL,
            &[
                "x509", "-in", &cert_path, "-noout", "-subject", "-nameopt", "RFC2253",
            ],
        );
        assert!(ok);
        let openssl_dn = rfc2253.trim().trim_start_matches("subject=").to_owned();
        assert_eq!(openssl_dn, "CN=tpp-client-1,OU=Payments,O=Example TPP,C=GB");
        for version in ["--tlsv1.3", "--tlsv1.2"] {
            let max = if version == "--tlsv1.2" { "1.2" } else { "1.3" };
            let (ok, body) = srv
                .curl(
                    srv.mtls,
                    &[
                        version,
                        "--tls-max",
                        max,
                        "--cert",
                        &cert_path,
                        "--key",
                        &key_path,
                    ],
                )
                .await;
            assert!(ok, "{body}");
            let parts: Vec<&str> = body.split('|').collect();
            assert_eq!(parts[0], openssl_dn, "{body}");
            assert_eq!(parts[1], expected_x5t, "{body}");
            assert_eq!(parts[2], "true", "{body}");
        }

        // Self-signed: accepted on the connection, never CA-verified.
        let ss_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["self.example".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "self-signed-client");
        let ss_cert = params.self_signed(&ss_key).unwrap();
        let (ss_cert_path, ss_key_path) =
            srv.client_files("selfsigned", &ss_cert.pem(), &ss_key.serialize_pem());
        let (ok, body) = srv
            .curl(srv.mtls, &["--cert", &ss_cert_path, "--key", &ss_key_path])
            .await;
        assert!(ok, "{body}");
        assert_eq!(
            body,
            format!(
                "CN=self-signed-client|{}|false|1",
                openssl_thumbprint(&ss_cert_path)
            )
        );

        // Expired although CA-issued: not trusted, request still served.
        let day = Duration::from_secs(86_400);
        let now = SystemTime::now();
        let (old, old_key) = crate::devcerts::issue_client_cert_valid(
            &srv.ca_pem,
            &srv.ca_key_pem,
            &subject,
            &[],
            KeyAlg::Rsa2048,
            now - 30 * day,
            now - day,
        )
        .unwrap();
        let (old_path, old_key_path) = srv.client_files("expired", &old, &old_key);
        let (ok, body) = srv
            .curl(srv.mtls, &["--cert", &old_path, "--key", &old_key_path])
            .await;
        assert!(ok, "{body}");
        assert!(body.starts_with(&format!("{openssl_dn}|")), "{body}");
        assert!(body.contains("|false|"), "{body}");

        // No certificate.
        let (ok, body) = srv.curl(srv.mtls, &[]).await;
        assert!(ok, "{body}");
        assert_eq!(body, "none");

        // The mTLS listener sends a CertificateRequest.
        let (ok, out) = srv.s_client(srv.mtls, &["-tls1_3"]).await;
        assert!(ok, "{out}");
        assert!(out.contains("Requested Signature Algorithms"), "{out}");

        // The browser listener never asks, so a certificate is never seen.
        let (ok, body) = srv
            .curl(srv.browser, &["--cert", &cert_path, "--key", &key_path])
            .await;
        assert!(ok, "{body}");
        assert_eq!(body, "none");
        for version in ["-tls1_3", "-tls1_2"] {
            let (ok, out) = srv.s_client(srv.browser, &[version]).await;
            assert!(ok, "{out}");
            assert!(!out.contains("Requested Signature Algorithms"), "{out}");
        }
        srv.stop().await;
    }

    #[test]
    fn build_errors_name_the_file() {
        install_provider();
        let dir = tempfile::tempdir().unwrap();
        let dev = ensure_dev_certs(dir.path()).unwrap();
        let missing = dir.path().join("missing.pem");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "hello\n").unwrap();

        let err = ServerTls::build(TlsProfile::Fapi2, &missing, &dev.server_key)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with(&missing.display().to_string()), "{err}");
        assert!(err.contains("cannot read"), "{err}");

        let err = ServerTls::build(TlsProfile::Fapi2, &garbage, &dev.server_key)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with(&garbage.display().to_string()), "{err}");
        assert!(err.contains("no CERTIFICATE"), "{err}");

        let err = ServerTls::build(TlsProfile::Fapi2, &dev.server_chain, &dev.server_chain)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no PRIVATE KEY"), "{err}");

        // The CA key does not belong to the server certificate.
        let err = ServerTls::build(TlsProfile::Fapi1, &dev.server_chain, &dev.ca_key)
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::KeyPair { .. }), "{err}");
        assert!(!err.to_string().contains('\n'));

        let err = ClientCertTrust::new(Some(&garbage))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&garbage.display().to_string()), "{err}");
    }

    fn dev_material() -> (tempfile::TempDir, DevCerts, String, String) {
        install_provider();
        let dir = tempfile::tempdir().unwrap();
        let dev = ensure_dev_certs(dir.path()).unwrap();
        let ca = std::fs::read_to_string(&dev.ca_cert).unwrap();
        let ca_key = std::fs::read_to_string(&dev.ca_key).unwrap();
        (dir, dev, ca, ca_key)
    }

    fn der_of(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    #[test]
    fn trust_evaluation() {
        let (_dir, dev, ca, ca_key) = dev_material();
        let trust = ClientCertTrust::new(Some(&dev.ca_cert)).unwrap();
        let (cert, _) = issue_client_cert(
            &ca,
            &ca_key,
            &[(DnType::CommonName, "c1")],
            &[],
            KeyAlg::EcdsaP256,
        )
        .unwrap();
        let leaf = der_of(&cert);

        let pc = trust.evaluate(std::slice::from_ref(&leaf)).unwrap();
        assert!(pc.ca_verified);
        assert_eq!((pc.subject_dn.as_str(), pc.chain_len), ("CN=c1", 1));
        // The CA itself appended by the client is harmless.
        assert!(
            trust
                .evaluate(&[leaf.clone(), der_of(&ca)])
                .unwrap()
                .ca_verified
        );
        // Ten years on, the certificate has expired.
        let later = UnixTime::since_unix_epoch(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                + Duration::from_secs(10 * 365 * 86_400),
        );
        assert!(
            !trust
                .evaluate_at(std::slice::from_ref(&leaf), later)
                .unwrap()
                .ca_verified
        );
        // A server certificate (serverAuth EKU only) is not a client certificate.
        let server_leaf = CertificateDer::pem_file_iter(&dev.server_chain)
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert!(!trust.evaluate(&[server_leaf]).unwrap().ca_verified);
        // Without a bundle nothing is CA-verified.
        let none = ClientCertTrust::new(None).unwrap();
        assert!(
            !none
                .evaluate(std::slice::from_ref(&leaf))
                .unwrap()
                .ca_verified
        );
        // Another CA's certificate is not trusted.
        let (_dir2, _, other_ca, other_key) = dev_material();
        let (foreign, _) = issue_client_cert(
            &other_ca,
            &other_key,
            &[(DnType::CommonName, "c2")],
            &[],
            KeyAlg::EcdsaP256,
        )
        .unwrap();
        assert!(!trust.evaluate(&[der_of(&foreign)]).unwrap().ca_verified);
        // Nothing presented, or garbage.
        assert!(trust.evaluate(&[]).is_none());
        assert!(
            trust
                .evaluate(&[CertificateDer::from(vec![1, 2, 3])])
                .is_none()
        );
    }

    #[test]
    fn cidr_parsing_and_matching() {
        let net: IpCidr = "10.0.0.0/8".parse().unwrap();
        assert!(net.contains("10.200.1.2".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        let one: IpCidr = "192.0.2.7".parse().unwrap();
        assert!(one.contains("192.0.2.7".parse().unwrap()));
        assert!(!one.contains("192.0.2.8".parse().unwrap()));
        let v6: IpCidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        let mapped: IpCidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains("10.3.4.5".parse().unwrap()));
        assert!(!mapped.contains("11.3.4.5".parse().unwrap()));
        assert!("::ffff:10.0.0.0/64".parse::<IpCidr>().is_err());
        let all: IpCidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "proxy",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
        ] {
            assert!(bad.parse::<IpCidr>().is_err(), "{bad}");
        }
    }

    fn nginx_escape(pem: &str) -> String {
        pem.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    #[test]
    fn header_formats() {
        let (_dir, _dev, ca, ca_key) = dev_material();
        let (cert, _) = issue_client_cert(
            &ca,
            &ca_key,
            &[(DnType::CommonName, "h")],
            &[],
            KeyAlg::EcdsaP256,
        )
        .unwrap();
        let der = der_of(&cert);
        let sf = format!(":{}:", STANDARD.encode(&der));
        assert_eq!(parse_cert_header(&sf).unwrap(), der);
        assert_eq!(parse_cert_header(&format!(" {sf} ")).unwrap(), der);
        assert_eq!(parse_cert_header(&nginx_escape(&cert)).unwrap(), der);
        // `+` in base64 must survive: only %XX is decoded.
        let raw_pem = cert.replace('\n', "%0A").replace(' ', "%20");
        assert_eq!(parse_cert_header(&raw_pem).unwrap(), der);
        for bad in [
            "",
            "::",
            ":!!!:",
            "not a cert",
            "%zz",
            "-----BEGIN%20CERTIFICATE-----",
        ] {
            assert!(parse_cert_header(bad).is_none(), "{bad:?}");
        }
    }

    #[actix_web::test]
    async fn proxy_header_trusted_only_from_listed_proxies() {
        let (_dir, dev, ca, ca_key) = dev_material();
        let trust = Arc::new(ClientCertTrust::new(Some(&dev.ca_cert)).unwrap());
        let (cert, _) = issue_client_cert(
            &ca,
            &ca_key,
            &[
                (DnType::OrganizationName, "Proxied"),
                (DnType::CommonName, "p1"),
            ],
            &[],
            KeyAlg::EcdsaP256,
        )
        .unwrap();
        let der = der_of(&cert);
        let sf = format!(":{}:", STANDARD.encode(&der));
        let source = |header: Option<&str>| {
            web::Data::new(
                ClientCertSource::new(
                    trust.clone(),
                    header.map(str::to_owned),
                    &["10.0.0.0/8".to_owned(), "::1".to_owned()],
                )
                .unwrap(),
            )
        };
        let request =
            |source: web::Data<ClientCertSource>, peer: &str, headers: &[(&str, &str)]| {
                let mut r = actix_web::test::TestRequest::default()
                    .peer_addr(peer.parse().unwrap())
                    .app_data(source);
                for (name, value) in headers {
                    r = r.insert_header((*name, *value));
                }
                r.to_http_request()
            };

        let client_cert = source(Some("Client-Cert"));
        let pc = peer_certificate(&request(
            client_cert.clone(),
            "10.1.2.3:4000",
            &[("client-cert", &sf)],
        ))
        .unwrap();
        assert_eq!(pc.subject_dn, "CN=p1,O=Proxied");
        assert!(pc.ca_verified);
        assert_eq!(pc.chain_len, 1);

        // RFC 9440 §2.3 chain header adds intermediates.
        let chain_value = format!(":{}:", STANDARD.encode(der_of(&ca)));
        let pc = peer_certificate(&request(
            client_cert.clone(),
            "[::1]:4000",
            &[("Client-Cert", &sf), ("Client-Cert-Chain", &chain_value)],
        ))
        .unwrap();
        assert_eq!((pc.chain_len, pc.ca_verified), (2, true));

        // From anywhere else the header is ignored.
        assert!(
            peer_certificate(&request(
                client_cert.clone(),
                "192.0.2.1:4000",
                &[("Client-Cert", &sf)]
            ))
            .is_none()
        );
        // No header configured: ignored even from a proxy.
        assert!(
            peer_certificate(&request(
                source(None),
                "10.1.2.3:4000",
                &[("Client-Cert", &sf)]
            ))
            .is_none()
        );
        // Another configured name, with nginx's escaped PEM.
        let nginx = source(Some("X-SSL-Client-Cert"));
        let pc = peer_certificate(&request(
            nginx.clone(),
            "10.9.9.9:1",
            &[("x-ssl-client-cert", &nginx_escape(&cert))],
        ))
        .unwrap();
        assert_eq!(
            pc.x5t_s256,
            PeerCertificate::from_der(&der, 1, false).unwrap().x5t_s256
        );
        assert!(
            peer_certificate(&request(nginx, "10.9.9.9:1", &[("client-cert", &sf)])).is_none(),
            "only the configured header counts"
        );
        // No app data at all: only connection certificates.
        assert!(
            peer_certificate(
                &actix_web::test::TestRequest::default()
                    .peer_addr("10.1.2.3:1".parse().unwrap())
                    .insert_header(("Client-Cert", sf.as_str()))
                    .to_http_request()
            )
            .is_none()
        );

        assert!(matches!(
            ClientCertSource::new(trust.clone(), Some("bad header".into()), &[]),
            Err(TlsError::HeaderName(_))
        ));
        assert!(matches!(
            ClientCertSource::new(trust, None, &["nope".into()]),
            Err(TlsError::TrustedProxy(_))
        ));
    }
}
