//! Running a node: open the WAL and the key-value store, start the peer transport and the
//! runtime, serve the etcd v3 API, publish this member's attributes, and shut everything
//! down in order on SIGTERM or SIGINT.

pub mod backup;
mod client_port;
pub mod cluster_id;
pub mod corruption;
pub mod faults;
pub mod lease;
mod recover;
pub mod reload;
pub mod snapshots;
pub mod transport;

use crate::admin::AdminService;
use crate::config::{ConfigError, ConfigSource, NodeConfig, strip_scheme};
use crate::logging::LogHandle;
use crate::security::{OperatorPolicy, TlsMaterial};
use raft_core::Membership;
use raft_kv::address_book::AddressBook;
use raft_kv::autocompact::AutoCompactor;
use raft_kv::lease::keeper::LeaseKeeper;
use raft_kv::machine::{KvMachine, SnapshotCtx};
use raft_kv::pb::kvcmd::MemberAttributes;
use raft_kv::service::{Ctx, EtcdService};
use raft_kv::watch::WatchHub;
use raft_kv::{Command, KvStore, Op, Outcome};
use raft_runtime::{RaftHandle, RaftNode, RuntimeConfig, WalStore};
use reload::Reloader;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use transport::NetTransport;

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The write-ahead log failed.
    #[error("write-ahead log: {0}")]
    Log(#[from] raft_log::Error),
    /// The key-value store failed.
    #[error("key-value store: {0}")]
    Kv(#[from] raft_kv::Error),
    /// The peer transport failed.
    #[error("peer transport: {0}")]
    Net(#[from] raft_net::Error),
    /// The runtime failed.
    #[error("raft runtime: {0}")]
    Runtime(#[from] raft_runtime::Error),
    /// The client API server failed.
    #[error("client API server: {0}")]
    Serve(String),
    /// The Raft node stopped on a fatal error (a failed log write or apply): raftd stops
    /// with it (fail-stop).
    #[error("the raft node stopped: {0}")]
    Stopped(String),
    /// The snapshot store failed.
    #[error("snapshot store: {0}")]
    Snapshot(#[from] raft_snapshot::Error),
    /// The cluster id could not be read, written or learned, or the data dir belongs to
    /// another cluster.
    #[error("cluster id: {0}")]
    ClusterId(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> NodeError {
    let what = what.into();
    move |source| NodeError::Io { what, source }
}

/// Runs the node described by `config` (loaded from `source`) until SIGTERM or SIGINT;
/// reloads the configuration on SIGHUP and when the file changes.
pub async fn run(
    config: NodeConfig,
    source: ConfigSource,
    log: LogHandle,
) -> Result<(), NodeError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(io("installing the SIGTERM handler"))?;
    // Installed before anything else: SIGHUP's default action would end the process.
    let hup = signal(SignalKind::hangup()).map_err(io("installing the SIGHUP handler"))?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        }
    };
    let mut node = Node::start(&config, source, Some(log)).await?;
    node.watch(hup);
    node.run_until(stop).await
}

/// The runtime settings of `config` (at start and at every reload).
pub fn runtime_config(config: &NodeConfig) -> Result<RuntimeConfig, ConfigError> {
    let mut rc = RuntimeConfig::new(config.id);
    rc.raft = config.raft_core_config()?;
    rc.tick = config.raft.tick_interval;
    rc.request_timeout = config.raft.request_timeout;
    rc.max_batch_proposals = config.raft.max_batch_proposals;
    rc.snapshot_threshold = config.raft.snapshot_threshold;
    rc.snapshot_log_bytes = config.raft.snapshot_log_bytes.get();
    rc.apply_linger = config.raft.apply_linger;
    rc.apply_inline_max_entries = config.raft.apply_inline_max_entries;
    Ok(rc)
}

/// A started node.
pub struct Node {
    handle: RaftHandle<KvMachine>,
    store: KvStore,
    net: raft_net::PeerTransport,
    net_server: raft_net::ServerHandle,
    api: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    api_stop: oneshot::Sender<()>,
    publisher: tokio::task::JoinHandle<()>,
    /// The HTTP endpoint on `listen_metrics`, when configured.
    http: Option<tokio::task::JoinHandle<()>>,
    reloader: Arc<Reloader>,
    /// Background tasks stopped at shutdown (the fault switch, reload watchers).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Snapshot upload and WAL archiving, with `[backup]`.
    backup: Option<Arc<backup::Backup>>,
    /// Proposes compactions while this node leads (stopped when dropped).
    _autocompact: Arc<AutoCompactor>,
    _lease_keeper: LeaseKeeper,
}

impl Node {
    /// Opens the data directory and starts every component.
    /// `source` is where `config` came from (re-read at every reload) and `log` changes the
    /// log filter.
    pub async fn start(
        config: &NodeConfig,
        source: ConfigSource,
        log: Option<LogHandle>,
    ) -> Result<Node, NodeError> {
        let id = config.id;
        let data = config.data_dir();
        // Durably (each new directory synced into its parent): after a power loss a data
        // dir whose own entry never reached the disk is lost whole, WAL and all.
        raft_fs::Fs::create_dir_all(&raft_fs::StdFs, &data)
            .map_err(io(format!("creating the data dir {}", data.display())))?;
        // The recorder goes in before anything records (the runtime registers its handles
        // when it starts); the endpoint is served once the node is up.
        let metrics_listener = match config.metrics_addr() {
            None => None,
            Some(addr) => {
                let listener = TcpListener::bind(&addr)
                    .await
                    .map_err(io(format!("binding the metrics address {addr}")))?;
                let recorder = raft_metrics::install_recorder()
                    .inspect_err(|e| tracing::warn!(%e, "metrics are not recorded"))
                    .ok();
                Some((listener, recorder))
            }
        };
        // TLS material first: a bad file stops the node before it touches its data.
        let members = config.initial_members()?;
        let peer_tls = config.tls.peer_config()?;
        let client_pem = config.tls.client_pem()?;
        let (client_tls, metrics_tls) = crate::security::acceptors(client_pem.as_ref())?;
        let jwt = config.auth.jwt_tokens()?;
        // Before the WAL is opened (and its directory created): an old data dir is told
        // apart from a new one by its WAL.
        let cluster_id = cluster_id::resolve(config, &data, &members, peer_tls.as_ref()).await?;
        let wal = Arc::new(match faults::wal_fs() {
            // Testing only: fsyncs that fail on demand, or skipped (chaos runs).
            Some(fs) => raft_log::Wal::open_with(fs, data.join("wal"), config.wal_settings())?,
            None => raft_log::Wal::open(data.join("wal"), config.wal_settings())?,
        });
        let store = KvStore::open(data.join("kv"))?;
        store.set_auth_token_ttl(config.auth.token_ttl);
        store.set_jwt_tokens(jwt);
        let snapshots = raft_snapshot::SnapshotStore::open_dir(
            data.join("snap"),
            raft_snapshot::StoreOptions::default(),
        )?;
        recover::finish_interrupted_restore(&store, &snapshots, &wal)?;
        // Fed by apply from here on; what is applied before it hears of is caught up from
        // the store's history.
        let watch_hub = WatchHub::for_store(&store, config.watch.hub_config())
            .map_err(io("starting the watch hub".to_string()))?;
        let (backup_config, deprecated) = config.effective_backup()?;
        if let Some(warning) = deprecated {
            tracing::warn!("{warning}");
        }
        let backup = backup::Backup::start(&backup_config, id, &snapshots, &wal)?.map(Arc::new);
        let uploader = backup.as_ref().map(|b| b.uploader.clone());
        let book = AddressBook::new(members.clone());
        let bootstrap = (!config.join).then(|| Membership {
            voters: members.keys().copied().collect(),
            ..Membership::default()
        });
        let machine = KvMachine::new(store.clone(), book.clone(), bootstrap.clone())
            .with_snapshots(SnapshotCtx {
                store: snapshots.clone(),
                policy: config.snapshot.policy(),
                uploader: uploader.clone(),
                max_build_rate: config.snapshot.max_build_rate.get(),
            });

        let (inbound, rx) = raft_net::Inbound::channels_with_priority(
            4096,
            Arc::new(snapshots::StoreSink::new(snapshots.clone())),
        );
        let mut net_config = config.transport_config(cluster_id);
        net_config.tls = peer_tls.clone();
        let net = raft_net::PeerTransport::new(net_config, inbound)?;
        {
            // `MemberUpdate`: dial a member at its new peer URL once the change is applied.
            let net = net.clone();
            book.on_move(Arc::new(move |peer, addr| {
                if peer == id {
                    return;
                }
                tracing::info!(peer, addr, "peer address changed; dialing the new one");
                if let Err(e) = net.add_peer(peer, addr) {
                    tracing::warn!(peer, %e, "cannot dial the new peer address");
                }
            }));
        }
        if config.join {
            // The transport refuses frames from ids that are not its peers, and a joining
            // node learns the membership only from the leader's snapshot: accept the
            // members it was told to join through (every member, as `raftctl member add`
            // prints them) until then.
            for (&peer, addr) in members.iter().filter(|(p, _)| **p != id) {
                net.add_peer(peer, addr.clone())?;
            }
        }
        let peer_addr = strip_scheme(&config.listen_peer).to_string();
        let peer_listener = TcpListener::bind(&peer_addr)
            .await
            .map_err(io(format!("binding the peer address {peer_addr}")))?;
        let net_server = net.serve(peer_listener)?;
        let client_addr = strip_scheme(&config.listen_client).to_string();
        let client_listener = TcpListener::bind(&client_addr)
            .await
            .map_err(io(format!("binding the client address {client_addr}")))?;

        let mut rc = runtime_config(config)?;
        rc.bootstrap = bootstrap;
        let transport = Arc::new(
            NetTransport::new(net.clone(), book.clone()).with_snapshot_store(snapshots.clone()),
        );
        let handle = RaftNode::start(
            rc,
            WalStore::new(wal),
            machine,
            transport,
            raft_runtime::Inbound {
                messages: rx.messages,
                priority: rx.priority,
                unreachable: rx.unreachable,
            },
        )
        .await?;

        store.set_compaction_rate(config.compaction.max_rate.get());
        let autocompact = Arc::new(AutoCompactor::spawn(
            handle.clone(),
            store.clone(),
            id,
            config.compaction.policy()?,
        ));
        let quota = Arc::new(std::sync::atomic::AtomicU64::new(
            config.quota_backend_bytes.get(),
        ));
        let corrupt_check = Arc::new(std::sync::atomic::AtomicU64::new(
            config.corrupt_check_interval.as_millis() as u64,
        ));
        let mut reloader = Reloader::new(config.clone(), source, log, handle.clone(), net.clone())
            .with_compaction(autocompact.clone(), store.clone())
            .with_quota(quota.clone())
            .with_corrupt_check(corrupt_check.clone())
            .with_backup(backup.clone());
        if client_tls.is_some() || peer_tls.is_some() {
            reloader = reloader.with_tls(Arc::new(TlsMaterial::new(
                client_tls.clone(),
                metrics_tls.clone(),
                net.clone(),
                client_pem,
                peer_tls,
            )));
        }
        let reloader = Arc::new(reloader);
        let mut tasks = Vec::new();
        if faults::enabled() {
            let net = net.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = faults::serve(net).await {
                    tracing::warn!(%e, "fault switch not installed");
                }
            }));
        }
        let limit = config.request_size_limit.as_usize();
        let service = EtcdService::new(Ctx {
            handle: handle.clone(),
            store: store.clone(),
            book,
            cluster_id,
            member_id: id,
            limits: raft_kv::validate::Limits {
                max_request_bytes: limit,
                max_range_bytes: config.limits.max_range_response_bytes.as_usize(),
                ..Default::default()
            },
        })
        .with_watch(watch_hub)
        .with_auth(config.auth.options())
        .with_space_quota(quota)
        .with_snapshot_spool(data.join("tmp"))
        .with_leases(raft_kv::service::LeaseOptions {
            min_ttl: config.lease_min_ttl(),
            forward: Some(Arc::new(lease::PeerChannel(net.clone()))),
        });
        if let Some(hub) = service.watch_hub().cloned() {
            tasks.push(tokio::spawn(watch_gauges(hub)));
        }
        net.set_app_handler(Some(Arc::new(lease::LeaseHandler(service.clone()))));
        tasks.push(tokio::spawn(corruption::run(
            service.clone(),
            net.clone(),
            corrupt_check,
        )));
        let lease_keeper = LeaseKeeper::spawn(handle.clone(), store.clone(), config.lease_keeper());
        let (api_stop, stop_rx) = oneshot::channel::<()>();
        // TCP_NODELAY, per-client connection limits and TLS: `client_port`.
        let client_incoming = client_port::incoming(
            client_listener,
            client_tls,
            config.limits.max_connections_per_client,
        );
        let operator = OperatorPolicy::of(&config.tls);
        let admin = AdminService::new(handle.clone())
            .with_reloader(reloader.clone())
            .with_snapshot_store(snapshots.clone());
        let api = tokio::spawn(
            tonic::transport::Server::builder()
                .max_concurrent_streams(config.limits.max_concurrent_streams)
                // Outermost, so calls the operator gate refuses are counted too.
                .layer(crate::grpc_metrics::GrpcMetricsLayer)
                .layer(operator.layer_with_auth(store.clone()))
                .add_routes(service.routes())
                .add_service(admin.into_server())
                .serve_with_incoming_shutdown(client_incoming, async {
                    let _ = stop_rx.await;
                }),
        );
        let http = metrics_listener.map(|(listener, recorder)| {
            crate::http::spawn(
                listener,
                crate::http::HttpState {
                    handle: handle.clone(),
                    metrics: recorder,
                    process: Default::default(),
                    name: config.name(),
                    profiler: crate::profile::Profiler::default(),
                    tls: metrics_tls,
                    operator,
                    backup: backup.clone(),
                    auth: Some(store.clone()),
                },
            )
        });
        let publisher = tokio::spawn(publish_attributes(
            handle.clone(),
            store.clone(),
            MemberAttributes {
                id,
                name: config.name(),
                client_urls: vec![config.advertise_client()],
            },
        ));
        tracing::info!(
            node_id = id,
            name = %config.name(),
            client = %client_addr,
            peer = %peer_addr,
            cluster_id = format_args!("{cluster_id:016x}"),
            client_tls = config.tls.client_tls(),
            peer_tls = config.tls.peer_tls(),
            join = config.join,
            "raftd started"
        );
        Ok(Node {
            handle,
            store,
            net,
            net_server,
            api,
            api_stop,
            publisher,
            http,
            reloader,
            tasks,
            backup,
            _autocompact: autocompact,
            _lease_keeper: lease_keeper,
        })
    }

    /// The backup to an object store, when `[backup]` turns it on.
    pub fn backup(&self) -> Option<&Arc<backup::Backup>> {
        self.backup.as_ref()
    }

    /// The running configuration and its reloads.
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reloader
    }

    /// Reloads the configuration on `hup` (SIGHUP) and whenever the file changes (checked
    /// every second).
    pub fn watch(&mut self, hup: tokio::signal::unix::Signal) {
        let r = self.reloader.clone();
        let on_hup = tokio::spawn(r.clone().on_sighup(hup));
        let on_file = tokio::spawn(r.watch_file(Duration::from_secs(1)));
        self.tasks.extend([on_hup, on_file]);
    }

    /// Serves until `stop` completes (or the API server fails), then shuts down.
    pub async fn run_until(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), NodeError> {
        let handle = self.handle.clone();
        let failed = tokio::select! {
            () = stop => None,
            r = &mut self.api => Some(NodeError::Serve(match r {
                Ok(Ok(())) => "the client API server stopped".to_string(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            })),
            // Fail-stop: after a failed log write or apply the store may hold a batch that
            // was not wholly written; serving reads from it (or anything else) would be
            // wrong, and a supervisor sees an exit, not a process that answers nothing.
            fatal = handle.stopped() => {
                let why = fatal.unwrap_or_else(|| "without an error".to_string());
                let why = why.strip_prefix("the raft node stopped: ").unwrap_or(&why);
                Some(NodeError::Stopped(why.to_string()))
            }
        };
        self.shutdown().await;
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Stops serving clients, stops the runtime (flushing the log), the transport, and
    /// flushes the store. Takes well under a second.
    pub async fn shutdown(self) {
        let started = Instant::now();
        self.publisher.abort();
        if let Some(http) = &self.http {
            http.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
        let _ = self.api_stop.send(());
        let _ = tokio::time::timeout(Duration::from_millis(200), self.api).await;
        if let Err(e) = self.handle.shutdown().await {
            tracing::warn!(%e, "runtime shutdown");
        }
        // The handler holds the services, which hold the transport: break the cycle.
        self.net.set_app_handler(None);
        self.net.close();
        let _ = tokio::time::timeout(Duration::from_millis(200), self.net_server.shutdown()).await;
        if let Err(e) = self.store.flush() {
            tracing::warn!(%e, "flushing the key-value store");
        }
        if let Some(b) = &self.backup {
            let st = b.status();
            if st.snapshots_queued > 0 || st.wal_backlog_segments > 0 {
                tracing::warn!(
                    snapshots = st.snapshots_queued,
                    wal_segments = st.wal_backlog_segments,
                    "backup uploads left unfinished (resumed at the next start)"
                );
            }
        }
        tracing::info!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "raftd stopped"
        );
        // Everything is flushed: skip the slow destructors (sled's background flusher and
        // the log's writer thread are joined there), the process is about to exit.
        std::mem::forget(self.store);
        std::mem::forget(self.handle);
    }
}

/// Sets the watch hub's gauges once a second.
async fn watch_gauges(hub: WatchHub) {
    use raft_metrics::node::{WATCH_STREAMS, WATCH_UNSYNCED, WATCH_WATCHERS};
    loop {
        let s = hub.stats();
        metrics::gauge!(WATCH_WATCHERS).set(s.watchers as f64);
        metrics::gauge!(WATCH_UNSYNCED).set(s.unsynced as f64);
        metrics::gauge!(WATCH_STREAMS).set(s.streams as f64);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Publishes this member's name and client URL through the log once a leader is known,
/// retrying until it is applied (a joining member waits until it is in the member list).
async fn publish_attributes(
    handle: RaftHandle<KvMachine>,
    store: KvStore,
    attrs: MemberAttributes,
) {
    loop {
        let current = store.members().into_iter().find(|m| m.id == attrs.id);
        if current
            .as_ref()
            .is_some_and(|m| m.name == attrs.name && m.client_urls == attrs.client_urls)
        {
            return;
        }
        if current.is_some() && handle.stats().leader.is_some() {
            let cmd = Command::new(0, Op::PublishMember(attrs.clone())).encode();
            match handle.propose(cmd).await {
                Ok(r) if matches!(r.outcome, Outcome::Response(_)) => {
                    tracing::info!(node_id = attrs.id, "member attributes published");
                    return;
                }
                Ok(r) => tracing::debug!(outcome = ?r.outcome, "publishing attributes"),
                Err(e) => tracing::debug!(%e, "publishing attributes"),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
