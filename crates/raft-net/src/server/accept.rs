//! Accepting peer connections: the accept loop on the network thread, routing each
//! connection by its first bytes (the light lane's preface or not), the bound on connections
//! still routing or in their TLS handshake, and the handshakes themselves (light lane on the
//! network thread, everything else on the bulk runtime, one task per connection).

use super::LIGHT_PREFACE;
use crate::shared::Shared;
use crate::tls::ServerConn;
use metrics::counter;
use raft_metrics::net as m;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

/// A bulk connection on its way to the bulk runtime, holding its place among the pending
/// connections until its handshake is done.
pub(super) struct Pending {
    stream: std::net::TcpStream,
    permit: OwnedSemaphorePermit,
}

/// Accepts connections until `stop`, routing each by its first bytes (on the network
/// thread, where this runs). At most `pending` connections may be routing or in their
/// handshake at once; more are closed.
pub(super) async fn accept_loop(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    pending: Arc<Semaphore>,
    bulk: mpsc::Sender<Pending>,
    light: mpsc::Sender<ServerConn>,
    mut stop: oneshot::Receiver<()>,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(%e, "cannot listen for peers");
            return;
        }
    };
    loop {
        let stream = tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    debug!(%e, "accepting a peer connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            counter!(m::FRAMES_REJECTED, "reason" => "too_many_pending").increment(1);
            debug!("too many peer connections pending; closed a new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(route(
            shared.clone(),
            stream,
            permit,
            bulk.clone(),
            light.clone(),
        ));
    }
}

/// Hands `stream` to the light-lane server when it starts with [`LIGHT_PREFACE`] (consumed
/// here; its TLS handshake runs here, on the network thread), to the bulk runtime
/// otherwise (untouched: HTTP/2 and TLS start with other bytes).
async fn route(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    permit: OwnedSemaphorePermit,
    bulk: mpsc::Sender<Pending>,
    light: mpsc::Sender<ServerConn>,
) {
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(deadline, stream.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] != LIGHT_PREFACE[0] {
        match stream.into_std() {
            Ok(stream) => {
                let _ = bulk.send(Pending { stream, permit }).await;
            }
            Err(e) => debug!(%e, "cannot hand over a peer connection"),
        }
        return;
    }
    let mut preface = [0u8; LIGHT_PREFACE.len()];
    match tokio::time::timeout_at(deadline, stream.read_exact(&mut preface)).await {
        Ok(Ok(_)) if &preface == LIGHT_PREFACE => {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some(conn) = handshake(&shared, stream, left).await {
                drop(permit);
                let _ = light.send(conn).await;
            }
        }
        _ => {
            counter!(m::FRAMES_REJECTED, "reason" => "malformed").increment(1);
            debug!("dropped a peer connection with an unknown preface");
        }
    }
}

/// Runs the TLS handshake of each bulk connection in a task of its own (on the bulk
/// runtime) and hands the result to the bulk server.
pub(super) async fn bulk_handshakes(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Pending>,
    to_server: mpsc::Sender<ServerConn>,
) {
    while let Some(Pending { stream, permit }) = rx.recv().await {
        let (shared, to_server) = (shared.clone(), to_server.clone());
        tokio::spawn(async move {
            let Ok(stream) = TcpStream::from_std(stream) else {
                return;
            };
            let timeout = shared.config.handshake_timeout;
            if let Some(conn) = handshake(&shared, stream, timeout).await {
                drop(permit);
                let _ = to_server.send(conn).await;
            }
        });
    }
}

/// The connection as the server will serve it: after the TLS handshake when TLS is on
/// (`None` when it fails; counted and logged by the acceptor).
async fn handshake(shared: &Shared, stream: TcpStream, timeout: Duration) -> Option<ServerConn> {
    match &shared.tls {
        None => Some(ServerConn::plain(stream)),
        Some(tls) => tls.acceptor().accept(stream, timeout).await.ok(),
    }
}
