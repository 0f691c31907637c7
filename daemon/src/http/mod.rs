//! The public HTTPS listener: rustls (TLS 1.2/1.3, ALPN h2 and http/1.1, the
//! certificate reloadable) in front of hyper 1, optionally behind an L4
//! balancer speaking the PROXY protocol v2 (`proxy`), with a connection cap, a
//! handshake + header timeout and an idle timeout on every connection; body
//! size and time caps are enforced where bodies are read (`api::intake`).

pub mod error;
pub mod forwarded;
mod idle;
pub mod proxy;
pub mod response;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

pub use error::{ApiError, Code};
pub use tls::{Certs, TlsError, load_tls};

/// Open connections per client address (IPv6: per /64), capped.
struct PerAddress {
    cap: usize,
    trusted: Vec<ipnet::IpNet>,
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One admitted connection's place, given back on drop.
struct AddressSlot {
    table: Arc<PerAddress>,
    key: Option<std::net::IpAddr>,
}

impl PerAddress {
    fn new(cap: usize, trusted: Vec<ipnet::IpNet>) -> Self {
        PerAddress {
            cap,
            trusted,
            open: Default::default(),
        }
    }

    /// Whether `ip` is one of `[server] trusted_proxies`.
    fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// A place for a connection from `ip`, or `None` at the cap. Trusted
    /// proxies carry many clients and are not capped.
    fn admit(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<AddressSlot> {
        if self.cap == 0 || self.trusts(ip) {
            return Some(AddressSlot {
                table: Arc::clone(self),
                key: None,
            });
        }
        let key = forwarded::grouped(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(key).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: Arc::clone(self),
            key: Some(key),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else { return };
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&key);
            }
        }
    }
}

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
    let max = app.config.server.max_connections;
    let slots = Arc::new(Semaphore::new(max));
    let per_address = Arc::new(PerAddress::new(
        app.config.server.max_connections_per_address,
        app.config.server.trusted_proxies.clone(),
    ));
    let header_timeout = Duration::from_secs(app.config.server.header_timeout_secs);
    let idle_timeout = Duration::from_secs(app.config.server.idle_timeout_secs);
    let max_age = Some(app.config.server.max_connection_age_secs)
        .filter(|s| *s > 0)
        .map(Duration::from_secs);
    let grace = Duration::from_secs(app.config.server.shutdown_grace_secs);
    let proxy_protocol = app.config.server.proxy_protocol;
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
        let Some(address_slot) = per_address.admit(peer.ip()) else {
            // Closed at once: one address cannot take every slot.
            tracing::debug!(%peer, "connection refused: too many from this address");
            continue;
        };
        // Responses are written whole; Nagle would hold the tail of one back
        // for the client's delayed ACK (~40 ms a request).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "TCP_NODELAY not set");
        }
        let acceptor = acceptor.clone();
        let app = Arc::clone(&app);
        let mut stop = shutdown.clone();
        let per_address = Arc::clone(&per_address);
        tokio::spawn(async move {
            let (_permit, _address_slot) = (permit, address_slot);
            let mut tcp = tcp;
            // Behind an L4 balancer: the client is who its header names,
            // and is capped like any other client.
            let (peer, _client_slot) = if proxy_protocol && per_address.trusts(peer.ip()) {
                match tokio::time::timeout(header_timeout, proxy::read_header(&mut tcp)).await {
                    Ok(Ok(Some(client))) => match per_address.admit(client.ip()) {
                        Some(slot) => (client, Some(slot)),
                        None => {
                            tracing::debug!(%client, "connection refused: too many from this address");
                            return;
                        }
                    },
                    Ok(Ok(None)) => (peer, None),
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "PROXY header refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "PROXY header timed out");
                        return;
                    }
                }
            } else {
                (peer, None)
            };
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
            let activity = idle::Activity::new();
            let requests = Arc::clone(&activity);
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let app = Arc::clone(&app);
                let in_flight = requests.request();
                async move {
                    let resp = crate::api::handle(app, req, peer).await;
                    drop(in_flight);
                    Ok::<_, std::convert::Infallible>(resp)
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
            let io = TokioIo::new(idle::Idle::new(tls, idle_timeout, activity));
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            let aged = async {
                match max_age {
                    Some(age) => tokio::time::sleep(age).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(aged);
            // Shutdown or old age: finish what is in flight, then close.
            let mut closing = false;
            let ended = loop {
                tokio::select! {
                    r = conn.as_mut() => break r,
                    _ = &mut aged, if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = stop.wait_for(|stopping| *stopping), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            };
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Every open connection holds a slot: drained when all are back.
    let open = max - slots.available_permits();
    match tokio::time::timeout(grace, slots.acquire_many(max as u32)).await {
        Ok(_) => tracing::info!(connections = open, "connections drained"),
        Err(_) => tracing::warn!(
            grace_secs = grace.as_secs(),
            "grace period over; closing the connections still open"
        ),
    }
    Ok(())
}
