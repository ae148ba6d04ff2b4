//! Hot reload: the running configuration lives in an [`ArcSwap`]; a reload (SIGHUP, a change
//! of the file, or the `ReloadConfig` rpc) reads the file again with the same command-line
//! overrides, refuses it when it is invalid or changes a setting fixed at start, and
//! otherwise applies the changed settings to the runtime, the transport and the log filter.
//! Every reload also re-reads the TLS certificate, key and CA files (`[tls]`): renewed
//! files take effect for new connections, established ones are kept.

use crate::config::{ConfigError, ConfigSource, DiffError, NodeConfig};
use crate::logging::LogHandle;
use arc_swap::ArcSwap;
use metrics::counter;
use raft_kv::KvStore;
use raft_kv::autocompact::AutoCompactor;
use raft_kv::machine::KvMachine;
use raft_metrics::node as m;
use raft_runtime::RaftHandle;
use std::sync::Arc;
use std::time::Duration;

/// What a reload reports as changed when new TLS certificate files were taken.
pub const TLS_FILES: &str = "tls (certificate files)";

/// Why a reload was refused; the configuration in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// raftd was started without `--config`: there is nothing to re-read.
    #[error("raftd was started without --config: there is no file to reload")]
    NoFile,
    /// The new file (with the flags) is not a valid configuration.
    #[error("the new configuration is invalid: {0}")]
    Invalid(#[from] ConfigError),
    /// The new file changes settings that need a restart.
    #[error(transparent)]
    Fixed(#[from] DiffError),
    /// The runtime refused the new settings.
    #[error("the runtime refused the new settings: {0}")]
    Refused(String),
    /// A TLS certificate, key or CA file could not be read or used; the listener keeps the
    /// material it had.
    #[error("TLS files not reloaded: {0}")]
    Tls(String),
}

impl ReloadError {
    /// The `reason` label of the failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            ReloadError::NoFile => "no_file",
            ReloadError::Invalid(_) => "invalid",
            ReloadError::Fixed(_) => "fixed_key",
            ReloadError::Refused(_) => "refused",
            ReloadError::Tls(_) => "tls",
        }
    }
}

/// The running configuration of a node and what applies a new one.
pub struct Reloader {
    source: ConfigSource,
    current: ArcSwap<NodeConfig>,
    log: Option<LogHandle>,
    handle: RaftHandle<KvMachine>,
    net: raft_net::PeerTransport,
    /// Auto-compaction and the store's compaction pace, when the node runs them.
    compaction: Option<(Arc<AutoCompactor>, KvStore)>,
    /// The TLS material re-read at every reload, when TLS is on.
    tls: Option<Arc<crate::security::TlsMaterial>>,
    /// The backup, whose retention policy reloads.
    backup: Option<Arc<super::backup::Backup>>,
    /// The space quota the etcd services read (`quota_backend_bytes`).
    quota: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The corruption check interval in milliseconds (`corrupt_check_interval`; 0: off).
    corrupt_check: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// One reload at a time.
    busy: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("file", &self.source.file)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// A reloader starting from `config` (loaded from `source`).
    pub fn new(
        config: NodeConfig,
        source: ConfigSource,
        log: Option<LogHandle>,
        handle: RaftHandle<KvMachine>,
        net: raft_net::PeerTransport,
    ) -> Self {
        Self {
            source,
            current: ArcSwap::from_pointee(config),
            log,
            handle,
            net,
            compaction: None,
            tls: None,
            backup: None,
            quota: None,
            corrupt_check: None,
            busy: tokio::sync::Mutex::new(()),
        }
    }

    /// Re-reads `tls`'s certificate files at every reload.
    pub fn with_tls(mut self, tls: Arc<crate::security::TlsMaterial>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Applies `compaction.*` changes to `auto` and `store`.
    pub fn with_compaction(mut self, auto: Arc<AutoCompactor>, store: KvStore) -> Self {
        self.compaction = Some((auto, store));
        self
    }

    /// Stores `corrupt_check_interval` changes in `interval_ms` (read by the corruption
    /// check, `super::corruption`).
    pub fn with_corrupt_check(mut self, interval_ms: Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.corrupt_check = Some(interval_ms);
        self
    }

    /// Stores `quota_backend_bytes` changes in `quota` (read by the etcd services).
    pub fn with_quota(mut self, quota: Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.quota = Some(quota);
        self
    }

    /// Applies `backup.keep_for` and `backup.keep_bases` changes to the uploader.
    pub fn with_backup(mut self, backup: Option<Arc<super::backup::Backup>>) -> Self {
        self.backup = backup;
        self
    }

    /// The configuration in force.
    pub fn current(&self) -> Arc<NodeConfig> {
        self.current.load_full()
    }

    /// The configuration file, if raftd was started with one.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.source.file.as_deref()
    }

    /// Reloads (see the module documentation) and returns the keys that changed; counts
    /// the outcome under `trigger` (`sighup`, `file` or `rpc`).
    pub async fn reload(&self, trigger: &'static str) -> Result<Vec<&'static str>, ReloadError> {
        let _one = self.busy.lock().await;
        let outcome = self.apply().await;
        match &outcome {
            Ok(changed) => {
                counter!(m::CONFIG_RELOADS, "trigger" => trigger).increment(1);
                tracing::info!(trigger, changed = ?changed, "configuration reloaded");
            }
            Err(e) => {
                counter!(m::CONFIG_RELOAD_FAILURES, "trigger" => trigger, "reason" => e.reason())
                    .increment(1);
                tracing::warn!(trigger, error = %e, "configuration reload refused");
            }
        }
        outcome
    }

    async fn apply(&self) -> Result<Vec<&'static str>, ReloadError> {
        if self.source.file.is_none() {
            // Flags only: nothing to re-read but the certificate files.
            let Some(tls) = &self.tls else {
                return Err(ReloadError::NoFile);
            };
            let current = self.current.load_full();
            let renewed = tls.reload(&current.tls).map_err(ReloadError::Tls)?;
            return Ok(if renewed { vec![TLS_FILES] } else { vec![] });
        }
        let new = self.source.load()?;
        let old = self.current.load_full();
        let mut changed = old.diff(&new)?;
        if let Some(tls) = &self.tls
            && tls.reload(&new.tls).map_err(ReloadError::Tls)?
        {
            changed.push(TLS_FILES);
        }
        if changed.iter().all(|k| *k == TLS_FILES) {
            return Ok(changed);
        }
        // The runtime first: it is the only part that may still refuse.
        if changed.iter().any(|k| k.starts_with("raft.")) {
            let rc = super::runtime_config(&new)?;
            self.handle
                .reconfigure(rc)
                .await
                .map_err(|e| ReloadError::Refused(e.to_string()))?;
        }
        if changed.iter().any(|k| k.starts_with("compression.")) {
            self.net.set_compression(new.compression.to_net());
        }
        if changed.iter().any(|k| k.starts_with("compaction."))
            && let Some((auto, store)) = &self.compaction
        {
            // Validation parsed the policy already.
            auto.set(new.compaction.policy()?);
            store.set_compaction_rate(new.compaction.max_rate.get());
        }
        if changed.iter().any(|k| k.starts_with("backup."))
            && let Some(backup) = &self.backup
        {
            backup.set_retention(&new.backup);
        }
        if changed.contains(&"quota_backend_bytes")
            && let Some(quota) = &self.quota
        {
            quota.store(
                new.quota_backend_bytes.get(),
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if changed.contains(&"corrupt_check_interval")
            && let Some(interval) = &self.corrupt_check
        {
            interval.store(
                new.corrupt_check_interval.as_millis() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        if changed.contains(&"log_filter")
            && let Some(log) = &self.log
            && let Err(e) = log.set_filter(&new.log_filter)
        {
            // Validation parsed this filter already; keep going with the old one.
            tracing::warn!(error = %e, "log_filter not changed");
        }
        self.current.store(Arc::new(new));
        Ok(changed)
    }

    /// Reloads whenever the file's contents change, checking every `every` (runs until
    /// aborted). A half-written file is refused and retried at the next change.
    pub async fn watch_file(self: Arc<Self>, every: Duration) {
        let Some(file) = self.source.file.clone() else {
            return;
        };
        // A small file read once a second: blocking the worker that long is harmless.
        let mut last = std::fs::read(&file).ok();
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let now = std::fs::read(&file).ok();
            if now.is_some() && now != last {
                last = now;
                let _ = self.reload("file").await;
            }
        }
    }

    /// Reloads on every SIGHUP (runs until aborted).
    pub async fn on_sighup(self: Arc<Self>, mut hup: tokio::signal::unix::Signal) {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received, reloading the configuration");
            let _ = self.reload("sighup").await;
        }
    }
}
