//! The inbound side: the gRPC `Peer` service (frame validation, delivery, acks, snapshot
//! reception) and the server running it on a caller-supplied listener (connections are
//! accepted, routed by lane and put through TLS in `accept`).

mod accept;

use crate::config::SNAPSHOT_CHUNK_SIZE;
use crate::convert::meta_from_pb;
use crate::error::{Error, Result};
use crate::frame::open_frame;
use crate::lane::{LANE_KEY, LIGHT_PREFACE};
use crate::netrt::NetRuntime;
use crate::pb;
use crate::shared::Shared;
use crate::snapshot::open_chunk;
use crate::tls::{ConnInfo, ServerConn};
use accept::{Pending, accept_loop, bulk_handshakes};
use metrics::counter;
use raft_core::{Message, MessageBody, NodeId};
use raft_metrics::net as m;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};
use tracing::{Instrument, debug, info_span, warn};

/// Counts a refusal under `reason` and returns `status`.
fn reject(reason: &'static str, status: Status) -> Status {
    counter!(m::FRAMES_REJECTED, "reason" => reason).increment(1);
    debug!(reason, %status, "refused inbound peer traffic");
    status
}

/// Maps a decoding error to a counted status.
fn refuse(err: Error) -> Status {
    match err {
        Error::TooLarge { .. } => reject("too_large", Status::out_of_range(err.to_string())),
        Error::Malformed(_) | Error::Codec { .. } => {
            reject("malformed", Status::invalid_argument(err.to_string()))
        }
        other => Status::internal(other.to_string()),
    }
}

/// Counts a transport-level receive error (tonic's own size limit or a decode failure).
fn count_stream_error(status: &Status) {
    let reason = match status.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => "too_large",
        tonic::Code::Internal | tonic::Code::InvalidArgument => "malformed",
        _ => return,
    };
    counter!(m::FRAMES_REJECTED, "reason" => reason).increment(1);
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Waits until `rx` says true; never returns if its sender is gone without saying it.
async fn cancelled(mut rx: watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The `Peer` service of one server.
struct PeerService {
    shared: Arc<Shared>,
    cancel: watch::Receiver<bool>,
}

impl PeerService {
    fn check_running(&self) -> Result<(), Status> {
        if *self.cancel.borrow() {
            return Err(reject(
                "shutting_down",
                Status::unavailable("server is shutting down"),
            ));
        }
        Ok(())
    }
}

/// Checks who a frame, probe or chunk is from and for, and that the connection it came on
/// may speak for its sender (`conn`: what the connection's client certificate proved).
fn check_header(
    shared: &Shared,
    conn: Option<&ConnInfo>,
    cluster_id: u64,
    from: NodeId,
    to: NodeId,
) -> Result<(), Status> {
    let cfg = &shared.config;
    if cluster_id != cfg.cluster_id {
        return Err(reject(
            "cluster_id",
            Status::permission_denied(format!(
                "cluster id {cluster_id:#x} is not this cluster's ({:#x})",
                cfg.cluster_id
            )),
        ));
    }
    if to != cfg.node_id {
        return Err(reject(
            "wrong_receiver",
            Status::invalid_argument(format!(
                "addressed to node {to}, this is node {}",
                cfg.node_id
            )),
        ));
    }
    if from == 0 {
        return Err(reject("malformed", Status::invalid_argument("sender id 0")));
    }
    check_identity(shared, conn, from)?;
    if shared.is_isolated() {
        return Err(reject(
            "isolated",
            Status::unavailable("the fault switch isolates this node"),
        ));
    }
    if shared.is_removed(from) {
        return Err(reject(
            "removed_member",
            Status::permission_denied(format!("node {from} was removed from the cluster")),
        ));
    }
    if !shared.is_member(from) {
        return Err(reject(
            "unknown_member",
            Status::permission_denied(format!(
                "node {from} is not a member of this cluster (as node {} knows it)",
                cfg.node_id
            )),
        ));
    }
    Ok(())
}

/// With member ids bound to certificates, a connection may only speak for the member its
/// client certificate names.
fn check_identity(shared: &Shared, conn: Option<&ConnInfo>, from: NodeId) -> Result<(), Status> {
    let Some(cluster) = shared.tls.as_ref().and_then(|t| t.cluster()) else {
        return Ok(());
    };
    let Some(cert) = conn.and_then(|c| c.client_cert.as_ref()) else {
        // Client certificates are optional (`require_client_cert = false`): such peers are
        // checked against the membership only.
        return Ok(());
    };
    if cert.names_member(cluster, from) {
        return Ok(());
    }
    Err(reject(
        "member_identity",
        Status::permission_denied(format!(
            "the connection's certificate speaks for member(s) {:?} of cluster `{cluster}`, \
             not for node {from}",
            cert.members_of(cluster).collect::<Vec<_>>()
        )),
    ))
}

/// How long the receiver of a `Replicate` stream may hold back the ack of a delivered frame
/// to cover later frames with the same (cumulative) ack. At one frame per put, acking every
/// frame cost each lane a write, and its sender a wake-up and a read, per put. The sender's
/// window is in bytes and much larger than what arrives in this time, and the light lane's
/// liveness check waits `request_timeout` (seconds) for an ack.
const ACK_DELAY: Duration = Duration::from_millis(10);

/// Validates, opens and delivers one frame; returns the ack for it and the frame's size on
/// the wire.
async fn receive_frame(
    shared: &Shared,
    conn: Option<&ConnInfo>,
    frame: pb::Frame,
    lane: &'static str,
) -> Result<(pb::StreamAck, u64), Status> {
    check_header(shared, conn, frame.cluster_id, frame.from, frame.to)?;
    let ack = pb::StreamAck {
        cluster_id: frame.cluster_id,
        from: frame.to,
        to: frame.from,
        term: frame.term,
        seq: frame.seq,
    };
    let wire = match &frame.payload {
        Some(pb::frame::Payload::Compressed(c)) => c.len() as u64,
        _ => frame.raw_len,
    };
    let msgs = open_frame(frame, shared.config.max_message_size).map_err(refuse)?;
    if msgs
        .iter()
        .any(|m| matches!(m.body, MessageBody::InstallSnapshot(_)))
    {
        return Err(reject(
            "malformed",
            Status::invalid_argument("InstallSnapshot travels only as a snapshot transfer"),
        ));
    }
    counter!(m::BYTES_RECEIVED, "lane" => lane).increment(wire);
    counter!(m::MESSAGES_RECEIVED, "lane" => lane).increment(msgs.len() as u64);
    let to = shared.inbound_for(lane == "light");
    for msg in msgs {
        if to.send(msg).await.is_err() {
            return Err(Status::unavailable("the node stopped receiving"));
        }
    }
    Ok((ack, wire))
}

#[tonic::async_trait]
impl pb::peer_server::Peer for PeerService {
    async fn call(
        &self,
        request: Request<pb::AppRequest>,
    ) -> Result<Response<pb::AppReply>, Status> {
        self.check_running()?;
        // The sender's certificate (when TLS is on) must name the member it claims to be.
        let conn = request.extensions().get::<ConnInfo>().cloned();
        let req = request.into_inner();
        check_header(
            &self.shared,
            conn.as_ref(),
            req.cluster_id,
            req.from,
            req.to,
        )?;
        crate::app::serve(&self.shared.app, req)
            .await
            .map(Response::new)
    }

    type ReplicateStream = ReceiverStream<Result<pb::StreamAck, Status>>;

    async fn replicate(
        &self,
        request: Request<Streaming<pb::Frame>>,
    ) -> Result<Response<Self::ReplicateStream>, Status> {
        self.check_running()?;
        let lane = match request.metadata().get(LANE_KEY).map(|v| v.as_bytes()) {
            Some(b"light") => "light",
            _ => "stream",
        };
        let conn = request.extensions().get::<ConnInfo>().cloned();
        let mut frames = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let shared = self.shared.clone();
        let cancel = self.cancel.clone();
        let span = info_span!("replicate_in", node_id = shared.config.node_id, lane);
        // Acks are cumulative: one acks every frame up to its `seq`. A delivered frame's
        // ack waits up to `ACK_DELAY` for later frames, or goes at once when the bytes it
        // would cover reach a quarter of the (sender's, assumed equal to ours) window.
        let ack_bytes = (shared.config.stream_window_bytes / 4).max(1) as u64;
        // On the runtime serving this connection: the network thread for the light lane,
        // the bulk runtime for append streams (see `route`).
        tokio::spawn(
            async move {
                let stop = cancelled(cancel);
                tokio::pin!(stop);
                // The newest ack not yet sent, the bytes it covers, and when it is due.
                let mut held: Option<(pb::StreamAck, u64, tokio::time::Instant)> = None;
                loop {
                    let due = held.as_ref().map(|h| h.2);
                    let next = tokio::select! {
                        biased;
                        _ = sleep_until_opt(due), if due.is_some() => {
                            let Some((ack, _, _)) = held.take() else { continue };
                            if tx.send(Ok(ack)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        next = frames.message() => next,
                        _ = &mut stop => {
                            let _ = tx.send(Err(Status::unavailable("server is shutting down"))).await;
                            return;
                        }
                    };
                    let result = match next {
                        Ok(Some(frame)) => receive_frame(&shared, conn.as_ref(), frame, lane).await,
                        Ok(None) => {
                            // The sender closed its side: ack what it sent.
                            if let Some((ack, _, _)) = held.take() {
                                let _ = tx.send(Ok(ack)).await;
                            }
                            return;
                        }
                        Err(status) => {
                            count_stream_error(&status);
                            Err(status)
                        }
                    };
                    match result {
                        Ok((ack, wire)) => {
                            let (bytes, due) = match held.take() {
                                Some((_, bytes, due)) => (bytes + wire, due),
                                None => (wire, tokio::time::Instant::now() + ACK_DELAY),
                            };
                            if bytes >= ack_bytes {
                                if tx.send(Ok(ack)).await.is_err() {
                                    return;
                                }
                            } else {
                                held = Some((ack, bytes, due));
                            }
                        }
                        Err(status) => {
                            let _ = tx.send(Err(status)).await;
                            return;
                        }
                    }
                }
            }
            .instrument(span),
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn send(&self, request: Request<pb::Frame>) -> Result<Response<pb::SendAck>, Status> {
        self.check_running()?;
        let conn = request.extensions().get::<ConnInfo>().cloned();
        let (ack, _) =
            receive_frame(&self.shared, conn.as_ref(), request.into_inner(), "light").await?;
        Ok(Response::new(pb::SendAck {
            cluster_id: ack.cluster_id,
            from: ack.from,
            to: ack.to,
            term: ack.term,
        }))
    }

    async fn snapshot_offset(
        &self,
        request: Request<pb::SnapshotProbe>,
    ) -> Result<Response<pb::SnapshotAck>, Status> {
        self.check_running()?;
        let conn = request.extensions().get::<ConnInfo>().cloned();
        let probe = request.into_inner();
        check_header(
            &self.shared,
            conn.as_ref(),
            probe.cluster_id,
            probe.from,
            probe.to,
        )?;
        let meta = probe
            .meta
            .ok_or_else(|| reject("malformed", Status::invalid_argument("probe without meta")))
            .and_then(|m| meta_from_pb(m).map_err(refuse))?;
        let received = self
            .shared
            .inbound
            .snapshots
            .stored_len(probe.from, &meta, probe.total_len)
            .await
            .map_err(|e| Status::internal(format!("snapshot sink: {e}")))?;
        Ok(Response::new(pb::SnapshotAck {
            cluster_id: probe.cluster_id,
            from: probe.to,
            to: probe.from,
            term: probe.term,
            received: received.min(probe.total_len),
            installed: false,
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<pb::SnapshotChunk>>,
    ) -> Result<Response<pb::SnapshotAck>, Status> {
        self.check_running()?;
        let conn = request.extensions().get::<ConnInfo>().cloned();
        // Snapshot connections are served on the bulk runtime, so checksums, decompression
        // and the sink's writes run there.
        receive_snapshot(&self.shared, conn.as_ref(), request.into_inner())
            .await
            .map(Response::new)
    }

    async fn hello(
        &self,
        request: Request<pb::HelloRequest>,
    ) -> Result<Response<pb::HelloReply>, Status> {
        self.check_running()?;
        let conn = request.extensions().get::<ConnInfo>().cloned();
        let hello = request.into_inner();
        let cfg = &self.shared.config;
        if hello.to != cfg.node_id {
            return Err(reject(
                "wrong_receiver",
                Status::invalid_argument(format!(
                    "addressed to node {}, this is node {}",
                    hello.to, cfg.node_id
                )),
            ));
        }
        if hello.from == 0 {
            return Err(reject("malformed", Status::invalid_argument("sender id 0")));
        }
        // The cluster id is no secret (clients see it in every response header); with
        // TLS the asker must still hold a certificate for the id it asks as.
        check_identity(&self.shared, conn.as_ref(), hello.from)?;
        Ok(Response::new(pb::HelloReply {
            cluster_id: cfg.cluster_id,
            from: cfg.node_id,
        }))
    }
}

/// Receives one snapshot transfer; returns the final ack.
async fn receive_snapshot(
    shared: &Shared,
    conn: Option<&ConnInfo>,
    mut chunks: Streaming<pb::SnapshotChunk>,
) -> Result<pb::SnapshotAck, Status> {
    {
        let sink = &shared.inbound.snapshots;
        let first = chunks
            .message()
            .await
            .inspect_err(count_stream_error)?
            .ok_or_else(|| {
                reject(
                    "malformed",
                    Status::invalid_argument("empty snapshot stream"),
                )
            })?;
        check_header(shared, conn, first.cluster_id, first.from, first.to)?;
        let (from, term, total_len) = (first.from, first.term, first.total_len);
        let meta = first
            .meta
            .clone()
            .ok_or_else(|| {
                reject(
                    "malformed",
                    Status::invalid_argument("first chunk without meta"),
                )
            })
            .and_then(|m| meta_from_pb(m).map_err(refuse))?;
        let sink_err = |e: std::io::Error| Status::internal(format!("snapshot sink: {e}"));
        let mut received = sink
            .stored_len(from, &meta, total_len)
            .await
            .map_err(sink_err)?;
        let ack = |received, installed| pb::SnapshotAck {
            cluster_id: shared.config.cluster_id,
            from: shared.config.node_id,
            to: from,
            term,
            received,
            installed,
        };
        let mut chunk = first;
        loop {
            if chunk.from != from
                || chunk.cluster_id != shared.config.cluster_id
                || chunk.total_len != total_len
            {
                return Err(reject(
                    "malformed",
                    Status::invalid_argument("chunk header changed mid-transfer"),
                ));
            }
            if chunk.data.len() > SNAPSHOT_CHUNK_SIZE + 4096 {
                return Err(reject(
                    "too_large",
                    Status::out_of_range("snapshot chunk over 1 MiB"),
                ));
            }
            let data = open_chunk(&chunk, received).map_err(|e| match e {
                Error::Malformed(ref s) if s.starts_with("chunk at offset") => {
                    reject("malformed", Status::failed_precondition(e.to_string()))
                }
                other => refuse(other),
            })?;
            let len = data.len() as u64;
            sink.write_chunk(from, &meta, received, data)
                .await
                .map_err(sink_err)?;
            received += len;
            counter!(m::SNAPSHOT_BYTES_RECEIVED).increment(len);
            if chunk.last {
                sink.finish(from, &meta, total_len, chunk.checksum)
                    .await
                    .map_err(|e| {
                        Status::data_loss(format!("snapshot rejected by the sink: {e}"))
                    })?;
                let msg = Message {
                    from,
                    to: shared.config.node_id,
                    term,
                    body: MessageBody::InstallSnapshot(meta),
                };
                if shared.inbound.messages.send(msg).await.is_err() {
                    return Err(Status::unavailable("the node stopped receiving"));
                }
                return Ok(ack(received, true));
            }
            chunk = match chunks.message().await.inspect_err(count_stream_error)? {
                Some(c) => c,
                None => {
                    warn!(
                        from,
                        received, total_len, "snapshot stream ended before its last chunk"
                    );
                    return Ok(ack(received, false));
                }
            };
        }
    }
}

/// A running inbound server; stop it with [`ServerHandle::shutdown`]. Dropping the handle
/// leaves the server running as long as the transport's threads run.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    cancel: watch::Sender<bool>,
    /// Stop the accept loop and the two servers.
    stops: Vec<oneshot::Sender<()>>,
    /// The two servers (bulk, light lane).
    tasks: Vec<JoinHandle<Result<(), tonic::transport::Error>>>,
    accept: JoinHandle<()>,
    /// Keep the transport's threads alive while the server runs.
    _runtimes: [Arc<NetRuntime>; 2],
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting connections, ends every open stream (peers see "unavailable" and
    /// reconnect elsewhere or later), and waits up to 5 s for connections to close.
    pub async fn shutdown(mut self) -> Result<()> {
        let _ = self.cancel.send(true);
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut result = Ok(());
        for task in &mut self.tasks {
            match tokio::time::timeout_at(deadline, &mut *task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => result = Err(Error::Io(std::io::Error::other(e))),
                Ok(Err(join)) => result = Err(Error::Io(std::io::Error::other(join))),
                Err(_) => task.abort(),
            }
        }
        self.accept.abort();
        result
    }
}

/// Serves the `Peer` service on `listener`: an accept loop on the network thread routes
/// light-lane connections to a server on that thread and every other connection (append
/// streams, snapshots, unary calls) to a server on the bulk runtime. With TLS, the
/// handshake runs where the connection will be served, after the lane preface.
pub(crate) fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    net: Arc<NetRuntime>,
    bulk: Arc<NetRuntime>,
) -> Result<ServerHandle> {
    let local_addr = listener.local_addr()?;
    let listener = listener.into_std()?;
    let cfg = &shared.config;
    let (cancel, cancel_rx) = watch::channel(false);
    let router = || {
        let service = pb::peer_server::PeerServer::new(PeerService {
            shared: shared.clone(),
            cancel: cancel_rx.clone(),
        })
        .max_decoding_message_size(cfg.max_message_size)
        .max_encoding_message_size(cfg.max_message_size);
        Server::builder()
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(cfg.keepalive_interval))
            .http2_keepalive_timeout(Some(cfg.keepalive_timeout))
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .max_concurrent_streams(cfg.max_concurrent_streams.max(1))
            .add_service(service)
    };
    let (bulk_router, light_router) = (router(), router());
    let (bulk_tx, bulk_rx) = mpsc::channel::<Pending>(64);
    let (light_tx, light_rx) = mpsc::channel::<ServerConn>(64);
    let (conn_tx, conn_rx) = mpsc::channel::<ServerConn>(64);
    let (stop_bulk, stop_bulk_rx) = oneshot::channel::<()>();
    let (stop_light, stop_light_rx) = oneshot::channel::<()>();
    let (stop_accept, stop_accept_rx) = oneshot::channel::<()>();
    let span = info_span!("peer_server", node_id = cfg.node_id, %local_addr);
    let pending = Arc::new(Semaphore::new(cfg.max_pending_connections.max(1)));
    let accept = net.handle().spawn(
        accept_loop(
            shared.clone(),
            listener,
            pending,
            bulk_tx,
            light_tx,
            stop_accept_rx,
        )
        .instrument(span.clone()),
    );
    // Bulk connections are registered with the bulk runtime and their handshakes run
    // there, each in its own task (one slow client never holds up the others).
    let handshakes = bulk
        .handle()
        .spawn(bulk_handshakes(shared.clone(), bulk_rx, conn_tx).instrument(span.clone()));
    let bulk_incoming = ReceiverStream::new(conn_rx).map(Ok::<_, std::io::Error>);
    let bulk_task = bulk.handle().spawn(
        async move {
            let served = bulk_router
                .serve_with_incoming_shutdown(bulk_incoming, async {
                    let _ = stop_bulk_rx.await;
                })
                .await;
            handshakes.abort();
            served
        }
        .instrument(span.clone()),
    );
    let light_incoming = ReceiverStream::new(light_rx).map(Ok::<_, std::io::Error>);
    let light_task = net.handle().spawn(
        async move {
            light_router
                .serve_with_incoming_shutdown(light_incoming, async {
                    let _ = stop_light_rx.await;
                })
                .await
        }
        .instrument(span),
    );
    Ok(ServerHandle {
        local_addr,
        cancel,
        stops: vec![stop_accept, stop_bulk, stop_light],
        tasks: vec![bulk_task, light_task],
        accept,
        _runtimes: [net, bulk],
    })
}
