//! One keep-alive HTTP/1.1 connection over TLS, straight on hyper: the timed
//! loop's client. reqwest's layers (redirects, timeouts, header maps built
//! per request) cost the driver about twice the CPU per request; since the
//! driver shares the cores with the server under test, every microsecond it
//! spends is taken from the server.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

pub struct H1 {
    send: SendRequest<Full<Bytes>>,
    host: String,
    /// Where to reconnect when the server has closed the connection.
    url: String,
    tls: Arc<rustls::ClientConfig>,
}

impl H1 {
    /// Connects to `url`'s host and port and completes the TLS handshake.
    pub async fn connect(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<H1, String> {
        let u = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let host = u.host_str().ok_or("URL without host")?.to_string();
        let port = u.port_or_known_default().ok_or("URL without port")?;
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        tcp.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        let name = ServerName::try_from(host.clone()).map_err(|e| format!("{host}: {e}"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS to {host}:{port}: {e}"))?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP/1.1 to {host}:{port}: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(H1 {
            send,
            host: format!("{host}:{port}"),
            url: url.to_string(),
            tls,
        })
    }

    /// Sends one request and reads the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        form: Option<String>,
    ) -> Result<(u16, Bytes), String> {
        let (status, _, body) = self.request_h(method, url, headers, form).await?;
        Ok((status, body))
    }

    /// As [`H1::request`], with the response headers.
    pub async fn request_h(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        form: Option<String>,
    ) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
        let path = match url
            .find("://")
            .and_then(|i| url[i + 3..].find('/').map(|j| i + 3 + j))
        {
            Some(i) => &url[i..],
            None => "/",
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let body = match form {
            Some(f) => {
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    req = req.header("content-type", "application/x-www-form-urlencoded");
                }
                Full::new(Bytes::from(f))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| format!("request: {e}"))?;
        // A server may close a keep-alive connection that sat idle (the
        // flow's connections wait while the others log in): connect again,
        // as any client would.
        if self.send.is_closed() {
            *self = H1::connect(&self.url, self.tls.clone()).await?;
        }
        self.send
            .ready()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let res = self
            .send
            .send_request(req)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = res.status().as_u16();
        let (parts, body) = res.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("{method} {path}: body: {e}"))?
            .to_bytes();
        Ok((status, parts.headers, body))
    }
}

/// A browser's cookies, by name (enough for one site: the interaction
/// cookie is replaced by the next interaction's).
#[derive(Default)]
pub struct Jar {
    cookies: Vec<(String, String)>,
}

impl Jar {
    /// Takes the `Set-Cookie` headers of a response.
    pub fn store(&mut self, headers: &hyper::HeaderMap) {
        for v in headers.get_all("set-cookie") {
            let Ok(v) = v.to_str() else { continue };
            let mut attrs = v.split(';');
            let Some((name, value)) = attrs.next().and_then(|nv| nv.trim().split_once('=')) else {
                continue;
            };
            let expired = attrs.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
            self.cookies.retain(|(n, _)| n != name);
            if !expired {
                self.cookies.push((name.to_string(), value.to_string()));
            }
        }
    }

    /// The `Cookie` header value.
    pub fn header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// An `application/x-www-form-urlencoded` body.
pub fn form(fields: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::with_capacity(512));
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}
