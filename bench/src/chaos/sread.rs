//! The serializable-read workload: writers put unique values to a few keys
//! (`chaos/sread/<n>`); readers each stay on one member and read the keys with serializable
//! gets (answered from that member's own state), recording the value, the key's mod revision,
//! the revision the read was served at and the member that answered. A reader's session (one
//! connection) ends at an error; it reconnects to the same member and starts a new one.
//! After the workloads stop, the cluster's revision is read linearizably
//! ([`final_revision`]): no read may have seen a later one.

use super::{Clock, Conn, Sink, Spec, error_line, outcome_of, record};
use anyhow::Result;
use etcd_client::GetOptions;
use raft_chaos::history::{Outcome, SreadCall, SreadOp};
use raft_sim::rng::SimRng;
use std::time::{Duration, Instant};

/// The keys written and read.
pub const KEYS: u64 = 3;

fn key_name(key: u64) -> String {
    format!("chaos/sread/{key}")
}

/// One writer until `deadline`: puts of unique values (`w<process>-<n>`).
pub async fn writer(
    spec: Spec,
    clock: Clock,
    deadline: Instant,
    process: u64,
    out: Sink,
) -> Result<()> {
    let mut rng = SimRng::new(spec.seed ^ (0x5EAD_0000 + process));
    let mut conn = Conn::new(&spec.endpoints, process as usize, spec.timeout);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let Some(mut c) = conn.client().await else {
            continue;
        };
        n += 1;
        let key = rng.below(KEYS);
        let value = format!("w{process}-{n}");
        let invoke_us = clock.us();
        let res = c.put(key_name(key), value.clone(), None).await;
        let mut op = SreadOp {
            process,
            f: SreadCall::Write,
            session: 0,
            key,
            value: Some(value),
            invoke_us,
            complete_us: clock.us(),
            outcome: Outcome::Ok,
            revision: 0,
            mod_revision: 0,
            member_id: 0,
            error: None,
            endpoint: conn.endpoint().to_string(),
        };
        match res {
            Ok(r) => {
                if let Some(h) = r.header() {
                    op.revision = h.revision();
                    op.member_id = h.member_id();
                }
            }
            Err(e) => {
                conn.backoff().await;
                op.outcome = outcome_of(&e);
                op.error = Some(error_line(&e));
            }
        }
        record(&out, &op)?;
        // Leave the readers room: a write every few ms per writer.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// One reader until `deadline`, on the endpoint `reader` (modulo the count; the initial
/// members come first); with `spec.sread_hop_members` (deliberately unsafe) it moves to the
/// next member after every read and never starts a new session.
pub async fn reader(
    spec: Spec,
    clock: Clock,
    deadline: Instant,
    reader: u64,
    out: Sink,
) -> Result<()> {
    let process = 1000 + reader;
    let mut rng = SimRng::new(spec.seed ^ (0x5EAE_0000 + reader));
    let hop = spec.sread_hop_members;
    let mut conn = if hop {
        Conn::new(&spec.endpoints, reader as usize, spec.timeout)
    } else {
        let pinned = spec.endpoints[reader as usize % spec.endpoints.len()].clone();
        Conn::new(&[pinned], 0, spec.timeout)
    };
    let mut session = 0u64;
    while Instant::now() < deadline {
        let Some(mut c) = conn.client().await else {
            if !hop {
                session += 1;
            }
            continue;
        };
        let key = rng.below(KEYS);
        let invoke_us = clock.us();
        let res = c
            .get(key_name(key), Some(GetOptions::new().with_serializable()))
            .await;
        let mut op = SreadOp {
            process,
            f: SreadCall::Read,
            session,
            key,
            value: None,
            invoke_us,
            complete_us: clock.us(),
            outcome: Outcome::Ok,
            revision: 0,
            mod_revision: 0,
            member_id: 0,
            error: None,
            endpoint: conn.endpoint().to_string(),
        };
        match res {
            Ok(r) => {
                if let Some(h) = r.header() {
                    op.revision = h.revision();
                    op.member_id = h.member_id();
                }
                if let Some(kv) = r.kvs().first() {
                    op.value = Some(String::from_utf8_lossy(kv.value()).into_owned());
                    op.mod_revision = kv.mod_revision();
                }
                if hop {
                    // Deliberately unsafe: the next read goes to another member, yet is
                    // recorded as the same session on the same member.
                    conn.rotate();
                    op.member_id = 0;
                }
            }
            Err(e) => {
                conn.backoff().await;
                if !hop {
                    session += 1;
                }
                op.outcome = Outcome::Fail;
                op.error = Some(error_line(&e));
            }
        }
        record(&out, &op)?;
    }
    Ok(())
}

/// The cluster's revision, read linearizably (retried over the endpoints for up to 30 s);
/// 0 when it could not be read.
pub async fn final_revision(spec: &Spec) -> i64 {
    let mut conn = Conn::new(&spec.endpoints, 0, spec.timeout);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(mut c) = conn.client().await {
            match c.get(key_name(0), None).await {
                Ok(r) => return r.header().map_or(0, |h| h.revision()),
                Err(_) => conn.backoff().await,
            }
        }
    }
    0
}
