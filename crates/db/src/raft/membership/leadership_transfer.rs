//! Planned leadership transfer (`POST /cluster/step-down`), see the parent module.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use openraft::RaftMetrics;
use webfarm_config::Replica;
use webfarm_db_client::StepDownAnswer;

use super::{leads, matched, wait_until, Membership, MembershipError, TRANSFER_TIMEOUT};
use crate::raft::health::kind_of;
use crate::types::{node_id, NodeInfo, Raft};

/// Restores heartbeats and request handling when a leadership transfer ends, however it ends.
struct TransferGuard<'a> {
    raft: &'a Raft,
    flag: &'a AtomicBool,
}

impl<'a> TransferGuard<'a> {
    /// Stops requests as leader and heartbeats; keeps this node from campaigning once it
    /// stepped down, so the successor is the only candidate.
    fn begin(raft: &'a Raft, flag: &'a AtomicBool) -> TransferGuard<'a> {
        flag.store(true, Ordering::Release);
        raft.runtime_config().heartbeat(false);
        raft.runtime_config().elect(false);
        TransferGuard { raft, flag }
    }
}

impl Drop for TransferGuard<'_> {
    fn drop(&mut self) {
        self.raft.runtime_config().elect(true);
        self.raft.runtime_config().heartbeat(true);
        self.flag.store(false, Ordering::Release);
    }
}

impl Membership {
    /// The voter best placed to lead after this one: the most up to date, then by name.
    pub(super) fn successor(&self) -> Option<u64> {
        let m = self.health.metrics.borrow();
        m.membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != self.health.id)
            .max_by_key(|id| {
                (
                    matched(&m, *id),
                    std::cmp::Reverse(self.health.name_of(*id)),
                )
            })
    }

    /// Hands leadership to voter `to`; the new leader's name. The caller holds `busy`.
    pub(super) async fn transfer_leadership(&self, to: u64) -> Result<String, MembershipError> {
        let name = self.health.name_of(to);
        let Some(target) = self.health.node(to) else {
            return Err(MembershipError::NotMember(format!(
                "{name} is not a member"
            )));
        };
        let config = self.raft.config();
        let lease = Duration::from_millis(config.election_timeout_max);
        let round = Duration::from_millis(config.election_timeout_min);
        let started = Instant::now();
        let limit = TRANSFER_TIMEOUT.max(lease * 4);
        let deadline = started + limit;
        let me = self.health.id;
        let someone_else = move |m: &RaftMetrics<u64, NodeInfo>| {
            !leads(m) && m.current_leader.is_some_and(|l| l != me)
        };
        let mut rx = self.health.metrics.clone();
        let guard = TransferGuard::begin(&self.raft, &self.health.transferring_leadership);
        tracing::info!(to = %name, "handing leadership over");
        let leader = loop {
            let m = rx.borrow().clone();
            if someone_else(&m) {
                break m.current_leader;
            }
            if Instant::now() >= deadline {
                let why = if leads(&m) {
                    format!("{name} did not win an election within {limit:?}; this node stays the leader")
                } else {
                    format!(
                        "this node stepped down but {name} did not win an election within \
                         {limit:?}; the voters now elect a leader on their own"
                    )
                };
                return Err(MembershipError::NotDone(why));
            }
            if leads(&m) {
                // The successor must hold the whole log, or this node would refuse its vote.
                let last = m.last_log_index.unwrap_or(0);
                let caught_up = wait_until(&mut rx, deadline, |m| {
                    !leads(m) || matched(m, to).is_some_and(|i| i >= last)
                })
                .await;
                if !caught_up {
                    return Err(MembershipError::NotDone(format!(
                        "{name} did not catch up with the log within {limit:?}; this node \
                             stays the leader"
                    )));
                }
            }
            let url = self.http.url(&target.api_addr, "/cluster/campaign");
            let asked = self
                .http
                .post(
                    &url,
                    "application/json",
                    Bytes::new(),
                    Duration::from_secs(2),
                )
                .await;
            match asked {
                Ok(r) if r.status.is_success() => {}
                Ok(r) => {
                    return Err(MembershipError::Refused(format!(
                        "{name} refused to campaign: {}",
                        String::from_utf8_lossy(&r.body).trim()
                    )))
                }
                Err(e) => {
                    return Err(MembershipError::Unavailable(format!(
                        "cannot reach {name}: {e}"
                    )))
                }
            }
            // A vote is refused while the voter's leader lease runs; with the heartbeats
            // stopped every lease runs out within `lease`, and the next campaign wins.
            let round_end = deadline.min(Instant::now() + round);
            wait_until(&mut rx, round_end, someone_else).await;
        };
        drop(guard);
        let leader = leader.map_or_else(|| "unknown".to_string(), |l| self.health.name_of(l));
        tracing::info!(
            to = %name,
            leader = %leader,
            took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "leadership transferred"
        );
        Ok(leader)
    }
}

impl Membership {
    /// Hands leadership to voter `to`, by default the most up to date one (see the parent
    /// module). The caller has checked that this node leads.
    ///
    /// # Errors
    ///
    /// [`MembershipError`]: `to` is not a voter (or leads already), there is no other voter,
    /// the successor is unreachable or did not win in time.
    pub(crate) async fn step_down(
        &self,
        to: Option<&str>,
    ) -> Result<StepDownAnswer, MembershipError> {
        let m = self;
        let _busy = m.busy.lock().await;
        let me = m.health.name_of(m.health.id);
        let to = match to {
            Some(name) => {
                let id = node_id(name);
                let kind = kind_of(&m.health.metrics.borrow(), id);
                match kind {
                    _ if id == m.health.id => {
                        return Err(MembershipError::Refused(format!("{name} already leads")))
                    }
                    Some(Replica::Voter) => id,
                    Some(Replica::Learner) => {
                        return Err(MembershipError::Refused(format!(
                            "{name} is a learner; promote it first (`webfarm db promote {name}`)"
                        )))
                    }
                    None => {
                        return Err(MembershipError::NotMember(format!(
                            "{name} is not a member of the cluster"
                        )))
                    }
                }
            }
            None => m.successor().ok_or_else(|| {
                MembershipError::Refused(format!(
                    "{me} is the only voter: there is nobody to hand leadership to"
                ))
            })?,
        };
        let started = Instant::now();
        let leader = m.transfer_leadership(to).await?;
        Ok(StepDownAnswer {
            from: me,
            to: m.health.name_of(to),
            leader,
            took_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// Starts an election on this node at once (`/cluster/campaign`: the leader asks the
    /// successor it chose); this node's name.
    ///
    /// # Errors
    ///
    /// [`MembershipError::Refused`] when this node is not a voter,
    /// [`MembershipError::Unavailable`] when Raft stopped.
    pub(crate) async fn campaign(&self) -> Result<String, MembershipError> {
        let m = self;
        let name = m.health.name_of(m.health.id);
        if m.health.kind() != Some(Replica::Voter) {
            return Err(MembershipError::Refused(format!("{name} is not a voter")));
        }
        m.raft
            .trigger()
            .elect()
            .await
            .map_err(|f| MembershipError::Unavailable(format!("raft stopped: {f}")))?;
        Ok(name)
    }
}
