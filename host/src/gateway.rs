//! The browser gateway (`--http`, section B), written once for every runtime.
//!
//! An HTTP/1.1 listener served by hyper, on a thread of its own: `GET /` the web client
//! (`host/src/web/`, embedded in the binary), `GET /ws` a member's WebSocket, `GET
//! /metrics` the room's counters ([`Metrics`]), `GET /healthz` `ok`. Each HTTP connection
//! is a task on that thread's executor (async-io), done within [`HTTP_TIMEOUT`], at most
//! [`MAX_HTTP_CONNECTIONS`] at once; the gateway serves pages and upgrades, never chat, so
//! one thread is plenty, and a burst of upgrades starts no thread.
//!
//! An upgrade to `/ws` whose `Origin` is the gateway's own, or one allowed with
//! `--http-allow-origin`, gets its `101` from tungstenite's handshake; hyper then gives the
//! socket back, and the runtime hands it to the driver ([`Input::Upgraded`]), where it is a
//! room connection like any other, read and written by the runtime's own reader and writer,
//! with [`WebSocket`](crate::websocket::WebSocket) framing in the driver. So
//! `--max-connections`, S8, S9, S12 and S13 hold for browser members as they do on the
//! ChatHTTP port. With TLS flags the gateway serves HTTPS and WSS with the same pair (T4).
//!
//! [`Input::Upgraded`]: crate::Input::Upgraded

use std::cell::RefCell;
use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{self, Read};
use std::net::IpAddr;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::thread;
use std::time::{Duration, Instant};

use async_executor::LocalExecutor;
use async_io::{Async, Timer};
use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite, FutureExt, future};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::rt::ReadBufCursor;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};

use crate::Settings;
use crate::metrics::Metrics;
use crate::tls::Tls;

/// HTTP connections served at once (page loads, scrapes, upgrades in progress); more are
/// closed at once. Upgraded WebSockets do not count: they are room connections, under
/// `--max-connections`.
pub const MAX_HTTP_CONNECTIONS: usize = 256;

/// HTTP connections served at once for one address, so that one host cannot take every
/// place (a browser opens six at most). Loopback addresses are exempt: a reverse proxy on the
/// same machine brings every browser from one address, and limits per client are its job.
pub const MAX_HTTP_CONNECTIONS_PER_PEER: usize = 16;

/// How long an upgraded socket waits before it is offered to a driver whose channel was
/// full again.
const HAND_OVER_RETRY: Duration = Duration::from_millis(5);

/// The longest an HTTP connection may take, the request timeout (S9) if shorter: a page,
/// a scrape or an upgrade takes milliseconds, and a connection that sends nothing holds a
/// place.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The page's Content-Security-Policy (B2): its own script and style, WebSockets to its
/// own origin, nothing inline, nothing from elsewhere, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const APP_CSS: &str = include_str!("web/app.css");

/// A socket the gateway upgraded to a WebSocket, for the driver: what hyper read past the
/// request, and the TLS session it ran in (T4).
#[derive(Debug)]
pub struct Upgrade {
    pub(crate) read: Bytes,
    pub(crate) tls: Option<Box<rustls::ServerConnection>>,
}

/// What the gateway needs to know, from the command line.
#[derive(Debug, Clone)]
pub struct GatewaySettings {
    /// `--http`.
    pub bind: SocketAddr,
    /// `--http-allow-origin`, each as `scheme://host[:port]`, lower case.
    pub allow_origins: Vec<String>,
    /// S9's request timeout: the longest any HTTP read or write may wait.
    pub timeout: Duration,
    /// S8's limit, for the upgraded sockets' send buffers (see [`tune_socket`](crate::tune_socket)).
    pub max_output_bytes: usize,
}

/// The gateway's listener, bound and not yet served (see [`listen_http`]).
#[derive(Debug)]
pub struct Listening {
    listener: TcpListener,
    settings: GatewaySettings,
    tls: Option<Arc<Tls>>,
}

/// With `--http`: binds it and prints `http listening on ADDR`. Call it before
/// [`listen`](crate::listen), whose line then says that both accept. If the address
/// cannot be bound, prints one line to standard error and exits 1.
pub fn listen_http(settings: &Settings) -> Option<Listening> {
    let http = settings.http.clone()?;
    let listener = crate::socket::announce(http.bind, "http ");
    Some(Listening {
        listener,
        settings: http,
        tls: settings.tls.clone(),
    })
}

impl Listening {
    /// Serves the listener on a thread of its own. `hand_over` gives each upgraded socket
    /// to the runtime, which makes it its stream type and sends the driver
    /// [`Input::Upgraded`](crate::Input::Upgraded). It must not wait: when the driver's
    /// channel is full it gives the socket back, and the gateway tries again shortly.
    pub fn serve(
        self,
        metrics: Arc<Metrics>,
        hand_over: impl Fn(TcpStream, Upgrade) -> Result<(), (TcpStream, Upgrade)>
        + Send
        + Sync
        + 'static,
    ) {
        let gateway = Arc::new(Gateway {
            settings: self.settings,
            tls: self.tls,
            metrics,
            hand_over: Box::new(hand_over),
            serving: Mutex::default(),
        });
        let listener = self.listener;
        thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                let executor = LocalExecutor::new();
                async_io::block_on(executor.run(gateway.accept_loop(&executor, listener)));
            })
            .expect("one thread can be spawned at start-up");
    }
}

/// How the gateway gives an upgraded socket to the runtime (see [`Listening::serve`]).
type HandOver = dyn Fn(TcpStream, Upgrade) -> Result<(), (TcpStream, Upgrade)> + Send + Sync;

struct Gateway {
    settings: GatewaySettings,
    tls: Option<Arc<Tls>>,
    metrics: Arc<Metrics>,
    hand_over: Box<HandOver>,
    /// HTTP connections being served, by the peer's address (see [`Gateway::admit`]).
    serving: Mutex<HashMap<IpAddr, usize>>,
}

/// Whom a place is counted against: an IPv4 peer seen through an IPv6 socket as itself,
/// and an IPv6 peer by its /64, which one host can pick any address of.
fn peer_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) if !v6.is_loopback() => {
            let network = u128::from(v6) & !((1_u128 << 64) - 1);
            IpAddr::V6(network.into())
        }
        other => other,
    }
}

/// An HTTP connection's place (see [`Gateway::admit`]), given back when dropped, however
/// the connection's task ends.
struct Place {
    gateway: Arc<Gateway>,
    peer: IpAddr,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut serving = self
            .gateway
            .serving
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = serving.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                serving.remove(&self.peer);
            }
        }
    }
}

impl Gateway {
    async fn accept_loop(self: &Arc<Self>, executor: &LocalExecutor<'_>, listener: TcpListener) {
        let listener = match Async::new(listener) {
            Ok(listener) => listener,
            Err(error) => return tracing::error!(%error, "the gateway cannot listen"),
        };
        let (mut turned_away, mut last_warning) = (0_u64, None);
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    crate::accept_failed(&error);
                    Timer::after(crate::ACCEPT_BACKOFF).await;
                    continue;
                }
            };
            // A thousand connections waiting to be accepted are all ready at once: let the
            // others' tasks run between them.
            future::yield_now().await;
            let Some(place) = self.admit(peer.ip()) else {
                turned_away += 1;
                if last_warning.is_none_or(|at: Instant| at.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(%peer, turned_away, "too many HTTP connections at once; closing");
                    last_warning = Some(Instant::now());
                }
                continue;
            };
            let gateway = Arc::clone(self);
            let served = async move {
                // A fault in one connection must not end the thread every other one runs on.
                let served = AssertUnwindSafe(gateway.serve_connection(stream));
                if served.catch_unwind().await.is_err() {
                    tracing::error!(%peer, "an HTTP connection's task panicked; dropped it");
                }
                drop(place);
            };
            executor.spawn(served).detach();
        }
    }

    /// A place among the HTTP connections served at once, if `peer` may have one: at most
    /// [`MAX_HTTP_CONNECTIONS`] in all and [`MAX_HTTP_CONNECTIONS_PER_PEER`] from one address.
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Place> {
        let peer = peer_key(peer);
        let mut serving = self.serving.lock().unwrap_or_else(PoisonError::into_inner);
        let total: usize = serving.values().sum();
        let mine = serving.get(&peer).copied().unwrap_or(0);
        let crowded = mine >= MAX_HTTP_CONNECTIONS_PER_PEER && !peer.is_loopback();
        if total >= MAX_HTTP_CONNECTIONS || crowded {
            return None;
        }
        serving.insert(peer, mine + 1);
        Some(Place {
            gateway: Arc::clone(self),
            peer,
        })
    }

    /// Serves one HTTP connection, all of it within the request timeout (S9).
    async fn serve_connection(&self, io: Async<TcpStream>) {
        let deadline = async {
            Timer::after(self.settings.timeout.min(HTTP_TIMEOUT)).await;
            tracing::debug!("HTTP connection not done within the request timeout");
        };
        future::or(self.serve_io(io), deadline).await;
    }

    async fn serve_io(&self, io: Async<TcpStream>) {
        let Some(tls) = &self.tls else {
            return self.serve_http(io, |io| (io, None)).await;
        };
        match futures_rustls::TlsAcceptor::from(tls.config())
            .accept(io)
            .await
        {
            Ok(io) => {
                self.serve_http(io, |io| {
                    let (io, connection) = io.into_inner();
                    (io, Some(connection))
                })
                .await;
            }
            Err(error) => tracing::info!(%error, "HTTPS handshake failed"),
        }
    }

    /// Serves HTTP on `io`; if the request is an upgrade, `into_parts` gives back the socket
    /// and the TLS session, for the driver.
    async fn serve_http<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
        &self,
        io: T,
        into_parts: impl FnOnce(T) -> (Async<TcpStream>, Option<rustls::ServerConnection>),
    ) {
        let upgrade: Rc<RefCell<Option<OnUpgrade>>> = Rc::default();
        let service = service_fn(|mut request: Request<Incoming>| {
            let response = self.respond(&mut request, &upgrade);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new()
            .keep_alive(false)
            .header_read_timeout(None)
            .serve_connection(Io(io), service)
            .with_upgrades();
        if let Err(error) = connection.await {
            tracing::debug!(%error, "HTTP connection ended");
            return;
        }
        let Some(on_upgrade) = upgrade.borrow_mut().take() else {
            return;
        };
        let parts = match on_upgrade.await.map(|up| up.downcast::<Io<T>>()) {
            Ok(Ok(parts)) => parts,
            _ => return tracing::debug!("an upgraded connection was lost before the room took it"),
        };
        let (io, mut tls) = into_parts(parts.io.0);
        let mut read = parts.read_buf;
        if let Some(connection) = &mut tls {
            read = take_plaintext(connection, read);
        }
        // The runtime's stream takes the socket over, in the mode the runtime wants.
        let Ok(stream) = io.into_inner() else { return };
        if stream.set_nonblocking(false).is_err() {
            return;
        }
        crate::tune_socket(&stream, self.settings.max_output_bytes);
        self.metrics.upgraded();
        let mut upgraded = (
            stream,
            Upgrade {
                read,
                tls: tls.map(Box::new),
            },
        );
        // A full channel is the driver's backpressure: this task waits, the thread's other
        // connections go on, and the connection's deadline still holds.
        while let Err(back) = (self.hand_over)(upgraded.0, upgraded.1) {
            upgraded = back;
            Timer::after(HAND_OVER_RETRY).await;
        }
    }

    /// The response to one request; an accepted upgrade leaves its future in `upgrade`.
    fn respond(
        &self,
        request: &mut Request<Incoming>,
        upgrade: &RefCell<Option<OnUpgrade>>,
    ) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match request.uri().path() {
            "/" => page(INDEX_HTML, "text/html; charset=utf-8"),
            "/app.js" => page(APP_JS, "text/javascript; charset=utf-8"),
            "/app.css" => page(APP_CSS, "text/css; charset=utf-8"),
            "/healthz" => plain(StatusCode::OK, "ok\n"),
            "/metrics" => {
                let mut response = plain(StatusCode::OK, &self.metrics.encode());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                response
            }
            "/ws" => {
                if !origin_allowed(request, &self.settings.allow_origins) {
                    self.metrics.foreign_origin();
                    tracing::info!(
                        origin = ?request.headers().get(header::ORIGIN),
                        "WebSocket refused: foreign Origin (B2)"
                    );
                    return plain(StatusCode::FORBIDDEN, "this Origin may not open /ws\n");
                }
                match tungstenite::handshake::server::create_response_with_body(request, || {
                    Full::new(Bytes::new())
                }) {
                    Ok(response) => {
                        *upgrade.borrow_mut() = Some(hyper::upgrade::on(request));
                        response
                    }
                    Err(error) => plain(
                        StatusCode::BAD_REQUEST,
                        &format!("not a WebSocket upgrade: {error}\n"),
                    ),
                }
            }
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// B2: a browser always says where the page that opens a WebSocket came from. The gateway's
/// own pages and the `--http-allow-origin` ones may; other sites may not, so a page
/// elsewhere cannot join the room in its visitor's name. The gateway's own origin is the
/// `Host` the browser used (over HTTP or HTTPS, so a TLS-terminating proxy in front changes
/// nothing) when that is an IP address or `localhost`: a name there could be a hostile
/// site's own name made to point at this server (DNS rebinding), so a name counts only if
/// `--http-allow-origin` lists it. A client that is not a browser sends no `Origin` and is
/// let in, as on the ChatHTTP port.
fn origin_allowed(request: &Request<Incoming>, allowed: &[String]) -> bool {
    let Some(origin) = request.headers().get(header::ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let origin = origin.to_ascii_lowercase();
    if allowed.contains(&origin) {
        return true;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_ascii_lowercase);
    let Some(host) = host.filter(|host| cannot_be_rebound(host)) else {
        return false;
    };
    let own = |scheme: &str| origin.strip_prefix(scheme) == Some(host.as_str());
    own("http://") || own("https://")
}

/// Whether a `Host` value (`HOST[:PORT]`) names the server by address, or as `localhost`.
fn cannot_be_rebound(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => {
            return v6
                .split_once(']')
                .is_some_and(|(address, _)| address.parse::<std::net::Ipv6Addr>().is_ok());
        }
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok()
}

/// A page of the web client, with the headers that keep a peer's text from ever running
/// as code in it (B2, C1).
fn page(body: &'static str, content_type: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

fn plain(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Appends to `read` what rustls decrypted and hyper did not read: frames a client sent
/// right behind its request.
fn take_plaintext(connection: &mut rustls::ServerConnection, read: Bytes) -> Bytes {
    let mut plaintext = read.to_vec();
    let mut chunk = [0; 4096];
    while let Ok(n) = connection.reader().read(&mut chunk) {
        if n == 0 {
            break;
        }
        plaintext.extend_from_slice(&chunk[..n]);
    }
    Bytes::from(plaintext)
}

/// A futures-io stream as hyper's IO.
struct Io<T>(T);

impl<T: AsyncRead + Unpin> hyper::rt::Read for Io<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let mut chunk = [0; 4096];
        let room = buf.remaining().min(chunk.len());
        Pin::new(&mut self.get_mut().0)
            .poll_read(cx, &mut chunk[..room])
            .map_ok(|n| buf.put_slice(&chunk[..n]))
    }
}

impl<T: AsyncWrite + Unpin> hyper::rt::Write for Io<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway() -> Arc<Gateway> {
        Arc::new(Gateway {
            settings: GatewaySettings {
                bind: "127.0.0.1:0".parse().expect("an address"),
                allow_origins: Vec::new(),
                timeout: Duration::from_secs(1),
                max_output_bytes: 1 << 20,
            },
            tls: None,
            metrics: Arc::default(),
            hand_over: Box::new(|_, _| Ok(())),
            serving: Mutex::default(),
        })
    }

    #[test]
    fn b1_one_address_gets_a_share_of_the_places_and_gives_them_back() {
        let gateway = gateway();
        let host: IpAddr = "192.0.2.7".parse().expect("an address");
        let places: Vec<Place> = (0..MAX_HTTP_CONNECTIONS_PER_PEER)
            .map(|_| gateway.admit(host).expect("a place"))
            .collect();
        assert!(gateway.admit(host).is_none(), "one host has its share");
        let other: IpAddr = "192.0.2.8".parse().expect("an address");
        assert!(gateway.admit(other).is_some(), "another host still gets in");
        drop(places);
        assert!(
            gateway.admit(host).is_some(),
            "places come back when connections end"
        );
    }

    #[test]
    fn b1_places_are_counted_per_host_not_per_spelling() {
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().expect("an address");
        assert!(
            peer_key(mapped).is_loopback(),
            "a proxy through an IPv6 socket"
        );
        let (a, b): (IpAddr, IpAddr) = (
            "2001:db8:1:2::1".parse().expect("an address"),
            "2001:db8:1:2:ffff::9".parse().expect("an address"),
        );
        assert_eq!(peer_key(a), peer_key(b), "one /64, one host");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("an address");
        assert_ne!(peer_key(a), peer_key(other));
    }

    #[test]
    fn b1_a_proxy_on_loopback_is_limited_only_by_the_total() {
        let gateway = gateway();
        let proxy: IpAddr = "127.0.0.1".parse().expect("an address");
        let places: Vec<Place> = (0..MAX_HTTP_CONNECTIONS)
            .map(|_| gateway.admit(proxy).expect("a place"))
            .collect();
        assert_eq!(places.len(), MAX_HTTP_CONNECTIONS);
        assert!(gateway.admit(proxy).is_none(), "the total still holds");
    }

    #[test]
    fn b2_only_an_address_or_localhost_in_host_can_be_the_gateways_own() {
        for host in [
            "127.0.0.1:8080",
            "[::1]:8080",
            "localhost:8080",
            "10.0.0.1",
            "localhost",
        ] {
            assert!(cannot_be_rebound(host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "chat.example.org",
            "localhost.evil.example:80",
            "[::1",
        ] {
            assert!(!cannot_be_rebound(host), "{host}");
        }
    }
}
