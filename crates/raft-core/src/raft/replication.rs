//! Log replication: appends, heartbeats, snapshots, the commit rule; both the leader's
//! and the follower's side.

use super::{Raft, Role};
use crate::entry::{Entry, NodeId};
use crate::error::{Error, Result};
use crate::log_read::{LogRead, StorageError};
use crate::membership::SnapshotMeta;
use crate::message::{Append, AppendResponse, Heartbeat, HeartbeatResponse, MessageBody};
use crate::progress::ProgressState;

impl<L: LogRead> Raft<L> {
    /// Sends appends to every peer that can take one.
    pub(crate) fn bcast_append(&mut self) -> Result<()> {
        let mut peers = std::mem::take(&mut self.peer_buf);
        peers.clear();
        peers.extend(self.tracker.progress.keys().filter(|id| **id != self.id));
        let mut result = Ok(());
        for &id in &peers {
            result = self.send_appends(id);
            if result.is_err() {
                break;
            }
        }
        self.peer_buf = peers;
        result
    }

    /// Sends as many appends to `to` as its window allows; an empty one when the peer
    /// has not seen the current commit index. `lazy_commit` leaves that to the next tick
    /// (see [`send_commit_updates`](Self::send_commit_updates)), except while the peer has
    /// not heard that the latest configuration change committed (a peer that change removes
    /// must learn it before the leader stops talking to it, so that it stops too and answers
    /// the clients waiting on it) and while the peer waits on proposals it forwarded or a
    /// read it asked for (`awaits_commit`): its clients' answers wait on that commit, and a
    /// tick is many times a write's latency.
    fn send_appends(&mut self, to: NodeId) -> Result<()> {
        let committed = self.log.committed;
        let mut first = true;
        loop {
            let Some(pr) = self.tracker.progress.get(&to) else {
                return Ok(());
            };
            let eager = !self.cfg.lazy_commit
                || pr.sent_commit < self.pending_conf_index
                || pr.sent_commit < pr.awaits_commit;
            let send_if_empty = first && pr.sent_commit < committed && eager;
            first = false;
            if !self.maybe_send_append(to, send_if_empty)? {
                return Ok(());
            }
            let pr = &self.tracker.progress[&to];
            if pr.state != ProgressState::Replicate || pr.next > self.log.last_index() {
                return Ok(());
            }
        }
    }

    /// With `lazy_commit`, the tick's catch-up: an empty append to every peer that has not
    /// been sent the current commit index yet.
    pub(crate) fn send_commit_updates(&mut self) -> Result<()> {
        let committed = self.log.committed;
        let mut peers = std::mem::take(&mut self.peer_buf);
        peers.clear();
        peers.extend(
            self.tracker
                .progress
                .iter()
                .filter(|(id, pr)| **id != self.id && pr.sent_commit < committed)
                .map(|(id, _)| *id),
        );
        let mut result = Ok(());
        for &id in &peers {
            if let Err(e) = self.maybe_send_append(id, true) {
                result = Err(e);
                break;
            }
        }
        self.peer_buf = peers;
        result
    }

    /// Sends one append (or a snapshot) to `to` if its progress allows; returns whether
    /// something was sent.
    pub(crate) fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> Result<bool> {
        let Some(pr) = self.tracker.progress.get(&to) else {
            return Ok(false);
        };
        if pr.is_paused() {
            return Ok(false);
        }
        let next = pr.next;
        let prev = next - 1;
        let prev_term = match self.log.term(prev) {
            Ok(t) => t,
            Err(StorageError::Compacted(_)) => return self.send_snapshot(to),
            Err(e) => return Err(e.into()),
        };
        let last = self.log.last_index();
        let entries = if next > last {
            Vec::new()
        } else {
            let hi = (last + 1).min(next.saturating_add(self.cfg.max_entries_per_append));
            match self.log.slice(next, hi, self.cfg.max_bytes_per_append) {
                Ok(e) => e,
                Err(StorageError::Compacted(_)) => return self.send_snapshot(to),
                Err(e) => return Err(e.into()),
            }
        };
        if entries.is_empty() && !send_if_empty {
            return Ok(false);
        }
        let bytes: u64 = entries.iter().map(Entry::size).sum();
        let sent_last = prev + entries.len() as u64;
        let committed = self.log.committed;
        let pr = self.tracker.progress.get_mut(&to).expect("checked above");
        pr.sent_append(sent_last, bytes, !entries.is_empty());
        pr.sent_commit = committed;
        self.send(
            to,
            MessageBody::Append(Append {
                prev_log_index: prev,
                prev_log_term: prev_term,
                entries,
                commit: committed,
            }),
        );
        Ok(true)
    }

    fn send_snapshot(&mut self, to: NodeId) -> Result<bool> {
        let meta = self.log.store.snapshot_meta()?;
        if meta.index == 0 && self.log.first_index()? > 1 {
            return Err(Error::Storage(StorageError::Failed(
                "entries are compacted but the storage reports no snapshot".into(),
            )));
        }
        let pr = self.tracker.progress.get_mut(&to).expect("caller checked");
        pr.become_snapshot(meta.index);
        self.send(to, MessageBody::InstallSnapshot(meta));
        Ok(true)
    }

    /// Broadcasts a heartbeat: a new read round, carrying each peer's safe commit index.
    pub(crate) fn bcast_heartbeat(&mut self) {
        let round = self.reads.next_round(self.now);
        let committed = self.log.committed;
        let me = self.id;
        let peers: Vec<(NodeId, u64)> = self
            .tracker
            .progress
            .iter()
            .filter(|(id, _)| **id != me)
            .map(|(id, pr)| (*id, pr.matched.min(committed)))
            .collect();
        for (id, commit) in peers {
            self.send(
                id,
                MessageBody::Heartbeat(Heartbeat {
                    commit,
                    read_round: round,
                }),
            );
        }
        // A single-voter cluster confirms its rounds by itself.
        self.check_read_quorum();
    }

    pub(crate) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) -> Result<()> {
        let last = self.log.last_index();
        let Some(pr) = self.tracker.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        pr.probe_sent = false;
        pr.acked_round = pr.acked_round.max(round);
        if pr.matched < last {
            // An empty append at the end of what was sent makes the peer reveal a gap
            // (lost appends) by rejecting it.
            if !self.maybe_send_append(from, true)? {
                return Ok(());
            }
            self.send_appends(from)?;
        } else if pr.sent_commit < self.log.committed {
            self.send_appends(from)?;
        }
        self.check_read_quorum();
        Ok(())
    }

    pub(crate) fn handle_append_response(&mut self, from: NodeId, r: AppendResponse) -> Result<()> {
        let Some(pr) = self.tracker.progress.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        if r.reject {
            if r.hint_index == 0
                && pr.matched == 0
                && pr.state == ProgressState::Probe
                && pr.next - 1 == r.index
            {
                // The peer's log is empty (perhaps a node that just joined and knows no
                // membership yet): start it from our snapshot, which carries the
                // membership (the bootstrap one at index 0 when nothing is compacted).
                self.send_snapshot(from)?;
                return Ok(());
            }
            let hint = if r.hint_term > 0 {
                self.log.find_conflict_by_term(r.hint_index, r.hint_term)?.0
            } else {
                r.hint_index
            };
            let pr = self.tracker.progress.get_mut(&from).expect("present");
            if pr.maybe_decr_to(r.index, hint) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.maybe_send_append(from, true)?;
            }
            return Ok(());
        }
        pr.stall_ticks = 0;
        let updated = pr.maybe_update(r.index);
        match pr.state {
            ProgressState::Probe if updated || pr.matched == r.index => pr.become_replicate(),
            ProgressState::Snapshot if pr.matched >= pr.pending_snapshot => pr.become_replicate(),
            ProgressState::Replicate => pr.inflights.free_to(r.index),
            _ => {}
        }
        if updated {
            self.maybe_commit();
            if self.lead_transferee == Some(from)
                && self.tracker.progress[&from].matched == self.log.last_index()
            {
                self.send(from, MessageBody::TimeoutNow);
            }
        }
        if self.role == Role::Leader {
            self.send_appends(from)?;
        }
        Ok(())
    }

    /// Advances the commit index to what a quorum has, if it is of the current term.
    pub(crate) fn maybe_commit(&mut self) -> bool {
        let index = self.tracker.committed();
        if self.log.maybe_commit(index, self.term) {
            self.bcast_pending = true;
            self.on_commit_in_term();
            return true;
        }
        false
    }

    pub(crate) fn handle_append(&mut self, from: NodeId, a: Append) -> Result<()> {
        let term = self.term;
        if !self.initialized() {
            // Without a membership we cannot interpret configuration changes in the log:
            // ask for the leader's snapshot (an empty-log hint triggers it).
            self.send_after_persist(
                from,
                term,
                MessageBody::AppendResponse(AppendResponse {
                    index: a.prev_log_index,
                    reject: true,
                    hint_index: 0,
                    hint_term: 0,
                }),
            );
            return Ok(());
        }
        if a.prev_log_index < self.log.committed {
            let index = self.log.committed;
            self.send_after_persist(
                from,
                term,
                MessageBody::AppendResponse(AppendResponse {
                    index,
                    ..AppendResponse::default()
                }),
            );
            return Ok(());
        }
        let appended =
            self.log
                .maybe_append(a.prev_log_index, a.prev_log_term, a.commit, &a.entries)?;
        // Configuration changes take effect once in the log (and an overwritten suffix
        // takes its changes with it).
        self.sync_config(false);
        match appended {
            Some(last) => self.send_after_persist(
                from,
                term,
                MessageBody::AppendResponse(AppendResponse {
                    index: last,
                    ..AppendResponse::default()
                }),
            ),
            None => {
                let probe = a.prev_log_index.min(self.log.last_index());
                let (hint_index, hint_term) =
                    self.log.find_conflict_by_term(probe, a.prev_log_term)?;
                self.send_after_persist(
                    from,
                    term,
                    MessageBody::AppendResponse(AppendResponse {
                        index: a.prev_log_index,
                        reject: true,
                        hint_index,
                        hint_term,
                    }),
                );
            }
        }
        Ok(())
    }

    pub(crate) fn handle_heartbeat(&mut self, from: NodeId, h: Heartbeat) {
        // The leader caps the commit index at what it knows we have.
        let commit = h.commit.min(self.log.last_index());
        self.log.commit_to(commit);
        self.send(
            from,
            MessageBody::HeartbeatResponse(HeartbeatResponse {
                read_round: h.read_round,
            }),
        );
    }

    pub(crate) fn handle_snapshot(&mut self, from: NodeId, meta: SnapshotMeta) {
        let term = self.term;
        let index = if meta.index <= self.log.committed && self.initialized() {
            self.log.committed
        } else if self.initialized() && self.log.match_term(meta.index, meta.term) {
            // We already have everything the snapshot covers: just commit it. What follows
            // may be a stale tail of an old term, so the answer claims the commit index
            // only (the leader's probe finds where the tail matches).
            self.log.commit_to(meta.index);
            self.log.committed
        } else {
            let index = meta.index;
            self.log.restore(meta);
            self.sync_config(false);
            index
        };
        self.send_after_persist(
            from,
            term,
            MessageBody::AppendResponse(AppendResponse {
                index,
                ..AppendResponse::default()
            }),
        );
    }

    /// The transport finished (or failed) sending a snapshot to `to`.
    pub(crate) fn report_snapshot(&mut self, to: NodeId, ok: bool) {
        if self.role != Role::Leader {
            return;
        }
        let Some(pr) = self.tracker.progress.get_mut(&to) else {
            return;
        };
        if pr.state != ProgressState::Snapshot {
            return;
        }
        if !ok {
            pr.pending_snapshot = 0;
        }
        pr.become_probe();
        // Wait for the follower's answer (or the next heartbeat) before probing.
        pr.probe_sent = true;
    }

    /// `to` could not be reached: stop pipelining to it.
    pub(crate) fn report_unreachable(&mut self, to: NodeId) {
        if self.role != Role::Leader {
            return;
        }
        if let Some(pr) = self.tracker.progress.get_mut(&to)
            && pr.state == ProgressState::Replicate
        {
            pr.become_probe();
        }
    }
}
