//! The client port's connections: accepted with TCP_NODELAY, counted per client address
//! (`limits.max_connections_per_client`), and, with `[tls]`, through a TLS handshake whose
//! outcome (the client's certificate) travels with each request as a
//! [`raft_net::tls::ConnInfo`]. Handshakes run in tasks of their own, so a slow client
//! never holds up the others.

use raft_net::tls::{ServerConn, TlsAcceptor};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// How long a client may take to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Open connections per client address.
#[derive(Default)]
struct PerClient {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped.
struct Counted {
    table: Arc<PerClient>,
    ip: IpAddr,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl PerClient {
    /// Counts a new connection from `ip`, or `None` when it already holds `max` (0: no
    /// limit).
    fn admit(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<Counted> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_insert(0);
        if max != 0 && *n >= max {
            return None;
        }
        *n += 1;
        Some(Counted {
            table: self.clone(),
            ip,
        })
    }
}

/// Accepts connections on `listener` until the returned stream is dropped (the accept task
/// ends when nobody takes connections any more) and hands them over ready to serve.
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<TlsAcceptor>>,
    max_per_client: usize,
) -> ReceiverStream<Result<ServerConn, std::io::Error>> {
    let (tx, rx) = mpsc::channel(64);
    let table = Arc::new(PerClient::default());
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = tx.closed() => return,
            };
            let (tcp, remote) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, keep serving.
                    tracing::warn!(error = %e, "client port: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(counted) = table.admit(remote.ip(), max_per_client) else {
                tracing::debug!(%remote, max_per_client, "client port: too many connections from one client; closed");
                continue;
            };
            // Without it a small response waits for the client's delayed ACK.
            let _ = tcp.set_nodelay(true);
            let (tx, tls) = (tx.clone(), tls.clone());
            tokio::spawn(async move {
                let conn = match &tls {
                    None => ServerConn::plain(tcp),
                    Some(tls) => match tls.accept(tcp, HANDSHAKE_TIMEOUT).await {
                        Ok(conn) => conn,
                        // Counted and logged by the acceptor.
                        Err(_) => return,
                    },
                };
                let _ = tx.send(Ok(conn.with_guard(counted))).await;
            });
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_per_client_until_closed() {
        let table = Arc::new(PerClient::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = table.admit(a, 2).unwrap();
        let _second = table.admit(a, 2).unwrap();
        assert!(table.admit(a, 2).is_none(), "a third from the same client");
        assert!(
            table.admit(b, 2).is_some(),
            "another client is not affected"
        );
        drop(first);
        assert!(
            table.admit(a, 2).is_some(),
            "a closed connection frees its place"
        );
        assert!(
            (0..100).all(|_| table.admit(b, 0).is_some()),
            "0 is unlimited"
        );
    }
}
