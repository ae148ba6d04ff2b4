//! The outbound side for one peer: its two send queues, the pipelined stream worker, the
//! light-lane worker, and snapshot transfers (with resume and retries).

use crate::backoff::{Backoff, seed_for};
use crate::config::TransportConfig;
use crate::convert::meta_to_pb;
use crate::error::{Error, Result};
use crate::frame::build_frame;
use crate::lane::{LANE_KEY, LIGHT_PREFACE, Lane, lane_name};
use crate::pb;
use crate::pb::peer_client::PeerClient;
use crate::queue::SendQueue;
use crate::shared::Shared;
use crate::snapshot::{ChunkHeader, SnapshotSource, prefix_checksum, produce_chunks};
use crate::tls::{ClientConn, ClientIo, PeerTls};
use metrics::{counter, histogram};
use prost::Message as _;
use raft_core::{Message, NodeId, SnapshotMeta};
use raft_metrics::net as m;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, warn};

pub(crate) mod app;

/// One peer: where it is and what waits to be sent to it.
pub(crate) struct Peer {
    pub(crate) id: NodeId,
    endpoint: Endpoint,
    /// Peer TLS (shared with the transport, so a reload reaches new connections).
    tls: Option<Arc<PeerTls>>,
    /// Appends and proposals, for the pipelined stream.
    pub(crate) stream_q: SendQueue,
    /// Heartbeats, votes, responses and other small messages.
    pub(crate) light_q: SendQueue,
    /// The connection of outbound application calls, once opened (see `app`).
    app_client: std::sync::Mutex<Option<PeerClient<Channel>>>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint.uri())
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// A peer at `addr` (`host:port`, or a full `http://`/`https://` URI; TLS is used when
    /// the transport has TLS settings, whatever the scheme says).
    pub(crate) fn new(shared: &Shared, id: NodeId, addr: &str) -> Result<Self> {
        let cfg = &shared.config;
        Ok(Self {
            id,
            endpoint: endpoint_for(cfg, id, addr)?,
            tls: shared.tls.clone(),
            stream_q: SendQueue::new(cfg.queue_max_messages, cfg.queue_max_bytes),
            light_q: SendQueue::new(cfg.queue_max_messages, cfg.queue_max_bytes),
            app_client: Default::default(),
        })
    }

    /// Stops both workers and drops what is queued.
    pub(crate) fn close(&self) {
        self.stream_q.close();
        self.light_q.close();
    }

    /// A new connection to the peer; the light lane's opens with [`LIGHT_PREFACE`], so the
    /// peer's server receives it on its network thread.
    async fn connect(&self, lane: Lane) -> Result<Channel> {
        let (tls, id) = (self.tls.clone(), self.id);
        let light = lane == Lane::Light;
        let connector =
            tower::service_fn(move |uri: http::Uri| connect_io(uri, light, tls.clone(), id));
        self.endpoint
            .connect_with_connector(connector)
            .await
            .map_err(|e| Error::Connect {
                peer: self.id,
                reason: error_chain(&e),
            })
    }

    /// The open connection of application calls, if any.
    fn app_client(&self) -> Option<PeerClient<Channel>> {
        self.app_client
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps (or, with `None`, drops) the connection of application calls.
    fn keep_app_client(&self, client: Option<PeerClient<Channel>>) {
        *self.app_client.lock().unwrap_or_else(|e| e.into_inner()) = client;
    }

    fn client(&self, shared: &Shared, channel: Channel) -> PeerClient<Channel> {
        PeerClient::new(channel)
            .max_decoding_message_size(shared.config.max_message_size)
            .max_encoding_message_size(shared.config.max_message_size)
    }
}

/// The HTTP/2 endpoint of peer `id` at `addr`. The transport runs TLS itself (see
/// [`connect_io`]), so tonic always sees `http`.
fn endpoint_for(cfg: &TransportConfig, id: NodeId, addr: &str) -> Result<Endpoint> {
    let host_port = addr.split_once("://").map_or(addr, |(_, rest)| rest);
    let uri = format!("http://{}", host_port.trim_end_matches('/'));
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| Error::Config(format!("bad address {addr:?} for peer {id}: {e}")))?
        .tcp_nodelay(true)
        .connect_timeout(cfg.connect_timeout)
        .http2_keep_alive_interval(cfg.keepalive_interval)
        .keep_alive_timeout(cfg.keepalive_timeout)
        .keep_alive_while_idle(true)
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20))
}

/// Asks member `peer` at `addr` for its cluster id (the `Hello` call), as node
/// `config.node_id`, with `config`'s TLS settings and timeouts. A node that bootstraps a
/// cluster or joins one without knowing the cluster id calls this before it creates its
/// transport; `config.cluster_id` is not used.
pub async fn ask_cluster_id(config: &TransportConfig, peer: NodeId, addr: &str) -> Result<u64> {
    let tls = match &config.tls {
        Some(tls) => Some(Arc::new(PeerTls::new(tls, config.node_id)?)),
        None => None,
    };
    let endpoint = endpoint_for(config, peer, addr)?.timeout(config.request_timeout);
    let connector =
        tower::service_fn(move |uri: http::Uri| connect_io(uri, false, tls.clone(), peer));
    let channel = endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| Error::Connect {
            peer,
            reason: error_chain(&e),
        })?;
    let reply = PeerClient::new(channel)
        .hello(pb::HelloRequest {
            from: config.node_id,
            to: peer,
        })
        .await
        .map_err(|s| rpc_error(peer, s))?
        .into_inner();
    if reply.cluster_id == 0 || reply.from != peer {
        return Err(Error::Malformed(format!(
            "peer {peer} answered Hello with cluster id {} as node {}",
            reply.cluster_id, reply.from
        )));
    }
    Ok(reply.cluster_id)
}

/// Opens a connection to a peer: TCP; for the light lane the preface that makes its server
/// receive the lane on its network thread; then, with TLS, the handshake (which checks that
/// the server's certificate names member `peer` when certificates are bound to members).
async fn connect_io(
    uri: http::Uri,
    light: bool,
    tls: Option<Arc<PeerTls>>,
    peer: NodeId,
) -> std::io::Result<hyper_util::rt::TokioIo<ClientConn>> {
    use tokio::io::AsyncWriteExt;
    let bad = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad peer URI {uri}"),
        )
    };
    let host = uri.host().ok_or_else(bad)?;
    // An IPv6 literal comes bracketed in a URI.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().ok_or_else(bad)?;
    let mut stream = tokio::net::TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    if light {
        stream.write_all(LIGHT_PREFACE).await?;
    }
    let io = match tls {
        None => ClientIo::Plain(stream),
        Some(tls) => ClientIo::Tls(Box::new(tls.connect(stream, host, peer).await?)),
    };
    Ok(hyper_util::rt::TokioIo::new(ClientConn { io }))
}

/// An error and its sources on one line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

fn rpc_error(peer: NodeId, status: tonic::Status) -> Error {
    Error::Rpc {
        peer,
        status: Box::new(status),
    }
}

fn count_dropped(n: usize, reason: &'static str) {
    if n > 0 {
        counter!(m::MESSAGES_DROPPED, "reason" => reason).increment(n as u64);
    }
}

/// Builds the frame for `batch`, or drops the batch (counted) when it cannot be sent.
fn frame_for(
    shared: &Shared,
    peer: NodeId,
    seq: u64,
    batch: &[Message],
) -> Option<(pb::Frame, usize)> {
    let cfg = &shared.config;
    if shared.is_isolated() {
        count_dropped(batch.len(), "isolated");
        return None;
    }
    match build_frame(
        cfg.cluster_id,
        cfg.node_id,
        peer,
        seq,
        batch,
        &shared.compression(),
    ) {
        Ok(frame) => {
            let size = frame.encoded_len();
            if size > cfg.max_message_size {
                warn!(
                    peer,
                    size,
                    limit = cfg.max_message_size,
                    "frame over max_message_size dropped"
                );
                count_dropped(batch.len(), "too_large");
                return None;
            }
            Some((frame, size))
        }
        Err(e) => {
            warn!(peer, error = %e, "cannot encode frame; dropped");
            count_dropped(batch.len(), "encode_error");
            None
        }
    }
}

/// How a stream session ended.
enum Session {
    /// The peer was removed or the transport shut down.
    Closed,
    /// The stream broke; reconnect.
    Broken(String),
}

impl Peer {
    fn queue(&self, lane: Lane) -> &SendQueue {
        match lane {
            Lane::Stream => &self.stream_q,
            Lane::Light => &self.light_q,
        }
    }
}

/// Runs one lane to `peer` until it is closed: connects lazily (on the first queued
/// message), pushes frames on a `Replicate` stream without waiting for acks (up to the byte
/// window), and reconnects with back-off when the stream breaks.
///
/// Both lanes work this way, each on its own connection; the light lane's stream is marked
/// with [`LANE_KEY`] so the receiver delivers it on its priority channel, and it counts as
/// broken when a frame stays unacked for `request_timeout`.
pub(crate) async fn run_lane(
    shared: std::sync::Arc<Shared>,
    peer: std::sync::Arc<Peer>,
    lane: Lane,
) {
    let cfg = &shared.config;
    let name = lane_name(lane);
    let salt = if lane == Lane::Light { 0x11 } else { 0 };
    let mut backoff = Backoff::new(cfg.backoff, seed_for(peer.id) ^ salt);
    loop {
        let Some(first) = peer
            .queue(lane)
            .pop_batch(cfg.max_frame_messages, cfg.max_frame_bytes)
            .await
        else {
            return;
        };
        let reason = match open_stream(&shared, &peer, lane).await {
            Ok((tx, acks)) => {
                counter!(m::CONNECTS, "lane" => name).increment(1);
                debug!(peer = peer.id, lane = name, "stream open");
                match pump(&shared, &peer, lane, tx, acks, first, &mut backoff).await {
                    Session::Closed => return,
                    Session::Broken(reason) => reason,
                }
            }
            Err(e) => {
                count_dropped(first.len(), "disconnected");
                e.to_string()
            }
        };
        counter!(m::CONNECT_FAILURES, "lane" => name).increment(1);
        count_dropped(peer.queue(lane).clear(), "disconnected");
        let delay = backoff.next_delay();
        if lane == Lane::Stream {
            warn!(peer = peer.id, %reason, ?delay, "append stream down; reconnecting after back-off");
        } else {
            debug!(peer = peer.id, %reason, ?delay, "light stream down; reconnecting after back-off");
        }
        shared.report_unreachable(peer.id);
        tokio::time::sleep(delay).await;
    }
}

async fn open_stream(
    shared: &Shared,
    peer: &Peer,
    lane: Lane,
) -> Result<(mpsc::Sender<pb::Frame>, Streaming<pb::StreamAck>)> {
    let channel = peer.connect(lane).await?;
    let mut client = peer.client(shared, channel);
    let (tx, rx) = mpsc::channel(16);
    let mut request = tonic::Request::new(ReceiverStream::new(rx));
    request.metadata_mut().insert(
        LANE_KEY,
        tonic::metadata::MetadataValue::from_static(lane_name(lane)),
    );
    // A peer that accepts the connection but never answers (hung, stopped) counts as
    // down after `request_timeout`, not after the HTTP/2 keep-alive's much longer wait.
    let response = tokio::time::timeout(shared.config.request_timeout, client.replicate(request))
        .await
        .unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(
                "stream not opened within request_timeout",
            ))
        })
        .map_err(|s| rpc_error(peer.id, s))?;
    Ok((tx, response.into_inner()))
}

async fn pump(
    shared: &Shared,
    peer: &Peer,
    lane: Lane,
    tx: mpsc::Sender<pb::Frame>,
    mut acks: Streaming<pb::StreamAck>,
    first: Vec<Message>,
    backoff: &mut Backoff,
) -> Session {
    let cfg = &shared.config;
    let name = lane_name(lane);
    let queue = peer.queue(lane);
    let mut seq = 0u64;
    // Frames sent and not yet acked: (seq, encoded size, when sent).
    let mut in_flight: VecDeque<(u64, usize, Instant)> = VecDeque::new();
    let mut in_flight_bytes = 0usize;
    let mut next = Some(first);
    loop {
        if let Some(batch) = next.take()
            && let Some((frame, size)) = frame_for(shared, peer.id, seq + 1, &batch)
        {
            seq += 1;
            if tx.send(frame).await.is_err() {
                count_dropped(batch.len(), "disconnected");
                return Session::Broken("request stream closed".into());
            }
            counter!(m::FRAMES_SENT, "lane" => name).increment(1);
            counter!(m::MESSAGES_SENT, "lane" => name).increment(batch.len() as u64);
            in_flight.push_back((seq, size, Instant::now()));
            in_flight_bytes += size;
        }
        let window_open = in_flight_bytes < cfg.stream_window_bytes;
        // The light lane's liveness check: its oldest unacked frame must be acked in time.
        let ack_deadline = match (lane, in_flight.front()) {
            (Lane::Light, Some(&(_, _, sent))) => Some(sent + cfg.request_timeout),
            _ => None,
        };
        tokio::select! {
            biased;
            ack = acks.message() => match ack {
                Ok(Some(ack)) => {
                    while let Some(&(s, size, _)) = in_flight.front() {
                        if s > ack.seq {
                            break;
                        }
                        in_flight.pop_front();
                        in_flight_bytes -= size;
                    }
                    backoff.reset();
                }
                Ok(None) => return Session::Broken("peer ended the stream".into()),
                Err(status) => return Session::Broken(format!("{}: {}", status.code(), status.message())),
            },
            batch = queue.pop_batch(cfg.max_frame_messages, cfg.max_frame_bytes), if window_open => {
                match batch {
                    Some(batch) => next = Some(batch),
                    None => return Session::Closed,
                }
            }
            _ = sleep_until_opt(ack_deadline), if ack_deadline.is_some() => {
                return Session::Broken("no ack within request_timeout".into());
            }
        }
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Sends a snapshot's data to `peer`, resuming after failures, up to the configured number
/// of attempts.
pub(crate) async fn transfer_snapshot(
    shared: &Shared,
    peer: &Peer,
    term: u64,
    meta: &SnapshotMeta,
    source: &dyn SnapshotSource,
) -> Result<()> {
    let started = Instant::now();
    let mut backoff = Backoff::new(shared.config.backoff, seed_for(peer.id) ^ 0x5a);
    let mut attempt = 1;
    loop {
        match snapshot_attempt(shared, peer, term, meta, source).await {
            Ok(()) => {
                histogram!(m::SNAPSHOT_SEND_SECONDS).record(started.elapsed().as_secs_f64());
                return Ok(());
            }
            Err(e) if attempt >= shared.config.snapshot_attempts => return Err(e),
            Err(e) => {
                let delay = backoff.next_delay();
                warn!(peer = peer.id, attempt, error = %e, ?delay, "snapshot transfer failed; resuming after back-off");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

async fn snapshot_attempt(
    shared: &Shared,
    peer: &Peer,
    term: u64,
    meta: &SnapshotMeta,
    source: &dyn SnapshotSource,
) -> Result<()> {
    let cfg = &shared.config;
    if shared.is_isolated() {
        return Err(Error::Snapshot(
            "the fault switch isolates this node".into(),
        ));
    }
    let channel = peer.connect(Lane::Stream).await?;
    let mut client = peer.client(shared, channel);
    let header = ChunkHeader {
        cluster_id: cfg.cluster_id,
        from: cfg.node_id,
        to: peer.id,
        term,
    };
    let pmeta = meta_to_pb(meta);
    let total_len = source.len();
    let probe = pb::SnapshotProbe {
        cluster_id: cfg.cluster_id,
        from: cfg.node_id,
        to: peer.id,
        term,
        meta: Some(pmeta.clone()),
        total_len,
    };
    let offset = client
        .snapshot_offset(probe)
        .await
        .map_err(|s| rpc_error(peer.id, s))?
        .into_inner()
        .received;
    if offset > total_len {
        return Err(Error::Snapshot(format!(
            "peer {} claims {offset} bytes of a {total_len}-byte snapshot",
            peer.id
        )));
    }
    if offset > 0 {
        debug!(
            peer = peer.id,
            offset, total_len, "resuming snapshot transfer"
        );
    }
    let crc = prefix_checksum(source, offset).await?;
    let (tx, rx) = mpsc::channel(4);
    let produce = produce_chunks(header, pmeta, source, offset, crc, shared.compression(), tx);
    let call = client.install_snapshot(ReceiverStream::new(rx));
    let (produced, answer) = tokio::join!(produce, call);
    produced?;
    let ack = answer.map_err(|s| rpc_error(peer.id, s))?.into_inner();
    if !ack.installed {
        return Err(Error::Snapshot(format!(
            "peer {} stopped at {} of {total_len} bytes",
            peer.id, ack.received
        )));
    }
    Ok(())
}
