//! What one client may hold of the server: connections, and the time a
//! request may take to arrive (issue 22 §3).
//!
//! - [`listen_tls`] puts every accepted TCP connection through
//!   [`Admission`] *before* the TLS handshake: a cap on the connections open
//!   on each listener (beyond it, new ones are closed at once) and on those
//!   from one source address (an IPv6 /64 counts as one address; beyond it,
//!   the address's oldest connection is closed), so one address cannot take
//!   the file descriptors that other clients, the database pool and health
//!   checks need.
//! - The handshake has a deadline (`server.tls_handshake_timeout_secs`),
//!   and the number of handshakes in progress is not limited below the
//!   connection cap: actix's default of 256 per worker let idle
//!   connections that never send a ClientHello hold every handshake slot,
//!   so real clients queued behind them for seconds.
//! - The request head has a deadline (actix's `client_request_timeout`,
//!   which times a connection's first head only, so a connection also may
//!   not go longer than [`Deadlines::idle`] without a request in
//!   progress), and [`read_deadline`] gives the body one, from the end of
//!   the head: a body that stalls is answered 408 and its connection
//!   closed.
//! - [`raise_fd_limit`] raises the soft `RLIMIT_NOFILE` to the hard limit,
//!   and [`ConnectionCaps::derive`] sizes the caps from what that leaves.

use std::any::Any;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_http::{HttpService, KeepAlive, Request, TlsAcceptorConfig};
use actix_service::{IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _};
use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{AppConfig, Extensions, Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::rt::net::TcpStream;
use actix_web::{HttpMessage as _, HttpResponse, ResponseError as _, web};

use crate::tls::IpCidr;

/// Descriptors kept back from connections besides the database pool: log
/// files, the data dir, outbound HTTPS (client `jwks_uri`, hooks), the
/// listening sockets, and slack for connections being refused.
const FD_RESERVE: u64 = 256;

/// How the caps of [`Admission`] were chosen, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCaps {
    /// Open connections per listener.
    pub per_listener: usize,
    /// Open connections per source address, over all listeners.
    pub per_ip: usize,
}

impl ConnectionCaps {
    /// The configured caps, or (for 0) caps that fit `fd_limit` descriptors
    /// with `reserve` kept back for the database pool: the rest is shared
    /// by the `listeners`, and one address may hold a quarter of a
    /// listener's share.
    #[must_use]
    pub fn derive(
        per_listener: usize,
        per_ip: usize,
        fd_limit: u64,
        reserve: u64,
        listeners: usize,
    ) -> ConnectionCaps {
        let spare = fd_limit.saturating_sub(reserve + FD_RESERVE);
        let share = usize::try_from(spare / listeners.max(1) as u64).unwrap_or(usize::MAX);
        let per_listener = if per_listener == 0 {
            share.max(16)
        } else {
            per_listener
        };
        let per_ip = if per_ip == 0 {
            (per_listener / 4).max(8)
        } else {
            per_ip
        };
        ConnectionCaps {
            per_listener,
            per_ip,
        }
    }
}

/// Raises the soft limit on open files to the hard limit where it is lower,
/// and returns the limit now in force (None where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct passed.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return None;
        }
        let soft = lim.rlim_cur;
        // An unlimited hard limit cannot be the soft one on Linux (nr_open
        // caps it); a million descriptors is far beyond any use here.
        let hard = if lim.rlim_max == libc::RLIM_INFINITY {
            1 << 20
        } else {
            lim.rlim_max
        };
        if soft != libc::RLIM_INFINITY && soft < hard {
            let raised = libc::rlimit {
                rlim_cur: hard,
                rlim_max: lim.rlim_max,
            };
            // SAFETY: setrlimit only reads the struct passed.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
                tracing::info!(from = soft, to = hard, "raised the open-file limit");
                return Some(hard);
            }
            tracing::warn!(
                limit = soft,
                hard,
                "could not raise the open-file limit to the hard limit"
            );
        }
        Some(if soft == libc::RLIM_INFINITY {
            1 << 20
        } else {
            soft
        })
    }
    #[cfg(not(unix))]
    None
}

const SHARDS: usize = 32;

/// One address's open connections, oldest first, each with the signal
/// that closes it.
type Shard = std::collections::BTreeMap<u64, Arc<tokio::sync::Notify>>;

/// Counts open connections per source address, over every listener, and
/// admits a new one only under the caps. The per-address counts live in
/// sharded maps, so accepting on several workers contends only when two
/// connections hash to the same shard, for one map operation.
pub struct Admission {
    per_ip: usize,
    exempt: Vec<IpCidr>,
    hasher: std::hash::RandomState,
    shards: Box<[Mutex<HashMap<IpAddr, Shard>>]>,
    next_id: AtomicU64,
    refused: AtomicU64,
    last_warning: AtomicU64,
}

impl Admission {
    /// `exempt` addresses (trusted proxies, which concentrate many clients
    /// on one address) are held only to the listener cap.
    #[must_use]
    pub fn new(per_ip: usize, exempt: Vec<IpCidr>) -> Arc<Admission> {
        Arc::new(Admission {
            per_ip,
            exempt,
            hasher: std::hash::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_id: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_warning: AtomicU64::new(0),
        })
    }

    /// Connections refused or closed so far for a cap.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn shard(&self, key: &IpAddr) -> &Mutex<HashMap<IpAddr, Shard>> {
        let i = self.hasher.hash_one(key) as usize % SHARDS;
        &self.shards[i]
    }

    /// The address connections are counted under: IPv4-mapped addresses as
    /// IPv4, IPv6 by /64 (what one subscriber is usually given).
    fn key(ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64))),
            v4 => v4,
        }
    }

    fn refuse(&self, why: &'static str, peer: Option<IpAddr>) {
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(peer = ?peer, why, "connection closed for a cap");
        // One warning every ten seconds at most, however hard the flood.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_warning.load(Ordering::Relaxed);
        if now >= last + 10
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(peer = ?peer, why, refused_total = n, "closing connections over the caps");
        }
    }
}

/// One listener's share of [`Admission`].
pub struct Gate {
    admission: Arc<Admission>,
    cap: usize,
    open: AtomicUsize,
}

impl Gate {
    #[must_use]
    pub fn new(admission: Arc<Admission>, cap: usize) -> Arc<Gate> {
        Arc::new(Gate {
            admission,
            cap,
            open: AtomicUsize::new(0),
        })
    }

    /// Connections open on this listener.
    #[must_use]
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a connection from `peer`, or None when the listener is full.
    /// An address at its cap gets the new connection, and its oldest one is
    /// told to close ([`Admitted::evicted`]): a client that shares an
    /// address with a flood still gets through, and the flood's own
    /// connections, older, are the ones that go. The guard gives the places
    /// back when dropped.
    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Option<Admitted> {
        if self.open.fetch_add(1, Ordering::AcqRel) >= self.cap {
            self.open.fetch_sub(1, Ordering::AcqRel);
            self.admission.refuse("listener full", peer);
            return None;
        }
        let evicted = Arc::new(tokio::sync::Notify::new());
        let key = peer
            .filter(|ip| !self.admission.exempt.iter().any(|n| n.contains(*ip)))
            .map(Admission::key);
        let id = self.admission.next_id.fetch_add(1, Ordering::Relaxed);
        if let Some(key) = key {
            let mut map = lock(self.admission.shard(&key));
            let conns = map.entry(key).or_default();
            let oldest = if conns.len() >= self.admission.per_ip {
                conns.pop_first()
            } else {
                None
            };
            conns.insert(id, evicted.clone());
            drop(map);
            if let Some((_, oldest)) = oldest {
                // A permit is stored if its connection is not waiting yet.
                oldest.notify_one();
                self.admission
                    .refuse("address at its cap: oldest closed", peer);
            }
        }
        Some(Admitted {
            gate: self.clone(),
            key,
            id,
            evicted,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An admitted connection's places; given back on drop.
pub struct Admitted {
    gate: Arc<Gate>,
    key: Option<IpAddr>,
    id: u64,
    evicted: Arc<tokio::sync::Notify>,
}

impl Admitted {
    /// Resolves when a newer connection from the same address took this
    /// one's place: the connection is then to be closed.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            let mut map = lock(self.gate.admission.shard(&key));
            if let Some(conns) = map.get_mut(&key) {
                conns.remove(&self.id);
                if conns.is_empty() {
                    map.remove(&key);
                }
            }
        }
        self.gate.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Timeouts of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub tls_handshake: Duration,
    pub request_head: Duration,
}

/// actix-http's keep-alive (its default): an idle connection is closed
/// this long after its last response.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

impl Deadlines {
    /// How long a connection may go without a request in progress, from
    /// its admission or its last response: the handshake or the keep-alive
    /// wait, then a head. actix-http times the head of a connection's
    /// first request only; a later head that stalls after a kept-alive
    /// response would hold the connection for ever without this.
    #[must_use]
    pub fn idle(&self) -> Duration {
        self.request_head + self.tls_handshake.max(KEEP_ALIVE)
    }
}

/// How long a connection must have had no request in progress before a
/// graceful shutdown closes it. A request whose bytes were already in the
/// socket (or the TLS buffer) when the signal came is parsed and started
/// well within it, so it is answered rather than dropped unanswered, which
/// is what actix-http's own drain does with a request it has read but not
/// started.
const DRAIN_QUIET: Duration = Duration::from_millis(250);

/// What a connection is doing, as the App sees it ([`read_deadline`]
/// marks each request): how many requests are in progress, and when the
/// last one ended.
#[derive(Debug)]
pub struct Activity {
    epoch: std::time::Instant,
    busy: AtomicUsize,
    /// Milliseconds from `epoch` to the end of the last request (0: none
    /// yet, so admission).
    last_ms: AtomicU64,
    /// The server is shutting down: every response from now on closes the
    /// connection after it ([`read_deadline`]).
    draining: AtomicBool,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            epoch: std::time::Instant::now(),
            busy: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            draining: AtomicBool::new(false),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::AcqRel);
        Busy(self.clone())
    }

    fn ended_at(&self, ms: u64) -> std::time::Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// Resolves once no request has been in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        let mut seen = self.last_ms.load(Ordering::Acquire);
        let mut wake = self.ended_at(seen) + limit;
        loop {
            tokio::time::sleep_until(wake.into()).await;
            if self.busy.load(Ordering::Acquire) > 0 {
                wake = std::time::Instant::now() + limit;
                continue;
            }
            let last = self.last_ms.load(Ordering::Acquire);
            if last != seen {
                seen = last;
                wake = self.ended_at(seen) + limit;
                continue;
            }
            return;
        }
    }

    /// Resolves once a graceful shutdown has begun and no request has been
    /// in progress for [`DRAIN_QUIET`]; from the shutdown on, each response
    /// closes its connection. A connection quiet that long already is
    /// closed at once: its client may send a request just then, as it may
    /// when any idle connection is closed, but one that sends requests back
    /// to back has its next one answered.
    async fn drained(&self, shutdown: &actix_server::GracefulShutdownSignal) {
        shutdown.notified().await;
        self.draining.store(true, Ordering::Release);
        self.idle_for(DRAIN_QUIET).await;
    }
}

/// A request in progress on its connection's [`Activity`].
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let ms = u64::try_from(self.0.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ms.store(ms.max(1), Ordering::Release);
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The [`Activity`] of each open connection of one listener, by peer
/// address, so the `on_connect` callback (which sees only the TLS stream) can put it in
/// the connection's extensions for [`read_deadline`]. Sharded like
/// [`Admission`]; one insert, one lookup and one removal per connection.
pub struct Registry {
    hasher: std::hash::RandomState,
    shards: Box<[Mutex<ByPeer>]>,
}

impl Registry {
    #[must_use]
    pub fn new() -> Arc<Registry> {
        Arc::new(Registry {
            hasher: std::hash::RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        })
    }

    fn shard(&self, peer: &std::net::SocketAddr) -> &Mutex<ByPeer> {
        &self.shards[self.hasher.hash_one(peer) as usize % SHARDS]
    }

    fn register(self: &Arc<Self>, peer: std::net::SocketAddr) -> Registered {
        let activity = Activity::new();
        lock(self.shard(&peer)).insert(peer, activity.clone());
        Registered {
            registry: self.clone(),
            peer,
            activity,
        }
    }

    fn get(&self, peer: &std::net::SocketAddr) -> Option<Arc<Activity>> {
        lock(self.shard(peer)).get(peer).cloned()
    }
}

/// One shard of the [`Registry`].
type ByPeer = HashMap<std::net::SocketAddr, Arc<Activity>>;

/// A connection's entry in the [`Registry`]; removed on drop.
struct Registered {
    registry: Arc<Registry>,
    peer: std::net::SocketAddr,
    activity: Arc<Activity>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(self.registry.shard(&self.peer)).remove(&self.peer);
    }
}

/// The `on_connect` callback's type (see [`crate::tls::on_connect`]).
pub type OnConnect = Arc<dyn Fn(&dyn Any, &mut Extensions) + Send + Sync>;

/// Adds a TLS listener to `builder`, as actix-web's
/// `HttpServer::listen_rustls_0_23` does, with every accepted connection
/// passing [`Gate::admit`] before its handshake, the handshake under
/// `deadlines.tls_handshake` and the request head under
/// `deadlines.request_head`.
///
/// `HttpServer` has no hook before the handshake, so the server is built
/// on actix-server directly; the app sees the same `AppConfig` (secure,
/// host = the listening address) as under `HttpServer`.
#[allow(clippy::too_many_arguments)]
pub fn listen_tls<F, I, S, B>(
    builder: actix_server::ServerBuilder,
    name: &str,
    lst: std::net::TcpListener,
    app: F,
    tls: rustls::ServerConfig,
    gate: Arc<Gate>,
    deadlines: Deadlines,
    on_connect: OnConnect,
) -> std::io::Result<actix_server::ServerBuilder>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<actix_web::dev::Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let addr = lst.local_addr()?;
    let host = addr.to_string();
    let shutdown = builder.graceful_shutdown_signal();
    // One per listener: a client may connect to both listeners from the
    // same source port, but not twice to one while the first is open.
    let registry = Registry::new();
    builder.listen(name, lst, move || {
        let shutdown = shutdown.clone();
        let on_connect = on_connect.clone();
        let host = host.clone();
        let lookup = registry.clone();
        let app = app()
            .into_factory()
            .map_err(|err| err.into().error_response());
        // No `graceful_shutdown_signal`: the connection's own drain
        // ([`Activity::drained`]) closes it once it is quiet.
        let http = HttpService::build()
            .keep_alive(KeepAlive::default())
            .client_request_timeout(deadlines.request_head)
            .client_disconnect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .on_connect_ext(move |io: &TlsStream<TcpStream>, ext: &mut Extensions| {
                (on_connect)(io as &dyn Any, ext);
                if let Some(activity) = io.get_ref().0.peer_addr().ok().and_then(|p| lookup.get(&p))
                {
                    ext.insert(activity);
                }
            })
            .finish(actix_service::map_config(app, move |()| {
                // Semver-exempt in actix-web, but the only way to give the
                // app what HttpServer gives it; a change fails the build.
                AppConfig::__priv_test_new(true, host.clone(), addr)
            }))
            .rustls_0_23_with_config(
                tls.clone(),
                TlsAcceptorConfig::default().handshake_timeout(deadlines.tls_handshake),
            );
        let gate = gate.clone();
        let registry = registry.clone();
        let shutdown = shutdown.clone();
        let idle = deadlines.idle();
        actix_service::apply_fn_factory(http, move |io: TcpStream, svc: &_| {
            let peer = io.peer_addr().ok();
            let shutdown = shutdown.clone();
            let admitted = gate.admit(peer.map(|a| a.ip()));
            let registered = admitted
                .is_some()
                .then(|| peer.map(|p| registry.register(p)))
                .flatten();
            let call = admitted.is_some().then(|| {
                // The handshake's flight leaves in several writes: without
                // this, each after the first may wait for the client's ACK.
                let _ = io.set_nodelay(true);
                Service::call(svc, io)
            });
            async move {
                let (Some(admitted), Some(call)) = (admitted, call) else {
                    return Ok(());
                };
                let idle_too_long = async {
                    match &registered {
                        Some(r) => r.activity.idle_for(idle).await,
                        None => std::future::pending().await,
                    }
                };
                // SIGTERM: actix-server closes the listeners; each open
                // connection ends here once quiet, or by itself after a
                // response that closed it. One without an entry (no peer
                // address) is left to the worker's shutdown timeout.
                let drained = async {
                    match &registered {
                        Some(r) => r.activity.drained(&shutdown).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    result = call => result,
                    () = admitted.evicted() => Ok(()),
                    () = idle_too_long => Ok(()),
                    () = drained => Ok(()),
                }
            }
        })
    })
}

/// Limits of [`read_deadline`].
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// From the end of the head to the last byte of the body.
    pub timeout: Duration,
    /// Above this no route takes a body (the largest route limit).
    pub max_bytes: usize,
}

/// Middleware: reads the whole request body, when there is one, within
/// `limits.timeout` from the end of the head, and hands it on to the route
/// (whose own extractor limits then apply). A body that has not arrived by
/// then is answered 408 and the connection closed (RFC 9110 §15.5.9); one
/// declared or found larger than `limits.max_bytes`, 413.
///
/// Every route runs behind it (it wraps the App), so no handler's
/// `web::Bytes` or `web::Form` can wait on a stalled client.
pub async fn read_deadline<B: MessageBody>(
    limits: BodyLimits,
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    // The connection is busy until the response is ready (see
    // `Deadlines::idle`).
    let activity = req.conn_data::<Arc<Activity>>().cloned();
    let _busy = activity.as_ref().map(Activity::begin);
    let mut res = read_body(limits, req, next).await?;
    if activity.is_some_and(|a| a.draining.load(Ordering::Acquire)) {
        // The client does not send its next request here: the listener is
        // closed and this connection ends once quiet.
        res.response_mut()
            .head_mut()
            .set_connection_type(actix_web::http::ConnectionType::Close);
    }
    Ok(res)
}

async fn read_body<B: MessageBody>(
    limits: BodyLimits,
    mut req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, actix_web::Error> {
    let head = req.head();
    let declared = head
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = head.headers.contains_key(header::TRANSFER_ENCODING);
    // HTTP/2 may send DATA frames without a content-length; an empty
    // stream ends at once.
    let has_body = match declared {
        Some(n) => n > 0,
        None => chunked || head.version == actix_web::http::Version::HTTP_2,
    };
    if !has_body {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return Ok(refuse_too_large(req));
    }
    let mut payload = req.take_payload();
    let capacity = declared.map_or(0, |n| n as usize);
    let read = tokio::time::timeout(limits.timeout, async {
        let mut buf = web::BytesMut::with_capacity(capacity);
        while let Some(chunk) =
            std::future::poll_fn(|cx| futures_core::Stream::poll_next(Pin::new(&mut payload), cx))
                .await
        {
            let chunk = chunk?;
            if buf.len() + chunk.len() > limits.max_bytes {
                return Ok(None);
            }
            buf.extend_from_slice(&chunk);
        }
        Ok::<_, actix_web::error::PayloadError>(Some(buf.freeze()))
    })
    .await;
    match read {
        Err(_) => {
            tracing::debug!(path = req.path(), "request body not received in time");
            Ok(refuse(req, HttpResponse::RequestTimeout()))
        }
        Ok(Ok(None)) => Ok(refuse_too_large(req)),
        Ok(Err(e)) => {
            let res = e.error_response();
            Ok(req.into_response(res).map_into_right_body())
        }
        Ok(Ok(Some(body))) => {
            req.set_payload(Payload::from(body));
            let res = next.call(req).await?;
            // A route's own, smaller limit (its `web::Bytes` extractor)
            // answers in actix's plain text: said as OAuth says errors.
            let json = res
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            if res.status() == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE && !json {
                let (req, _) = res.into_parts();
                let res = too_large(HttpResponse::PayloadTooLarge());
                return Ok(ServiceResponse::new(req, res).map_into_right_body());
            }
            Ok(res.map_into_left_body())
        }
    }
}

/// RFC 6749 §5.2's error object for a body above a limit (413): the
/// endpoints' clients read errors as JSON.
fn too_large(mut res: actix_web::HttpResponseBuilder) -> HttpResponse {
    res.insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({
            "error": "invalid_request",
            "error_description": "the request body is too large",
        }))
}

/// 413 with the OAuth error object; the connection closes, as in [`refuse`].
fn refuse_too_large<B>(req: ServiceRequest) -> ServiceResponse<EitherBody<B>> {
    let mut res = HttpResponse::PayloadTooLarge();
    res.force_close();
    req.into_response(too_large(res)).map_into_right_body()
}

fn refuse<B>(
    req: ServiceRequest,
    mut res: actix_web::HttpResponseBuilder,
) -> ServiceResponse<EitherBody<B>> {
    // The rest of the body may never come: the connection cannot be reused.
    let res = res
        .force_close()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish();
    req.into_response(res).map_into_right_body()
}

#[cfg(test)]
mod tests {
    use std::future::Future as _;

    use super::*;

    #[test]
    fn caps_from_the_fd_limit() {
        let c = ConnectionCaps::derive(0, 0, 20_000, 16, 2);
        assert_eq!(c.per_listener, (20_000 - 16 - 256) / 2);
        assert_eq!(c.per_ip, c.per_listener / 4);
        let c = ConnectionCaps::derive(100, 7, 20_000, 16, 2);
        assert_eq!((c.per_listener, c.per_ip), (100, 7));
        // A tiny limit still admits a few.
        let c = ConnectionCaps::derive(0, 0, 100, 16, 2);
        assert_eq!((c.per_listener, c.per_ip), (16, 8));
    }

    #[test]
    fn admission_counts_per_address_and_listener() {
        let admission = Admission::new(2, vec!["10.0.0.0/8".parse().unwrap()]);
        let a = Gate::new(admission.clone(), 3);
        let b = Gate::new(admission.clone(), 10);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let evicted = |c: &Admitted| {
            let mut f = std::pin::pin!(c.evicted());
            let waker = std::task::Waker::noop();
            f.as_mut()
                .poll(&mut std::task::Context::from_waker(waker))
                .is_ready()
        };
        let first = a.admit(Some(ip)).unwrap();
        let second = b.admit(Some(ip)).unwrap();
        assert!(!evicted(&first) && !evicted(&second));
        // The address cap spans listeners; the oldest gives way, and mapped
        // IPv4 is the same address.
        let third = b.admit(Some("::ffff:192.0.2.1".parse().unwrap())).unwrap();
        assert!(evicted(&first));
        assert!(!evicted(&second) && !evicted(&third));
        drop(first);
        let fourth = a.admit(Some(ip)).unwrap();
        assert!(evicted(&second) && !evicted(&third));
        drop((second, third, fourth));
        // IPv6 counts per /64.
        let v6a = a.admit(Some("2001:db8::1".parse().unwrap())).unwrap();
        let v6b = a.admit(Some("2001:db8::2".parse().unwrap())).unwrap();
        let other = b.admit(Some("2001:db8:0:1::3".parse().unwrap())).unwrap();
        assert!(!evicted(&v6a) && !evicted(&v6b) && !evicted(&other));
        let v6c = b.admit(Some("2001:db8::3".parse().unwrap())).unwrap();
        assert!(evicted(&v6a) && !evicted(&other));
        drop((v6a, v6b, v6c, other));
        // Proxies are held only to the listener cap, which refuses.
        let proxy: IpAddr = "10.1.1.1".parse().unwrap();
        let held: Vec<_> = (0..3).map(|_| a.admit(Some(proxy)).unwrap()).collect();
        assert!(held.iter().all(|c| !evicted(c)));
        assert_eq!(a.open(), 3);
        assert!(a.admit(Some(proxy)).is_none());
        assert!(a.admit(Some("192.0.2.9".parse().unwrap())).is_none());
        drop(held);
        assert_eq!((a.open(), b.open()), (0, 0));
        assert!(admission.shards.iter().all(|s| lock(s).is_empty()));
        assert_eq!(admission.refused(), 5);
    }
}
