//! The Key Distribution function (TS 33.246 §6.3.2.3, §6.3.2.1B, §6.3.2.2.4):
//! MSK messages over UDP under each UE's MUK, with one T counter per MUK.
//! It pushes every MSK the gRPC key server publishes (rotation, validity
//! change, invalidation) to the UEs registered to a User Service of that Key
//! Group, answers MSK requests, invalidates on deregistration the MSKs no
//! other registered service of that UE uses, and sends solicited pulls.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::net::UdpSocket;

use super::config::ProvisionedUe;
use super::counter_journal::CounterJournal;
use crate::bmsc::BmscControl;
use crate::protocol::key_request::{KeyRef, Status};
use crate::protocol::keys::{KeyDomainId, MskId, MtkId};
use crate::protocol::mikey::serial::serial_gt;
use crate::protocol::mikey::{
    MskMessageContent, MskMessageParams, MtkIdInterval, build_msk_message, verify_msk_ack,
};
use crate::runtime::key_service::MskRecord;
use crate::runtime::key_service::proto::{self, msk_event::Event};

/// What the Key Distribution function has done, for tests and operators.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DistributionStats {
    pub deliveries: u64,
    pub validity_updates: u64,
    pub invalidations: u64,
    pub solicited_pulls: u64,
    pub acks_verified: u64,
    pub acks_rejected: u64,
    pub send_errors: u64,
}

/// One provisioned UE and what it is registered to.
struct UeState {
    provisioned: ProvisionedUe,
    registered: BTreeSet<String>,
    /// Where MSK messages go: the address it last spoke HTTP from.
    address: Option<IpAddr>,
    /// T counter of this UE's MUK (seed §6.4.6.1).
    counter: u32,
    /// The last MSK message with the V bit set, awaiting its verification.
    awaiting_ack: Option<Vec<u8>>,
}

struct State {
    ues: BTreeMap<String, UeState>,
    stats: DistributionStats,
}

/// The Key Distribution function, shared with the Key Request function.
pub struct Distribution {
    naf_id: String,
    key_domain_id: KeyDomainId,
    services: BTreeMap<String, BTreeSet<u16>>,
    request_ack: bool,
    socket: Arc<UdpSocket>,
    control: BmscControl,
    state: Mutex<State>,
    /// Taken only with `state` held, after it.
    counters: Mutex<CounterJournal>,
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    // Without an OS random source nothing here is safe to send.
    getrandom::fill(&mut out).expect("OS random source");
    out
}

/// A message to send after the state lock is released.
type Outgoing = Vec<(SocketAddr, Vec<u8>)>;

/// What to put in one MSK message.
enum Content<'a> {
    Deliver(&'a MskRecord),
    Validity(MskId, MtkIdInterval),
    Pull(u16),
}

impl Distribution {
    pub(super) fn new(
        naf_id: String,
        services: BTreeMap<String, BTreeSet<u16>>,
        request_ack: bool,
        ues: BTreeMap<String, ProvisionedUe>,
        socket: Arc<UdpSocket>,
        control: BmscControl,
        counters: CounterJournal,
    ) -> Self {
        let ues = ues
            .into_iter()
            .map(|(b_tid, provisioned)| {
                let ue = UeState {
                    provisioned,
                    registered: BTreeSet::new(),
                    address: None,
                    // Above every counter a run before this one may have sent.
                    counter: counters.mark(&b_tid).unwrap_or(0),
                    awaiting_ack: None,
                };
                (b_tid, ue)
            })
            .collect();
        Self {
            naf_id,
            key_domain_id: control.scope().key_domain_id,
            services,
            request_ack,
            socket,
            control,
            state: Mutex::new(State {
                ues,
                stats: DistributionStats::default(),
            }),
            counters: Mutex::new(counters),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn stats(&self) -> DistributionStats {
        self.lock().stats.clone()
    }

    /// The Digest password and whether the UE is provisioned.
    pub(super) fn password(&self, b_tid: &str) -> Option<zeroize::Zeroizing<String>> {
        self.lock()
            .ues
            .get(b_tid)
            .map(|ue| ue.provisioned.sa.digest_password())
    }

    /// User Services `b_tid` is registered to.
    pub fn registrations(&self, b_tid: &str) -> BTreeSet<String> {
        self.lock()
            .ues
            .get(b_tid)
            .map(|ue| ue.registered.clone())
            .unwrap_or_default()
    }

    /// Key Groups of the services in `registered`.
    fn groups_of<'a>(&self, registered: impl IntoIterator<Item = &'a String>) -> BTreeSet<u16> {
        registered
            .into_iter()
            .filter_map(|s| self.services.get(s))
            .flatten()
            .copied()
            .collect()
    }

    /// Builds one MSK message for `ue` with its next MUK counter.
    fn build(&self, ue: &mut UeState, content: Content<'_>) -> Option<(SocketAddr, Vec<u8>)> {
        let address = SocketAddr::new(ue.address?, ue.provisioned.mikey_port);
        let Some(muk_id) = ue.provisioned.sa.muk_id(&self.naf_id) else {
            tracing::error!("NAF-Id or B-TID too long for a MIKEY ID payload");
            return None;
        };
        // Counters stay ahead of wall-clock seconds and of the journal, so
        // a restarted BM-SC continues above what it sent before; the
        // journal has the counter covered before it leaves.
        let now = u32::try_from(unix_now()).unwrap_or(u32::MAX);
        let counter = if serial_gt(now, ue.counter) {
            now
        } else {
            ue.counter.wrapping_add(1)
        };
        let b_tid = &ue.provisioned.sa.b_tid;
        let journaled = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .cover(b_tid, counter);
        if let Err(e) = journaled {
            // Fail closed: a counter that might repeat after a restart is not sent.
            tracing::error!(b_tid, error = %e, "MUK counter journal not written; MSK message not sent");
            return None;
        }
        ue.counter = counter;
        let request_ack = self.request_ack;
        let content = match content {
            Content::Deliver(record) => MskMessageContent::Delivery {
                msk_id: record.msk_id,
                msk: &record.key,
                validity: MtkIdInterval {
                    seq_l: record.validity.0,
                    seq_u: record.validity.1,
                },
                request_ack,
            },
            Content::Validity(msk_id, validity) => MskMessageContent::ValidityUpdate {
                msk_id,
                validity,
                request_ack,
            },
            Content::Pull(key_group) => MskMessageContent::SolicitedPull { key_group },
        };
        let params = MskMessageParams {
            key_domain_id: self.key_domain_id,
            counter: ue.counter,
            muk_id,
            rand: random(),
            csb_id: u32::from_be_bytes(random()),
            content,
        };
        let mut out = Vec::new();
        build_msk_message(&ue.provisioned.sa.muk(), &params, &mut out);
        if matches!(
            content,
            MskMessageContent::Delivery {
                request_ack: true,
                ..
            } | MskMessageContent::ValidityUpdate {
                request_ack: true,
                ..
            }
        ) {
            ue.awaiting_ack = Some(out.clone());
        }
        Some((address, out))
    }

    async fn send(&self, outgoing: Outgoing) {
        for (to, message) in outgoing {
            if let Err(e) = self.socket.send_to(&message, to).await {
                tracing::warn!(%to, error = %e, "MSK message not sent");
                self.lock().stats.send_errors += 1;
            }
        }
    }

    /// The MSKs of `groups` a UE should hold now: the current and the
    /// announced next one of each group.
    fn msks_for(&self, groups: &BTreeSet<u16>) -> Vec<MskRecord> {
        let msks = self.control.msks();
        let now = unix_now();
        let mut out = Vec::new();
        for &group in groups {
            for record in [msks.current_for(group, now), msks.next_for(group, now)]
                .into_iter()
                .flatten()
            {
                out.push(record.clone());
            }
        }
        out
    }

    /// Registration (seed §6.3.2.1A): Membership check per service, then MSK
    /// delivery for the Key Groups newly needed.
    pub(super) async fn register(
        &self,
        b_tid: &str,
        from: IpAddr,
        service_ids: &[String],
    ) -> Vec<(String, Status)> {
        let (answers, new_groups) = {
            let mut state = self.lock();
            let Some(ue) = state.ues.get_mut(b_tid) else {
                return Vec::new();
            };
            ue.address = Some(from);
            let before = self.groups_of(&ue.registered);
            let answers = service_ids
                .iter()
                .map(|id| {
                    let status = if !self.services.contains_key(id) {
                        Status::NotFound
                    } else if !ue.provisioned.services.contains(id) {
                        Status::Forbidden
                    } else {
                        ue.registered.insert(id.clone());
                        Status::Ok
                    };
                    (id.clone(), status)
                })
                .collect::<Vec<_>>();
            let after = self.groups_of(&ue.registered);
            (answers, &after - &before)
        };
        tracing::info!(b_tid, ?answers, "UE registration");
        self.deliver(b_tid, &self.msks_for(&new_groups)).await;
        answers
    }

    /// Deregistration (seed §6.3.2.1B): the MSKs of Key Groups that no other
    /// registered service of the UE uses are invalidated at the UE.
    pub(super) async fn deregister(
        &self,
        b_tid: &str,
        from: IpAddr,
        service_ids: &[String],
    ) -> Vec<(String, Status)> {
        let (answers, dropped, outgoing) = {
            let mut state = self.lock();
            let Some(ue) = state.ues.get_mut(b_tid) else {
                return Vec::new();
            };
            ue.address = Some(from);
            let before = self.groups_of(&ue.registered);
            let answers = service_ids
                .iter()
                .map(|id| {
                    let status = if !self.services.contains_key(id) {
                        Status::NotFound
                    } else if ue.registered.remove(id) {
                        Status::Ok
                    } else {
                        Status::Forbidden
                    };
                    (id.clone(), status)
                })
                .collect::<Vec<_>>();
            let dropped = &before - &self.groups_of(&ue.registered);
            let msks = self.control.msks();
            let now = unix_now();
            let mut outgoing = Outgoing::new();
            for record in msks
                .iter()
                .filter(|r| dropped.contains(&r.key_group()) && !r.is_expired_at(now))
            {
                outgoing.extend(self.build(
                    ue,
                    Content::Validity(record.msk_id, MtkIdInterval::INVALIDATED),
                ));
            }
            state.stats.invalidations += outgoing.len() as u64;
            (answers, dropped, outgoing)
        };
        tracing::info!(b_tid, ?answers, ?dropped, "UE deregistration");
        self.send(outgoing).await;
        answers
    }

    /// MSK request (seed §6.3.2.2.1): each key must belong to a Key Group of a
    /// service the UE is registered to; Key Number 0 means the current MSK.
    pub(super) async fn msk_request(
        &self,
        b_tid: &str,
        from: IpAddr,
        keys: &[KeyRef],
    ) -> Vec<(KeyRef, Status)> {
        let groups = {
            let mut state = self.lock();
            let Some(ue) = state.ues.get_mut(b_tid) else {
                return Vec::new();
            };
            ue.address = Some(from);
            self.groups_of(&ue.registered)
        };
        let msks = self.control.msks();
        let now = unix_now();
        let mut records = Vec::new();
        let answers = keys
            .iter()
            .map(|key| {
                let group = key.msk_id.key_group();
                let status = if key.key_domain_id != self.key_domain_id {
                    Status::BadRequest
                } else if !groups.contains(&group) {
                    Status::Forbidden
                } else {
                    let found = if key.msk_id.key_number() == MskId::CURRENT_KEY_NUMBER {
                        msks.current_for(group, now)
                    } else {
                        msks.get(key.msk_id).filter(|r| !r.is_expired_at(now))
                    };
                    match found {
                        Some(record) => {
                            records.push(record.clone());
                            Status::Ok
                        }
                        None => Status::NotFound,
                    }
                };
                (*key, status)
            })
            .collect();
        self.deliver(b_tid, &records).await;
        answers
    }

    /// Sends `records` to one UE.
    async fn deliver(&self, b_tid: &str, records: &[MskRecord]) {
        let outgoing = {
            let mut state = self.lock();
            let Some(ue) = state.ues.get_mut(b_tid) else {
                return;
            };
            let out: Outgoing = records
                .iter()
                .filter_map(|r| self.build(ue, Content::Deliver(r)))
                .collect();
            state.stats.deliveries += out.len() as u64;
            out
        };
        self.send(outgoing).await;
    }

    /// A solicited pull (seed §6.3.2.2.4) to one registered UE. Returns
    /// whether it was sent.
    pub async fn solicit_pull(&self, b_tid: &str, key_group: u16) -> bool {
        let outgoing = {
            let mut state = self.lock();
            let Some(ue) = state.ues.get_mut(b_tid) else {
                return false;
            };
            if !self.groups_of(&ue.registered).contains(&key_group) {
                return false;
            }
            let out = self.build(ue, Content::Pull(key_group));
            if out.is_some() {
                state.stats.solicited_pulls += 1;
            }
            out
        };
        let sent = outgoing.is_some();
        self.send(outgoing.into_iter().collect()).await;
        sent
    }

    /// Pushes one change of the key server (seed §6.3.2.3.1) to every UE
    /// registered to a service of its Key Group.
    pub(super) async fn on_event(&self, event: &proto::MskEvent) {
        let (msk_id, content) = match event.event.as_ref() {
            Some(Event::MskAdded(m)) => (MskId(m.msk_id), None),
            Some(Event::ValidityUpdated(m)) => {
                let validity = MtkIdInterval {
                    seq_l: MtkId(u16::try_from(m.seq_l).unwrap_or(u16::MAX)),
                    seq_u: MtkId(u16::try_from(m.seq_u).unwrap_or(u16::MAX)),
                };
                (MskId(m.msk_id), Some(validity))
            }
            Some(Event::Invalidated(r)) => (MskId(r.msk_id), Some(MtkIdInterval::INVALIDATED)),
            Some(Event::SnapshotComplete(_) | Event::Heartbeat(_)) | None => return,
        };
        let record = match content {
            None => match self.control.msks().get(msk_id) {
                Some(r) => Some(r.clone()),
                None => return,
            },
            Some(_) => None,
        };
        let outgoing = {
            let mut state = self.lock();
            let mut out = Outgoing::new();
            let group = msk_id.key_group();
            let targets: Vec<String> = state
                .ues
                .iter()
                .filter(|(_, ue)| self.groups_of(&ue.registered).contains(&group))
                .map(|(b_tid, _)| b_tid.clone())
                .collect();
            for b_tid in targets {
                let Some(ue) = state.ues.get_mut(&b_tid) else {
                    continue;
                };
                let message = match (&record, content) {
                    (Some(record), _) => self.build(ue, Content::Deliver(record)),
                    (None, Some(validity)) => self.build(ue, Content::Validity(msk_id, validity)),
                    (None, None) => None,
                };
                out.extend(message);
            }
            let n = out.len() as u64;
            match content {
                None => state.stats.deliveries += n,
                Some(v) if v.is_invalidation() => state.stats.invalidations += n,
                Some(_) => state.stats.validity_updates += n,
            }
            out
        };
        self.send(outgoing).await;
    }

    /// A datagram on the MSK socket: a UE's verification message (RFC 3830
    /// §5.2) for the last MSK message sent to it with the V bit.
    pub(super) fn on_datagram(&self, from: SocketAddr, bytes: &[u8]) {
        let mut state = self.lock();
        let matched = state.ues.values_mut().find_map(|ue| {
            if ue.address != Some(from.ip()) || ue.awaiting_ack.is_none() {
                return None;
            }
            let sent = ue.awaiting_ack.as_ref()?;
            let verified = verify_msk_ack(&ue.provisioned.sa.muk(), sent, bytes);
            if verified.is_ok() {
                ue.awaiting_ack = None;
            }
            Some(verified)
        });
        match matched {
            Some(Ok(_)) => state.stats.acks_verified += 1,
            Some(Err(e)) => {
                tracing::debug!(%from, error = %e, "MIKEY verification message rejected");
                state.stats.acks_rejected += 1;
            }
            None => state.stats.acks_rejected += 1,
        }
    }
}
