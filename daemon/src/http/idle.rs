//! An idle deadline on a connection, counted in requests, not bytes: a
//! connection with no request in flight and none started or answered for
//! the configured time is closed (the next read fails with `TimedOut` and
//! hyper closes it). Bytes alone do not keep it open, so neither a client
//! that goes quiet after the TLS handshake nor one that only sends HTTP/2
//! PINGs or empty frames holds a connection slot for ever. A request being
//! uploaded counts as in flight (its body has its own time limit).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A connection's request activity, shared by its I/O and its service.
#[derive(Debug)]
pub struct Activity {
    origin: Instant,
    /// Requests started and not yet answered.
    in_flight: AtomicUsize,
    /// When a request last started or was answered (ms since `origin`).
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            origin: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn stamp(&self) {
        let ms = self.origin.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A request arrived; the guard marks it answered when dropped.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.stamp();
        InFlight(Arc::clone(self))
    }

    /// When the connection stops being busy-or-recent, if it is idle now.
    fn idle_since(&self) -> Option<Instant> {
        (self.in_flight.load(Ordering::Relaxed) == 0)
            .then(|| self.origin + Duration::from_millis(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// One request in flight (see [`Activity::request`]).
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.stamp();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `inner` closed after `timeout` without request activity.
pub struct Idle<T> {
    inner: T,
    timeout: Duration,
    activity: Arc<Activity>,
    deadline: Pin<Box<Sleep>>,
}

impl<T> Idle<T> {
    pub fn new(inner: T, timeout: Duration, activity: Arc<Activity>) -> Self {
        Idle {
            inner,
            timeout,
            activity,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Whether the deadline passed with no request activity; a deadline
    /// reached while busy (or after recent activity) is moved on instead.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.deadline.as_mut().poll(cx).is_pending() {
                return false;
            }
            let next = match self.activity.idle_since() {
                Some(since) if since + self.timeout <= Instant::now() => return true,
                Some(since) => since + self.timeout,
                None => Instant::now() + self.timeout,
            };
            self.deadline.as_mut().reset(next);
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "connection idle for too long")
}

impl<T: AsyncRead + Unpin> AsyncRead for Idle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Idle<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, data) {
            Poll::Pending if this.expired(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
