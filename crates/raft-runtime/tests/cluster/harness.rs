//! The test cluster: a channel transport with link switches, a KV state machine whose
//! state survives a node restart, and helpers to wait for leaders and progress.

use bytes::Bytes;
use raft_core::{Membership, Message, MessageBody, NodeId, ReadMode, Role};
use raft_log::{Settings, Wal};
use raft_runtime::{
    BoxError, BoxFuture, Committed, Inbound, Payload, RaftHandle, RaftNode, RuntimeConfig,
    StateMachine, Transport, WalStore,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Routes messages between nodes; links can be cut.
#[derive(Default)]
pub struct Router {
    inboxes: Mutex<HashMap<NodeId, mpsc::Sender<Message>>>,
    /// Nodes cut off from everyone.
    isolated: Mutex<HashSet<NodeId>>,
    /// The names of the threads that sent append answers.
    pub append_answer_threads: Mutex<HashSet<String>>,
}

impl Router {
    fn deliver(&self, msg: Message) -> bool {
        if let MessageBody::AppendResponse(_) = msg.body {
            let name = std::thread::current().name().unwrap_or("").to_string();
            self.append_answer_threads.lock().unwrap().insert(name);
        }
        {
            let iso = self.isolated.lock().unwrap();
            if iso.contains(&msg.from) || iso.contains(&msg.to) {
                return false;
            }
        }
        let tx = self.inboxes.lock().unwrap().get(&msg.to).cloned();
        match tx {
            Some(tx) => tx.try_send(msg).is_ok(),
            None => false,
        }
    }

    /// Cuts `id` off from every other node (both directions).
    pub fn isolate(&self, id: NodeId) {
        self.isolated.lock().unwrap().insert(id);
    }

    /// Restores every link.
    pub fn heal(&self) {
        self.isolated.lock().unwrap().clear();
    }
}

/// The transport of one node. Like a real one, it only reaches peers it was told about.
pub struct ChanTransport {
    pub router: Arc<Router>,
    pub peers: Mutex<HashSet<NodeId>>,
}

impl ChanTransport {
    pub fn new(router: Arc<Router>) -> Self {
        Self {
            router,
            peers: Mutex::default(),
        }
    }

    fn knows(&self, id: NodeId) -> bool {
        self.peers.lock().unwrap().contains(&id)
    }
}

impl Transport for ChanTransport {
    fn send(&self, msg: Message) {
        if self.knows(msg.to) {
            self.router.deliver(msg);
        }
    }

    fn send_snapshot(&self, msg: Message) -> BoxFuture<Result<(), BoxError>> {
        // The data moves out of band: the receiving state machine reads it from the shared
        // snapshot store (see `KvState::snapshots`).
        let ok = matches!(msg.body, MessageBody::InstallSnapshot(_))
            && self.knows(msg.to)
            && self.router.deliver(msg);
        Box::pin(async move { if ok { Ok(()) } else { Err("link down".into()) } })
    }

    fn add_peer(&self, id: NodeId) {
        self.peers.lock().unwrap().insert(id);
    }

    fn remove_peer(&self, id: NodeId) {
        self.peers.lock().unwrap().remove(&id);
    }
}

/// What the KV state machine holds; shared so that a restarted node keeps it (as a durable
/// state machine would).
#[derive(Default, Debug)]
pub struct KvState {
    pub map: BTreeMap<String, String>,
    pub applied: u64,
    /// Every index given to `apply` since the node (re)started.
    pub seen: Vec<u64>,
    /// Memberships announced by applied configuration changes, in order.
    pub memberships: Vec<Membership>,
}

/// Snapshots built by any node, by index (the "snapshot store" the transport reads).
pub type SnapshotStore = Arc<Mutex<BTreeMap<u64, BTreeMap<String, String>>>>;

/// Commands: `put <key> <value>`; the response is the previous value.
pub struct KvSm {
    pub state: Arc<Mutex<KvState>>,
    pub snapshots: SnapshotStore,
}

impl StateMachine for KvSm {
    type Response = Option<String>;

    fn apply(&mut self, batch: &[Committed]) -> Result<Vec<Option<String>>, BoxError> {
        let mut s = self.state.lock().unwrap();
        let mut out = Vec::with_capacity(batch.len());
        for e in batch {
            assert!(
                e.index > s.applied,
                "entry {} applied again (applied {})",
                e.index,
                s.applied
            );
            s.seen.push(e.index);
            s.applied = e.index;
            out.push(match &e.payload {
                Payload::Command(cmd) => {
                    let text = std::str::from_utf8(cmd)?;
                    let mut parts = text.splitn(3, ' ');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some("put"), Some(k), Some(v)) => s.map.insert(k.into(), v.into()),
                        _ => Some("bad command".into()),
                    }
                }
                Payload::ConfChange {
                    membership: Some(m),
                    ..
                } => {
                    s.memberships.push(m.clone());
                    None
                }
                _ => None,
            });
        }
        Ok(out)
    }

    /// Answers before "writing" (as raftd's store does), so every scenario runs the early
    /// answer path. Two commands model a state machine's failures around the answer:
    /// `fail-after-answer` fails after answering (a storage write that fails), `no-answer`
    /// returns without answering (a broken implementation).
    fn apply_and_answer(
        &mut self,
        batch: &[Committed],
        answer: &mut dyn FnMut(Vec<Option<String>>),
    ) -> Result<(), BoxError> {
        let has = |cmd: &[u8]| {
            batch
                .iter()
                .any(|e| matches!(&e.payload, Payload::Command(c) if c.as_ref() == cmd))
        };
        let responses = self.apply(batch)?;
        if has(b"no-answer") {
            return Ok(());
        }
        answer(responses);
        if has(b"fail-after-answer") {
            return Err("the write after the answer failed".into());
        }
        Ok(())
    }

    fn applied_index(&self) -> u64 {
        self.state.lock().unwrap().applied
    }

    fn snapshot(
        &mut self,
        meta: &raft_core::SnapshotMeta,
    ) -> Result<raft_runtime::SnapshotBuilder, BoxError> {
        let s = self.state.lock().unwrap();
        // The runtime asks for a snapshot at the index applied when it asked: nothing may
        // have been applied in between (by the apply thread or the event loop).
        assert_eq!(
            s.applied, meta.index,
            "snapshot asked at {} but the state machine is at {}",
            meta.index, s.applied
        );
        let view = s.map.clone();
        drop(s);
        let store = self.snapshots.clone();
        let index = meta.index;
        Ok(Box::new(move || {
            store.lock().unwrap().insert(index, view);
            Ok(())
        }))
    }

    fn restore(&mut self, meta: &raft_core::SnapshotMeta) -> Result<(), BoxError> {
        let data = if meta.index == 0 {
            BTreeMap::new()
        } else {
            self.snapshots
                .lock()
                .unwrap()
                .get(&meta.index)
                .cloned()
                .ok_or("snapshot data missing")?
        };
        let mut s = self.state.lock().unwrap();
        s.map = data;
        s.applied = meta.index;
        Ok(())
    }
}

/// One node of the test cluster.
pub struct TestNode {
    pub handle: RaftHandle<KvSm>,
    pub state: Arc<Mutex<KvState>>,
}

/// A cluster in one process.
pub struct Cluster {
    pub router: Arc<Router>,
    pub nodes: BTreeMap<NodeId, TestNode>,
    pub snapshots: SnapshotStore,
    pub dir: tempfile::TempDir,
    pub snapshot_threshold: u64,
    pub read_mode: ReadMode,
    /// `RuntimeConfig::apply_linger` of the nodes launched from now on.
    pub apply_linger: Duration,
    /// `RuntimeConfig::apply_inline_max_entries` of the nodes launched from now on.
    pub apply_inline_max_entries: usize,
}

pub fn config(
    id: NodeId,
    bootstrap: Option<Membership>,
    snapshot_threshold: u64,
    read_mode: ReadMode,
) -> RuntimeConfig {
    let ms = Duration::from_millis;
    let mut cfg = RuntimeConfig::new(id);
    cfg.raft = raft_core::Config::from_durations(id, ms(10), ms(30), ms(300), ms(200), ms(0))
        .expect("valid timing");
    cfg.raft.read_mode = read_mode;
    cfg.tick = ms(10);
    cfg.bootstrap = bootstrap;
    cfg.request_timeout = Duration::from_secs(4);
    cfg.snapshot_threshold = snapshot_threshold;
    cfg
}

impl Cluster {
    /// Starts a new cluster of voters `1..=n`.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, 0).await
    }

    /// Starts a new cluster that snapshots every `threshold` entries (0: never).
    pub async fn start_with(n: u64, snapshot_threshold: u64) -> Cluster {
        Self::start_opts(n, snapshot_threshold, ReadMode::Safe).await
    }

    /// Starts a new cluster with the given snapshot threshold and read mode.
    pub async fn start_opts(n: u64, snapshot_threshold: u64, read_mode: ReadMode) -> Cluster {
        let mut c = Cluster {
            router: Arc::new(Router::default()),
            nodes: BTreeMap::new(),
            snapshots: Arc::default(),
            dir: tempfile::tempdir().unwrap(),
            snapshot_threshold,
            read_mode,
            apply_linger: RuntimeConfig::new(1).apply_linger,
            apply_inline_max_entries: RuntimeConfig::new(1).apply_inline_max_entries,
        };
        for id in 1..=n {
            let state = Arc::new(Mutex::new(KvState::default()));
            let boot = Some(Membership::with_voters(1..=n));
            c.launch(id, state, boot).await;
        }
        c
    }

    /// Starts node `id` over its WAL directory with `state` as its state machine's
    /// durable state.
    pub async fn launch(
        &mut self,
        id: NodeId,
        state: Arc<Mutex<KvState>>,
        bootstrap: Option<Membership>,
    ) {
        state.lock().unwrap().seen.clear();
        let wal_dir = self.dir.path().join(format!("wal-{id}"));
        let settings = Settings {
            segment_size: 1 << 20,
            ..Settings::default()
        };
        let wal = Arc::new(Wal::open(&wal_dir, settings).expect("open wal"));
        let (tx, rx) = mpsc::channel(4096);
        let (_utx, urx) = mpsc::channel(16);
        self.router.inboxes.lock().unwrap().insert(id, tx);
        let sm = KvSm {
            state: state.clone(),
            snapshots: self.snapshots.clone(),
        };
        let transport = Arc::new(ChanTransport::new(self.router.clone()));
        let mut cfg = config(id, bootstrap, self.snapshot_threshold, self.read_mode);
        cfg.apply_linger = self.apply_linger;
        cfg.apply_inline_max_entries = self.apply_inline_max_entries;
        let handle = RaftNode::start(
            cfg,
            WalStore::new(wal),
            sm,
            transport,
            Inbound {
                messages: rx,
                priority: None,
                unreachable: urx,
            },
        )
        .await
        .expect("start node");
        self.nodes.insert(id, TestNode { handle, state });
    }

    /// Stops node `id` (its state machine's state is kept for a restart).
    pub async fn stop(&mut self, id: NodeId) -> Arc<Mutex<KvState>> {
        let n = self.nodes.remove(&id).expect("running");
        self.router.inboxes.lock().unwrap().remove(&id);
        n.handle.shutdown().await.expect("clean shutdown");
        n.state
    }

    pub fn handle(&self, id: NodeId) -> &RaftHandle<KvSm> {
        &self.nodes[&id].handle
    }

    /// Waits until the given nodes agree on one leader (among them) and returns it.
    pub async fn wait_leader_among(&self, ids: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut leaders = HashSet::new();
            let mut leader_roles = 0;
            for id in ids {
                let s = self.handle(*id).status().await.expect("status");
                leaders.insert(s.leader);
                if s.role == Role::Leader {
                    leader_roles += 1;
                }
            }
            if leaders.len() == 1
                && leader_roles == 1
                && let Some(Some(l)) = leaders.into_iter().next()
                && ids.contains(&l)
            {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader among {ids:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_leader(&self) -> NodeId {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        self.wait_leader_among(&ids).await
    }

    /// Waits until node `id` has applied at least `index`.
    pub async fn wait_applied(&self, id: NodeId, index: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.nodes[&id].state.lock().unwrap().applied < index {
            assert!(Instant::now() < deadline, "node {id} did not apply {index}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The value of `key` read linearizably on node `id`.
    pub async fn get(&self, id: NodeId, key: &str) -> Option<String> {
        let key = key.to_string();
        self.handle(id)
            .linearizable_read(move |sm: &KvSm| sm.state.lock().unwrap().map.get(&key).cloned())
            .await
            .expect("linearizable read")
    }
}

/// `put <key> <value>` as a command.
pub fn put(key: &str, value: &str) -> Bytes {
    Bytes::from(format!("put {key} {value}"))
}
