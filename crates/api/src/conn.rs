//! Client connections to the gRPC port: accepted, counted, made TLS, timed out.
//!
//! Raven binds its own listener and hands tonic a stream of [`Conn`]s, so the parts of
//! a connection's life that HTTP/2 does not cover are decided here:
//!
//! * **How many.** At most `max_connections` are served. One beyond is still accepted
//!   and every call on it answered `RESOURCE_EXHAUSTED` naming the limit, then closed
//!   after [`REFUSED_LIFETIME`] (a client learns why instead of seeing a reset); past a
//!   further quarter of the limit, connections are closed at once. Either way the hit
//!   is counted (`raven_limit_hits_total{limit="connections"}`).
//! * **TLS.** The handshake runs in its own task, within [`HANDSHAKE_TIMEOUT`], so a
//!   client that connects and sends nothing holds neither the accept loop nor, past
//!   that timeout, a connection slot.
//! * **Idle.** A connection with no call open for `idle_timeout` is closed
//!   (`limit="idle_timeout"`). A `Subscribe` stream is a call for as long as it lasts,
//!   so only connections that carry nothing are closed. The timer lives in the
//!   connection's read path: the HTTP/2 server always waits to read, so a timer polled
//!   there wakes it without a task per connection.
//!
//! * **Guessing.** A connection whose calls failed authentication
//!   [`MAX_AUTH_FAILURES`] times is closed (`limit="auth_failures"`): trying tokens
//!   costs a new connection (and TLS handshake) every few guesses, within
//!   `max_connections`, instead of one cheap HTTP/2 stream each.
//!
//! What each call needs to know of its connection (address, client-certificate
//! names, open calls) travels as [`ConnInfo`] in the request's extensions.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Sleep;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::tls::{client_names, Tls};

/// How long a TLS handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Failed authentications a connection may have before it is closed.
pub const MAX_AUTH_FAILURES: u32 = 8;

/// How long a connection beyond `max_connections` is kept to answer why.
pub const REFUSED_LIFETIME: Duration = Duration::from_secs(2);

/// The connection limits.
#[derive(Debug, Clone)]
pub struct ConnLimits {
    pub max_connections: usize,
    /// Calls (streams) open at once on one connection.
    pub max_calls_per_connection: usize,
    /// `None`: connections without calls stay open.
    pub idle_timeout: Option<Duration>,
}

impl Default for ConnLimits {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_calls_per_connection: 100,
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }
}

/// What calls know of their connection; cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnInfo(Arc<ConnState>);

#[derive(Debug)]
struct ConnState {
    peer: SocketAddr,
    /// Names of the verified client certificate; empty without one.
    cert_names: Vec<String>,
    /// Why every call is refused (the server is at `max_connections`).
    refused: Option<String>,
    calls: AtomicUsize,
    /// Calls that failed authentication.
    auth_failures: AtomicU32,
    /// When the last call ended, in ms since `born`.
    idle_since_ms: AtomicU64,
    born: Instant,
    _counted: Counted,
}

impl ConnInfo {
    pub fn peer(&self) -> SocketAddr {
        self.0.peer
    }

    pub fn cert_names(&self) -> &[String] {
        &self.0.cert_names
    }

    /// Why calls on this connection are refused, if they are.
    pub fn refused(&self) -> Option<&str> {
        self.0.refused.as_deref()
    }

    /// Counts a call that failed authentication; true when that was the last the
    /// connection may have (it closes at its next read).
    pub fn auth_failed(&self) -> bool {
        self.0.auth_failures.fetch_add(1, Ordering::AcqRel) + 1 == MAX_AUTH_FAILURES
    }

    fn guessing(&self) -> bool {
        self.0.auth_failures.load(Ordering::Acquire) >= MAX_AUTH_FAILURES
    }

    /// Opens a call, or returns how many are open when `max` already are.
    pub fn begin_call(&self, max: usize) -> Result<Call, usize> {
        self.0
            .calls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })?;
        Ok(Call(self.clone()))
    }

    fn idle_since(&self) -> Instant {
        self.0.born + Duration::from_millis(self.0.idle_since_ms.load(Ordering::Acquire))
    }
}

/// One open call on a connection; ends when dropped.
#[derive(Debug)]
pub struct Call(ConnInfo);

impl Drop for Call {
    fn drop(&mut self) {
        let state = &self.0 .0;
        let ms = u64::try_from(state.born.elapsed().as_millis()).unwrap_or(u64::MAX);
        state.idle_since_ms.store(ms, Ordering::Release);
        state.calls.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One connection of the server's count; uncounted when dropped.
#[derive(Debug)]
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
        metrics::gauge!("raven_grpc_connections").decrement(1.0);
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// An accepted connection, as tonic serves it.
pub struct Conn {
    io: Io,
    info: ConnInfo,
    /// When to look again whether the connection is idle (or its refusal is over).
    timer: Option<Pin<Box<Sleep>>>,
    idle: Option<Duration>,
}

impl Conn {
    fn new(io: Io, info: ConnInfo, idle: Option<Duration>) -> Self {
        let first = if info.refused().is_some() {
            Some(REFUSED_LIFETIME)
        } else {
            idle
        };
        Self {
            io,
            info,
            timer: first.map(|d| Box::pin(tokio::time::sleep(d))),
            idle,
        }
    }

    /// True once the connection should close: refused and past its lifetime, or idle
    /// for the whole timeout. Re-arms the timer otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timer) = self.timer.as_mut() else {
            return false;
        };
        loop {
            if std::future::Future::poll(timer.as_mut(), cx).is_pending() {
                return false;
            }
            let expired = match (self.info.refused(), self.idle) {
                (Some(_), _) => true,
                (None, None) => false,
                (None, Some(idle)) => {
                    let now = Instant::now();
                    let next = if self.info.0.calls.load(Ordering::Acquire) > 0 {
                        now + idle
                    } else {
                        self.info.idle_since() + idle
                    };
                    if next > now {
                        timer.as_mut().reset(next.into());
                        continue;
                    }
                    metrics::counter!("raven_limit_hits_total", "limit" => "idle_timeout")
                        .increment(1);
                    true
                }
            };
            self.timer = None;
            return expired;
        }
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.info.guessing() || self.expired(cx) {
            // End of stream: the HTTP/2 server closes the connection.
            return Poll::Ready(Ok(()));
        }
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A connection accepted, before its TLS handshake.
struct Accepted {
    peer: SocketAddr,
    refused: Option<String>,
    counted: Counted,
}

impl Accepted {
    fn info(self, cert_names: Vec<String>) -> ConnInfo {
        ConnInfo(Arc::new(ConnState {
            peer: self.peer,
            cert_names,
            refused: self.refused,
            calls: AtomicUsize::new(0),
            auth_failures: AtomicU32::new(0),
            idle_since_ms: AtomicU64::new(0),
            born: Instant::now(),
            _counted: self.counted,
        }))
    }
}

/// Accepts on `listener` until the returned stream is dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    limits: ConnLimits,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(accept_loop(listener, tls, limits, tx));
    ReceiverStream::new(rx)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
    limits: ConnLimits,
    tx: mpsc::Sender<io::Result<Conn>>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let max = limits.max_connections.max(1);
    let overflow = max + max / 4 + 16;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = tx.closed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: the connection waiting is
                // dropped by the kernel, not us; pausing lets a descriptor free up
                // instead of spinning on the same error.
                tracing::warn!(error = %e, "gRPC accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let count = open.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::gauge!("raven_grpc_connections").increment(1.0);
        let counted = Counted(open.clone());
        let refused = (count > max).then(|| {
            format!(
                "the server already serves {max} connections (server.max_connections); retry later or elsewhere"
            )
        });
        if refused.is_some() {
            metrics::counter!("raven_limit_hits_total", "limit" => "connections").increment(1);
            if count > overflow {
                continue; // `counted` and `tcp` dropped: closed at once.
            }
        }
        // Market data is many small messages: Nagle's algorithm would hold them for up
        // to a delayed-ACK period (~40 ms).
        let _ = tcp.set_nodelay(true);
        let state = Accepted {
            peer,
            refused,
            counted,
        };
        let idle = limits.idle_timeout;
        match &tls {
            None => {
                let conn = Conn::new(Io::Plain(tcp), state.info(Vec::new()), idle);
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                let tx = tx.clone();
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                        .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            metrics::counter!("raven_tls_handshake_failures_total").increment(1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            metrics::counter!("raven_limit_hits_total", "limit" => "tls_handshake_timeout")
                                    .increment(1);
                            return;
                        }
                    };
                    let names = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .map(client_names)
                        .unwrap_or_default();
                    let conn = Conn::new(Io::Tls(Box::new(stream)), state.info(names), idle);
                    let _ = tx.send(Ok(conn)).await;
                });
            }
        }
    }
}
