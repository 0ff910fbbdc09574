//! Connection handling: the accept loop, per-address and total connection caps, and the
//! timeouts that close idle, half-sent, trickled and unread connections.
//!
//! poem's own server counts nothing and closes nothing on time, so a few thousand silent
//! sockets exhaust file descriptors. This loop serves the same poem endpoint through hyper
//! with hyper's header-read timeout, an inactivity timer per connection, a stall timer on
//! request bodies and on responses the client does not read.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use poem::http::uri::Scheme;
use poem::{Addr, Endpoint, Request, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::task::TaskTracker;

/// poem's body type, under the name hyper sees.
type BoxBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// How connections are bounded (`--header-timeout`, `--max-connections-per-ip`, …).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From the moment a connection waits for a request until its headers are complete.
    pub header_timeout: Duration,
    /// Longest pause while a request body is arriving, or while a response waits for the
    /// client to read it.
    pub body_timeout: Duration,
    /// A connection that moves no byte for this long is closed (between requests at once;
    /// during a request once its response is written).
    pub idle_timeout: Duration,
    /// Open connections per client address; trusted proxies are exempt (they carry many
    /// clients), the total cap still applies to them.
    pub max_per_ip: usize,
    /// Open connections in all.
    pub max_total: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(5),
            max_per_ip: 256,
            max_total: 10_000,
        }
    }
}

/// A body that trickles slower than this (after its first `body_timeout`) is cut off, so one
/// byte every few seconds cannot hold a connection for hours.
const MIN_BODY_BYTES_PER_SEC: u64 = 1024;

/// File descriptors kept for the database, bundles and logs beyond the connections.
const RESERVED_DESCRIPTORS: u64 = 128;

/// Raises the soft open-files limit to the hard one (each connection holds a descriptor) and
/// returns the limit now in force, when the platform has one.
pub fn raise_open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(limit) => Some(limit),
            Err(e) => {
                tracing::warn!("cannot raise the open-files limit: {e}");
                rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
            }
        }
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// The total cap, lowered if the open-files limit could not hold that many connections.
pub fn effective_max_total(limits: &ConnectionLimits, open_files: Option<u64>) -> usize {
    match open_files {
        Some(files) => {
            let room = files.saturating_sub(RESERVED_DESCRIPTORS).max(16);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if limits.max_total > room {
                tracing::warn!(
                    "open-files limit {files}: at most {room} connections instead of {}",
                    limits.max_total
                );
            }
            limits.max_total.min(room)
        }
        None => limits.max_total,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    /// Stop accepting; finish in-flight requests.
    Draining,
    /// The grace period is over: drop what is left.
    Abort,
}

/// Serves `ep` on `listener` until `shutdown` resolves, then lets in-flight requests finish
/// for up to `grace`.
pub async fn serve<E>(
    listener: TcpListener,
    ep: E,
    limits: ConnectionLimits,
    trusted_proxies: Vec<IpAddr>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    serve_with_tls(listener, ep, limits, trusted_proxies, None, shutdown, grace).await
}

/// [`serve`], over TLS when `tls` is given: the same caps and timers, the handshake bounded
/// by the header timeout, and `Strict-Transport-Security` on every answer.
pub async fn serve_with_tls<E>(
    listener: TcpListener,
    ep: E,
    limits: ConnectionLimits,
    trusted_proxies: Vec<IpAddr>,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let ep = Arc::new(ep);
    let local = listener.local_addr()?;
    let counts = Arc::new(Counts::default());
    let (phase_tx, phase_rx) = watch::channel(Phase::Running);
    let tracker = TaskTracker::new();
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut refused = RefusalLog::default();
    tracing::info!(
        "listening on {local}{} (header timeout {:?}, body timeout {:?}, idle timeout {:?}, \
         at most {} connections, {} per address)",
        if tls.is_some() { " with TLS" } else { "" },
        limits.header_timeout,
        limits.body_timeout,
        limits.idle_timeout,
        limits.max_total,
        limits.max_per_ip
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of descriptors (or a connection reset before accept): wait a
                        // little rather than spin on an error that repeats at once.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let capped = !trusted_proxies.contains(&peer.ip());
                let Some(slot) = counts.enter(peer.ip(), capped, &limits) else {
                    refused.note(peer.ip());
                    drop(socket);
                    continue;
                };
                let _ = socket.set_nodelay(true);
                tracker.spawn(serve_connection(Connection {
                    socket,
                    peer,
                    local,
                    ep: ep.clone(),
                    builder: builder.clone(),
                    limits,
                    tls: tls.clone(),
                    phase: phase_rx.clone(),
                    _slot: slot,
                }));
            }
        }
    }
    drop(listener);
    tracker.close();
    let _ = phase_tx.send(Phase::Draining);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        let _ = phase_tx.send(Phase::Abort);
        tracker.wait().await;
    }
    Ok(())
}

/// Open connections, in all and per client address.
#[derive(Default)]
struct Counts {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Counts {
    fn enter(
        self: &Arc<Self>,
        ip: IpAddr,
        capped: bool,
        limits: &ConnectionLimits,
    ) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        let (total, per_ip) = &mut *open;
        if *total >= limits.max_total {
            return None;
        }
        let mine = per_ip.entry(ip).or_insert(0);
        if capped && *mine >= limits.max_per_ip {
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(Slot {
            counts: self.clone(),
            ip,
        })
    }
}

/// One counted connection; leaving the count when dropped.
struct Slot {
    counts: Arc<Counts>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.counts.open.lock() {
            let (total, per_ip) = &mut *open;
            *total = total.saturating_sub(1);
            if let Some(mine) = per_ip.get_mut(&self.ip) {
                *mine = mine.saturating_sub(1);
                if *mine == 0 {
                    per_ip.remove(&self.ip);
                }
            }
        }
    }
}

/// Refused connections are logged at most every ten seconds: a flood must not flood the log.
#[derive(Default)]
struct RefusalLog {
    since: Option<Instant>,
    count: u64,
}

impl RefusalLog {
    fn note(&mut self, ip: IpAddr) {
        self.count += 1;
        let due = self
            .since
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(10));
        if due {
            tracing::warn!(
                "connection limit reached: refused {} connection(s), the last from {ip}",
                self.count
            );
            self.since = Some(Instant::now());
            self.count = 0;
        }
    }
}

struct Connection<E> {
    socket: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    ep: Arc<E>,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    phase: watch::Receiver<Phase>,
    _slot: Slot,
}

async fn serve_connection<E>(c: Connection<E>)
where
    E: Endpoint<Output = Response> + 'static,
{
    let Connection {
        socket,
        peer,
        local,
        ep,
        builder,
        limits,
        tls,
        mut phase,
        _slot,
    } = c;
    let activity = Arc::new(Activity::new());
    let watched = Watched {
        inner: socket,
        activity: activity.clone(),
    };
    let (io, scheme) = match tls {
        None => (Stream::Plain(watched), Scheme::HTTP),
        Some(acceptor) => {
            // A client that opens a socket and never finishes its handshake is let go like one
            // that never finishes its headers.
            let Ok(Ok(stream)) =
                tokio::time::timeout(limits.header_timeout, acceptor.accept(watched)).await
            else {
                return;
            };
            if stream.get_ref().1.alpn_protocol() == Some(crate::tls::ACME_TLS_ALPN) {
                // A TLS-ALPN-01 validator: the handshake was the whole answer.
                return;
            }
            (Stream::Tls(Box::new(stream)), Scheme::HTTPS)
        }
    };
    let hsts = scheme == Scheme::HTTPS;
    let body_timeout = limits.body_timeout;
    let service =
        hyper::service::service_fn(move |req: poem::http::Request<hyper::body::Incoming>| {
            let ep = ep.clone();
            let scheme = scheme.clone();
            async move {
                let has_body = !req.body().is_end_stream();
                let mut req = Request::from((
                    req,
                    poem::web::LocalAddr(Addr::SocketAddr(local)),
                    poem::web::RemoteAddr(Addr::SocketAddr(peer)),
                    scheme,
                ));
                if has_body {
                    let body = BoxBody::from(req.take_body());
                    req.set_body(poem::Body::from(http_body_util::BodyExt::boxed(
                        TimedBody::new(body, body_timeout),
                    )));
                }
                let mut response: poem::http::Response<BoxBody> = ep.get_response(req).await.into();
                if hsts {
                    response.headers_mut().insert(
                        poem::http::header::STRICT_TRANSPORT_SECURITY,
                        poem::http::HeaderValue::from_static(crate::tls::HSTS),
                    );
                }
                Ok::<_, std::convert::Infallible>(response)
            }
        });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        let deadline = activity.next_deadline(&limits, draining);
        tokio::select! {
            _ = &mut conn => return,
            changed = phase.changed() => {
                let now = if changed.is_ok() { *phase.borrow() } else { Phase::Abort };
                match now {
                    Phase::Running => {}
                    Phase::Draining => {
                        if !draining {
                            conn.as_mut().graceful_shutdown();
                            draining = true;
                        }
                    }
                    Phase::Abort => return,
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {
                if activity.write_stalled_for() >= limits.body_timeout {
                    // The client does not read its response: let the connection go.
                    return;
                }
                if !draining && activity.idle_for() >= limits.idle_timeout {
                    // Closes at once when between requests (or before the first one has
                    // been sent); a request in progress finishes first.
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
            }
        }
    }
}

/// When a connection last moved a byte, and since when a write has been waiting.
struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last byte read or written.
    last_ms: AtomicU64,
    /// Milliseconds since `start` + 1 when a write began to wait; 0 when none waits.
    write_blocked_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            write_blocked_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::Relaxed)),
        )
    }

    fn write_stalled_for(&self) -> Duration {
        match self.write_blocked_ms.load(Ordering::Relaxed) {
            0 => Duration::ZERO,
            since => Duration::from_millis(self.now_ms().saturating_sub(since - 1)),
        }
    }

    fn write_waits(&self) {
        if self.write_blocked_ms.load(Ordering::Relaxed) == 0 {
            self.write_blocked_ms
                .store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    fn wrote(&self) {
        self.write_blocked_ms.store(0, Ordering::Relaxed);
        self.touch();
    }

    /// The next moment one of the connection's timers could expire.
    fn next_deadline(&self, limits: &ConnectionLimits, draining: bool) -> Instant {
        let idle = if draining {
            // Only the write stall matters now; look again after a while.
            limits.body_timeout
        } else {
            limits.idle_timeout.saturating_sub(self.idle_for())
        };
        let stall = match self.write_blocked_ms.load(Ordering::Relaxed) {
            0 => limits.body_timeout,
            _ => limits.body_timeout.saturating_sub(self.write_stalled_for()),
        };
        // At least a few milliseconds, so a timer that just fired is not re-armed at once.
        Instant::now() + idle.min(stall).max(Duration::from_millis(5))
    }
}

/// A socket that records its activity for the connection's timers.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let out = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(out, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        out
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let out = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&out);
        out
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let out = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&out);
        out
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Watched {
    fn note_write(&self, out: &Poll<io::Result<usize>>) {
        match out {
            Poll::Ready(Ok(_)) => self.activity.wrote(),
            Poll::Pending => self.activity.write_waits(),
            Poll::Ready(Err(_)) => {}
        }
    }
}

/// A connection's byte stream, in clear or inside TLS (whose socket is still [`Watched`], so
/// the timers see the encrypted bytes move).
enum Stream {
    Plain(Watched),
    Tls(Box<TlsStream<Watched>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A request body that must keep arriving: a pause longer than `stall`, or an average below
/// [`MIN_BODY_BYTES_PER_SEC`] after the first `stall`, ends it with a timeout error.
struct TimedBody {
    inner: BoxBody,
    stall: Duration,
    start: Instant,
    /// Since when the reader has been waiting for the next frame. A pause counts from there,
    /// not from the last frame: a reader that was busy (a slow disk under the bundle it
    /// streams) must not blame the client for the time it did not ask.
    waiting_since: Option<Instant>,
    received: u64,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl TimedBody {
    fn new(inner: BoxBody, stall: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            stall,
            start: now,
            waiting_since: None,
            received: 0,
            timer: None,
        }
    }

    fn deadline(&mut self) -> Instant {
        let paced = self.start
            + self.stall
            + Duration::from_millis(self.received.saturating_mul(1000) / MIN_BODY_BYTES_PER_SEC);
        let waiting_since = *self.waiting_since.get_or_insert_with(Instant::now);
        (waiting_since + self.stall).min(paced)
    }
}

impl HttpBody for TimedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(Ok(f)) = &frame
                    && let Some(data) = f.data_ref()
                {
                    this.received += data.len() as u64;
                }
                this.waiting_since = None;
                this.timer = None;
                Poll::Ready(frame)
            }
            Poll::Pending => {
                let deadline = tokio::time::Instant::from_std(this.deadline());
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.deadline() != deadline {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the request body stopped arriving",
                    )))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;
    use http_body_util::{BodyExt, StreamBody};

    /// A body whose frames the test sends when it wants.
    fn channel_body() -> (tokio::sync::mpsc::Sender<Bytes>, BoxBody) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let frames = tokio_stream_from(rx).map(|b| Ok::<_, io::Error>(Frame::data(b)));
        (tx, BoxBody::new(StreamBody::new(frames)))
    }

    fn tokio_stream_from(
        mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> impl futures_util::Stream<Item = Bytes> {
        futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

    /// The next frame of `body`, which must come.
    async fn next_frame(body: &mut TimedBody) -> Result<Frame<Bytes>, io::Error> {
        body.frame()
            .await
            .unwrap_or_else(|| Err(io::Error::other("the body ended early")))
    }

    #[tokio::test]
    async fn a_reader_that_was_busy_does_not_blame_the_client() -> TestResult {
        let stall = Duration::from_millis(200);
        let (tx, inner) = channel_body();
        let mut body = TimedBody::new(inner, stall);
        // 64 KiB: well above the minimum average rate, so only the pause rule is in play.
        tx.send(Bytes::from(vec![0u8; 64 * 1024])).await?;
        next_frame(&mut body).await?;
        // The reader is busy (writing to a slow disk) for longer than the stall allowance…
        tokio::time::sleep(stall + Duration::from_millis(150)).await;
        // …and the client's next frame comes soon after the reader asks for it.
        let sender = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            tx.send(Bytes::from_static(b"second")).await.map(|()| tx)
        });
        let frame = next_frame(&mut body).await;
        assert!(frame.is_ok(), "the body was cut off: {:?}", frame.err());
        drop(sender.await??);
        Ok(())
    }

    #[tokio::test]
    async fn a_client_that_pauses_longer_than_the_allowance_is_cut_off() -> TestResult {
        let stall = Duration::from_millis(100);
        let (tx, inner) = channel_body();
        let mut body = TimedBody::new(inner, stall);
        tx.send(Bytes::from_static(b"first")).await?;
        next_frame(&mut body).await?;
        let refused = next_frame(&mut body).await;
        assert_eq!(
            refused.err().map(|e| e.kind()),
            Some(io::ErrorKind::TimedOut)
        );
        drop(tx);
        Ok(())
    }
}
