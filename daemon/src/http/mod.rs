//! The public HTTPS listener: rustls (TLS 1.2/1.3, ALPN h2 and http/1.1, the
//! certificate reloadable) in front of hyper 1, with a connection cap, a
//! handshake + header timeout and an idle timeout on every connection; body
//! size and time caps are enforced where bodies are read (`api::intake`).

pub mod forwarded;
mod idle;
pub mod response;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use tls::{Certs, TlsError, load_tls};

use crate::App;

/// Accepts connections until `shutdown` flips to true, then stops accepting,
/// tells every connection to finish its in-flight requests and close, and
/// waits up to `server.shutdown_grace_secs` for them.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&app.tls));
    let slots = Arc::new(Semaphore::new(app.config.server.max_connections));
    let header_timeout = Duration::from_secs(app.config.server.header_timeout_secs);
    let idle_timeout = Duration::from_secs(app.config.server.idle_timeout_secs);
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&slots).acquire_owned() => p.map_err(std::io::Error::other)?,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Responses are written whole; Nagle would hold the tail of one back
        // for the client's delayed ACK (~40 ms a request).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
        }
        let acceptor = acceptor.clone();
        let app = Arc::clone(&app);
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = Arc::clone(&app);
                async move {
                    Ok::<_, std::convert::Infallible>(crate::api::handle(app, req, peer).await)
                }
            });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .max_buf_size(64 * 1024);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(32)
                .max_header_list_size(32 * 1024);
            let io = TokioIo::new(idle::Idle::new(tls, idle_timeout));
            if let Err(e) = watcher.watch(builder.serve_connection(io, service)).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let open = graceful.count();
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!(connections = open, "connections drained"),
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period over; closing the connections still open"
        ),
    }
    Ok(())
}
