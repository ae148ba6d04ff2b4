//! What the workload clients record: one JSON object per line, one file per workload.
//!
//! Times are microseconds since the client process's start (a monotonic clock), `t0_unix_us`
//! in `client.json` anchors them to wall-clock time so the orchestrator can line them up with
//! the fault events. An operation's outcome is `ok` (the server answered), `fail` (it
//! definitely did not take effect: the request never left the client, or the answer says so)
//! or `unknown` (a timeout or a broken connection: it may or may not have taken effect). A
//! write that fails with an error is recorded `unknown` unless the error proves otherwise
//! (the connection could not be made, or raftd refused it before it entered the log: `no
//! leader`, `proposal dropped`); that is what makes histories of a cluster under faults
//! checkable without false alarms, and the `fail`s test raftd's claim that a refused write
//! never happens.
//!
//! Files of a run directory:
//! - `register.jsonl`: [`RegisterOp`]s;
//! - `bank.jsonl`: [`BankOp`]s;
//! - `watch-writes.jsonl`: [`WatchWrite`]s (the puts under the watched prefix);
//! - `watch-events.jsonl`: [`WatchRecord`]s (what every watcher received, and its reconnects);
//! - `lock.jsonl`: [`LockOp`]s (lock acquisitions, fenced writes, releases);
//! - `append.jsonl`: [`AppendOp`]s (transactions that append to and read lists);
//! - `sread.jsonl`: [`SreadOp`]s (serializable reads pinned to a member, and the writes);
//! - `client.json`: [`ClientSummary`] (start time, bank total, watch start and end revisions).

use crate::{Error, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

/// How an operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The server answered; the result is definite.
    Ok,
    /// It definitely did not take effect.
    Fail,
    /// It may or may not have taken effect (timeout, connection lost).
    Unknown,
}

/// What a register operation asked (values are small integers, as in Jepsen's register
/// test, so that compare-and-set often succeeds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "f")]
pub enum RegisterCall {
    /// A linearizable read of the key.
    Read,
    /// A put of `value`.
    Write {
        /// The value written.
        value: u64,
    },
    /// A Txn: if the key's value is `expected`, put `new`.
    Cas {
        /// The value compared with (a missing key never matches).
        expected: u64,
        /// The value put when it matched.
        new: u64,
    },
}

/// What a register operation answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "r")]
pub enum RegisterResult {
    /// The value read (`None`: the key does not exist).
    Read {
        /// The value.
        value: Option<u64>,
    },
    /// The put was acknowledged.
    Write,
    /// Whether the compare matched (and the put was done).
    Cas {
        /// True when it matched.
        ok: bool,
    },
}

/// One operation of the register workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterOp {
    /// The client (worker) that issued it.
    pub process: u64,
    /// The register (key `chaos/reg/<key>`).
    pub key: u64,
    /// What it asked.
    pub call: RegisterCall,
    /// When it was sent (µs since the client's start).
    pub invoke_us: u64,
    /// When the answer or the error came.
    pub complete_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The answer, when `outcome` is `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RegisterResult>,
    /// The error, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The endpoint it was sent to.
    #[serde(default)]
    pub endpoint: String,
}

impl RegisterOp {
    /// A successful operation (for tests and examples).
    pub fn done(
        process: u64,
        key: u64,
        call: RegisterCall,
        invoke_us: u64,
        complete_us: u64,
        result: RegisterResult,
    ) -> RegisterOp {
        RegisterOp {
            process,
            key,
            call,
            invoke_us,
            complete_us,
            outcome: Outcome::Ok,
            result: Some(result),
            error: None,
            endpoint: String::new(),
        }
    }

    /// An operation whose outcome is unknown (for tests and examples).
    pub fn unknown(
        process: u64,
        key: u64,
        call: RegisterCall,
        invoke_us: u64,
        complete_us: u64,
    ) -> RegisterOp {
        RegisterOp {
            process,
            key,
            call,
            invoke_us,
            complete_us,
            outcome: Outcome::Unknown,
            result: None,
            error: Some("timeout".into()),
            endpoint: String::new(),
        }
    }
}

/// What a bank operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "f")]
pub enum BankCall {
    /// Read every account (one Range over the prefix: one revision).
    Read,
    /// Move `amount` from account `from` to account `to` (a Txn guarded by both accounts'
    /// mod revisions as read just before).
    Transfer {
        /// The account debited.
        from: u64,
        /// The account credited.
        to: u64,
        /// How much.
        amount: i64,
    },
}

/// One operation of the bank workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BankOp {
    /// The client (worker) that issued it.
    pub process: u64,
    /// What it did.
    pub call: BankCall,
    /// When it was sent (µs since the client's start).
    pub invoke_us: u64,
    /// When the answer or the error came.
    pub complete_us: u64,
    /// How it ended. A transfer whose guard failed (someone else moved money in between) is
    /// `fail`.
    pub outcome: Outcome,
    /// For an `ok` read: each account's balance (`None`: the account key was missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balances: Option<Vec<Option<i64>>>,
    /// The revision an `ok` read was served at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The error, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The endpoint it was sent to.
    #[serde(default)]
    pub endpoint: String,
}

/// One put under the watched prefix.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchWrite {
    /// The writer that issued it.
    pub process: u64,
    /// The key.
    pub key: String,
    /// The value (unique in the run).
    pub value: String,
    /// When it was sent (µs since the client's start).
    pub invoke_us: u64,
    /// When the answer or the error came.
    pub complete_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The revision of an `ok` put.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The error, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What one watcher saw: an event, or a (re)connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum WatchRecord {
    /// A watch was created (first time or after an error) from `start_revision`.
    Watch {
        /// The watcher.
        watcher: u64,
        /// The revision it asked to start from.
        start_revision: i64,
        /// The endpoint it watches through.
        endpoint: String,
        /// When (µs since the client's start).
        at_us: u64,
    },
    /// The watch broke (stream error, end of stream, cancel); the watcher reconnects.
    Error {
        /// The watcher.
        watcher: u64,
        /// What happened.
        error: String,
        /// When (µs since the client's start).
        at_us: u64,
    },
    /// An event the watcher received.
    Event {
        /// The watcher.
        watcher: u64,
        /// The event's revision (the key's mod revision).
        revision: i64,
        /// The key.
        key: String,
        /// The value (empty for a delete).
        value: String,
        /// `put` or `delete`.
        kind: String,
        /// When it arrived (µs since the client's start).
        at_us: u64,
    },
}

/// What a lock operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "f")]
pub enum LockCall {
    /// Lock (the Lock service) with a fresh lease kept alive by the client; on success the
    /// lock key and its create revision are recorded.
    Acquire,
    /// A fenced write while holding the lock: a Txn that puts the shared record only if the
    /// lock key still has the create revision the holder got, and in the same Txn reads the
    /// head of the lock's queue (the key with the lowest create revision under the lock's
    /// prefix: the holder as the server sees it at that revision).
    Write {
        /// The holder's write number within its hold (0, 1, ...).
        seq: u64,
    },
    /// Unlock (deletes the lock key), then the lease is revoked.
    Release,
}

/// One operation of the lock workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOp {
    /// The client (worker) that issued it.
    pub process: u64,
    /// What it did.
    pub call: LockCall,
    /// When it was sent (µs since the client's start).
    pub invoke_us: u64,
    /// When the answer or the error came.
    pub complete_us: u64,
    /// How it ended. A fenced write whose guard did not hold (the lock was lost) is `fail`.
    pub outcome: Outcome,
    /// The lease the hold is tied to.
    pub lease: i64,
    /// The lock key (`<name>/<lease hex>`; empty for an acquisition that did not succeed).
    #[serde(default)]
    pub key: String,
    /// The lock key's create revision (the fencing token; 0 when not known).
    #[serde(default)]
    pub lock_revision: i64,
    /// A successful write: the value it put (unique in the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// A successful write: the revision of the Txn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// A successful write: the head of the lock queue read in the same Txn (its key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A successful write: the record's mod revision before the put (0: it did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_revision: Option<i64>,
    /// A successful write: the record's value before the put.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_value: Option<String>,
    /// An acquisition after which the holder stalled this long (stopped keeping its lease
    /// alive and slept past the TTL, as in a long pause of the client) before writing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub stalled_ms: u64,
    /// The error, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The endpoint it was sent to.
    #[serde(default)]
    pub endpoint: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One micro-operation of an append-list transaction (Elle's list-append model).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "f")]
pub enum ListMop {
    /// Read the list of `key` (key `chaos/append/<key>`).
    Read {
        /// The list.
        key: u64,
        /// What was read, oldest element first (empty: the key did not exist); `None` when
        /// the transaction did not complete `ok`, so the read is not known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<Vec<u64>>,
    },
    /// Append `value` (unique in the run) to the list of `key`.
    Append {
        /// The list.
        key: u64,
        /// The element appended.
        value: u64,
    },
}

impl ListMop {
    /// The list the micro-operation touches.
    pub fn key(&self) -> u64 {
        match self {
            ListMop::Read { key, .. } | ListMop::Append { key, .. } => *key,
        }
    }
}

/// One transaction of the append workload: micro-operations applied atomically, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendOp {
    /// The client (worker) that issued it.
    pub process: u64,
    /// What it did, in order.
    pub mops: Vec<ListMop>,
    /// When it was sent (µs since the client's start).
    pub invoke_us: u64,
    /// When the answer or the error came.
    pub complete_us: u64,
    /// How it ended. A transaction whose guard did not hold (a list it appends to changed
    /// since it was read) is `fail`.
    pub outcome: Outcome,
    /// The revision an `ok` transaction committed (or was read) at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
    /// The error, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The endpoint it was sent to.
    #[serde(default)]
    pub endpoint: String,
}

impl AppendOp {
    /// A transaction with the given outcome (for tests and examples).
    pub fn new(
        process: u64,
        mops: Vec<ListMop>,
        invoke_us: u64,
        complete_us: u64,
        outcome: Outcome,
    ) -> AppendOp {
        AppendOp {
            process,
            mops,
            invoke_us,
            complete_us,
            outcome,
            revision: None,
            error: None,
            endpoint: String::new(),
        }
    }
}

/// What a serializable-read workload operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SreadCall {
    /// A put of a unique value (linearizable, as every write).
    Write,
    /// A serializable get (answered from the member's own state).
    Read,
}

/// One operation of the serializable-read workload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SreadOp {
    /// The client (writer or reader) that issued it.
    pub process: u64,
    /// What it did.
    pub f: SreadCall,
    /// A reader's session: one connection to one member, until an error (a reader stays on
    /// its member and starts a new session when it reconnects).
    #[serde(default)]
    pub session: u64,
    /// The key (`chaos/sread/<key>`).
    pub key: u64,
    /// A write: the value put (unique in the run); an `ok` read: the value read (`None`:
    /// the key was missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// When it was sent (µs since the client's start).
    pub invoke_us: u64,
    /// When the answer or the error came.
    pub complete_us: u64,
    /// How it ended.
    pub outcome: Outcome,
    /// The revision of the answer's header: an `ok` write's revision, the revision an `ok`
    /// read was served at.
    #[serde(default)]
    pub revision: i64,
    /// An `ok` read of an existing key: the key's mod revision.
    #[serde(default)]
    pub mod_revision: i64,
    /// The member that answered (the header's member id; 0 when unknown).
    #[serde(default)]
    pub member_id: u64,
    /// The error, when it did not succeed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The endpoint it was sent to.
    #[serde(default)]
    pub endpoint: String,
}

/// What the client reports about the whole run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientSummary {
    /// Wall-clock time of the client's time 0, µs since the Unix epoch.
    pub t0_unix_us: u64,
    /// The workloads that ran.
    pub workloads: Vec<String>,
    /// The endpoints the clients used.
    pub endpoints: Vec<String>,
    /// Bank: the number of accounts.
    #[serde(default)]
    pub bank_accounts: u64,
    /// Bank: the money in all accounts together.
    #[serde(default)]
    pub bank_total: i64,
    /// Watch: the revision every watcher started from.
    #[serde(default)]
    pub watch_start_revision: i64,
    /// Watch: the revision of the last write under the prefix, read after the workload ended
    /// (0 when it could not be read).
    #[serde(default)]
    pub watch_last_revision: i64,
    /// Watch: the number of watchers.
    #[serde(default)]
    pub watchers: u64,
    /// Watch: the last revision each watcher had received when the client stopped waiting.
    #[serde(default)]
    pub watcher_last_seen: Vec<i64>,
    /// Serializable reads: the cluster's revision read linearizably after the workloads
    /// stopped (0 when it could not be read): no read may have seen a later one.
    #[serde(default)]
    pub sread_final_revision: i64,
}

/// Appends records to a JSON-lines file.
pub struct JsonlWriter {
    out: std::io::BufWriter<std::fs::File>,
    path: String,
}

impl JsonlWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<JsonlWriter> {
        let file = std::fs::File::create(path).map_err(|source| io(path, source))?;
        Ok(JsonlWriter {
            out: std::io::BufWriter::new(file),
            path: path.display().to_string(),
        })
    }

    /// Writes one record as one line.
    pub fn write<T: Serialize>(&mut self, record: &T) -> Result<()> {
        let line = serde_json::to_string(record).map_err(|source| Error::Parse {
            path: self.path.clone(),
            line: 0,
            source,
        })?;
        writeln!(self.out, "{line}").map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// Flushes what was written.
    pub fn flush(&mut self) -> Result<()> {
        self.out.flush().map_err(|source| Error::Io {
            path: self.path.clone(),
            source,
        })
    }
}

/// Reads a JSON-lines file of `T` records (blank lines skipped); a missing file is empty.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io(path, source)),
    };
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| io(path, source))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(serde_json::from_str(&line).map_err(|source| Error::Parse {
            path: path.display().to_string(),
            line: n + 1,
            source,
        })?);
    }
    Ok(out)
}

/// Writes `value` as pretty JSON to `path`.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| Error::Parse {
        path: path.display().to_string(),
        line: 0,
        source,
    })?;
    std::fs::write(path, text + "\n").map_err(|source| io(path, source))
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| io(path, source))?;
    serde_json::from_str(&text).map_err(|source| Error::Parse {
        path: path.display().to_string(),
        line: 1,
        source,
    })
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_through_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("register.jsonl");
        let ops = vec![
            RegisterOp::done(
                1,
                7,
                RegisterCall::Cas {
                    expected: 1,
                    new: 2,
                },
                5,
                9,
                RegisterResult::Cas { ok: true },
            ),
            RegisterOp::unknown(2, 7, RegisterCall::Write { value: 4 }, 6, 2_000_006),
        ];
        let mut w = JsonlWriter::create(&path).unwrap();
        for op in &ops {
            w.write(op).unwrap();
        }
        w.flush().unwrap();
        let back: Vec<RegisterOp> = read_jsonl(&path).unwrap();
        assert_eq!(back, ops);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(r#""f":"cas""#), "{text}");
        assert!(text.contains(r#""outcome":"unknown""#), "{text}");
    }

    #[test]
    fn a_bad_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bank.jsonl");
        std::fs::write(&path, "\n{\"nope\": 1}\n").unwrap();
        let err = read_jsonl::<BankOp>(&path).unwrap_err().to_string();
        assert!(err.contains("bank.jsonl:2"), "{err}");
    }

    #[test]
    fn a_missing_file_is_an_empty_history() {
        let dir = tempfile::tempdir().unwrap();
        let ops: Vec<WatchWrite> = read_jsonl(&dir.path().join("none.jsonl")).unwrap();
        assert!(ops.is_empty());
    }
}
