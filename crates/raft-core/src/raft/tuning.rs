//! Changing the timing and flow-control settings of a running node.

use super::Raft;
use crate::config::{Config, ReadMode};
use crate::error::{Error, Result};
use crate::log_read::LogRead;

impl<L: LogRead> Raft<L> {
    /// Replaces the timing and flow-control settings with those of `new` (see
    /// [`crate::RawNode::set_config`] for what may change). On error nothing changes.
    pub(crate) fn set_config(&mut self, mut new: Config) -> Result<()> {
        let fixed = |field: &'static str| {
            Err(Error::InvalidConfig {
                field,
                reason: "cannot change while the node runs".into(),
            })
        };
        let old = &self.cfg;
        if new.id != old.id {
            return fixed("id");
        }
        if new.pre_vote != old.pre_vote {
            return fixed("pre_vote");
        }
        if new.check_quorum != old.check_quorum {
            return fixed("check_quorum");
        }
        if new.priority != old.priority {
            return fixed("priority");
        }
        // A lease is only safe while every node counts the same election timeout: the
        // leader's lease and the followers' promise not to vote are measured with it.
        if matches!(old.read_mode, ReadMode::Lease { .. })
            && new.election_timeout_base_ticks != old.election_timeout_base_ticks
        {
            return Err(Error::InvalidConfig {
                field: "election_timeout_base_ticks",
                reason: "cannot change while the node runs with lease reads (every node's \
                         lease must be measured with the same timeout)"
                    .into(),
            });
        }
        if new.read_mode != old.read_mode {
            return fixed("read_mode");
        }
        new.applied = old.applied;
        new.validate()?;
        let timing_changed = new.election_timeout_base_ticks != old.election_timeout_base_ticks
            || new.jitter_max_ticks != old.jitter_max_ticks;
        self.tracker
            .set_inflight_limits(new.max_inflight_msgs, new.max_inflight_bytes);
        self.cfg = new;
        if timing_changed {
            // A new draw within the new bounds, from the node's own generator: the run
            // stays a function of its inputs. The time already waited still counts.
            let jitter = self.cfg.effective_jitter();
            self.randomized_timeout = self.rng.gen_range(
                self.cfg.election_timeout_base_ticks,
                self.cfg.election_timeout_base_ticks + jitter,
            );
        }
        Ok(())
    }
}
