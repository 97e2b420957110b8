//! The UE side: MTK and MSK message reception as TS 33.246 §6.4.6 and §6.5
//! describe it. Each rule that drops a message has its own [`MikeyError`]
//! variant; state changes only after the MAC has verified.

use super::MikeyError;
use super::key_data::MtkIdInterval;
use super::msk_message::{self, MSK_KEY_TYPE, MskMessageInfo};
use super::mtk_message::{self, MtkKeyIds};
use super::protected::{MAX_PLAINTEXT, Sealed, single_key_data};
use super::serial::serial_gt;
use crate::protocol::keys::{KeyDomainId, Msk, MskId, Mtk, MtkId, MtkKey, MtkSalt, Muk};
use crate::protocol::profile::mikey as profile;
use zeroize::Zeroizing;

/// What a UE keeps per MSK for MTK messages: the replay counter of the T
/// payload, the current MTK ID, and (optionally) the MSK's Key Validity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MtkReceptionState {
    pub last_counter: Option<u32>,
    pub current_mtk_id: Option<MtkId>,
    /// When set, MTK IDs outside [SEQl, SEQu] are dropped (wire reference
    /// §6.3: the seed CR defines the window, not this check).
    pub validity: Option<MtkIdInterval>,
}

/// What a UE keeps per MUK: the replay counter of MSK messages (seed §6.4.6.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MukReceptionState {
    pub last_counter: Option<u32>,
}

/// An accepted MTK message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedMtk {
    pub key_ids: MtkKeyIds,
    pub mtk: Mtk,
}

/// An accepted MSK message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedMskMessage {
    pub key_domain_id: KeyDomainId,
    pub counter: u32,
    /// V bit: the BM-SC wants a MIKEY acknowledgement.
    pub verification_requested: bool,
    pub update: MskUpdate,
}

/// What an MSK message asks the UE to do (seed §6.5.3, §6.3.2.2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MskUpdate {
    /// Store (or replace) this MSK with its validity.
    Delivery {
        msk_id: MskId,
        msk: Msk,
        validity: MtkIdInterval,
    },
    /// Update the validity of a stored MSK; SEQl > SEQu invalidates it.
    ValidityUpdate {
        msk_id: MskId,
        validity: MtkIdInterval,
    },
    /// Request the current MSK of this Key Group over HTTP (§6.3.2.2.1).
    SolicitedPull {
        key_domain_id: KeyDomainId,
        key_group: u16,
    },
}

/// What EXT says a received message is, with its identifiers (not yet
/// authenticated): the first step of both reception procedures (seed
/// §6.4.6.1, §6.4.6.2, §6.5.3). An MTK ID in EXT makes it an MTK message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeekedMessage<'a> {
    Mtk(MtkKeyIds),
    Msk(MskMessageInfo<'a>),
}

/// Tells MTK from MSK messages and reads their identifiers, so the caller can
/// pick the MSK or MUK to open them with.
pub fn peek_message(bytes: &[u8]) -> Result<PeekedMessage<'_>, MikeyError> {
    let sealed = Sealed::parse(bytes)?;
    if sealed.key_ids.mtk_id.is_some() {
        mtk_message::key_ids(&sealed).map(PeekedMessage::Mtk)
    } else {
        msk_message::info(&sealed).map(PeekedMessage::Msk)
    }
}

/// Seed §6.4.6.1 step 2 / §6.4.6.2 step 2: drop a counter that is not after
/// the stored one in RFC 1982 terms.
fn check_replay(last: Option<u32>, counter: u32) -> Result<(), MikeyError> {
    match last {
        Some(last) if !serial_gt(counter, last) => Err(MikeyError::Replayed { counter, last }),
        _ => Ok(()),
    }
}

/// Opens an MTK message under `msk` with that MSK's reception `state`
/// (seed §6.4.6.2, §6.5): structure and kind, replay counter, MTK ID order,
/// validity window, then MAC and decryption. `state` is updated only when the
/// message is accepted.
pub fn open_mtk_message(
    msk: &Msk,
    state: &mut MtkReceptionState,
    bytes: &[u8],
) -> Result<OpenedMtk, MikeyError> {
    let (sealed, key_ids) = mtk_message::parse(bytes)?;
    check_replay(state.last_counter, key_ids.counter)?;
    if let Some(current) = state.current_mtk_id
        && key_ids.mtk_id <= current
    {
        return Err(MikeyError::StaleMtkId {
            mtk_id: key_ids.mtk_id,
            current,
        });
    }
    if let Some(validity) = state.validity
        && !validity.contains(key_ids.mtk_id)
    {
        return Err(MikeyError::OutsideValidity {
            mtk_id: key_ids.mtk_id,
            validity,
        });
    }
    let mut buf = Zeroizing::new([0u8; MAX_PLAINTEXT]);
    let plaintext = sealed.unseal(msk.expose(), buf.as_mut_slice())?;
    let kd = single_key_data(
        plaintext,
        profile::MTK_KEY_DATA_TYPE,
        profile::MTK_KEY_VALIDITY,
    )?;
    let key = MtkKey::from_slice(kd.key()).ok_or(MikeyError::Unsupported {
        field: "MTK length",
        value: kd.key().len() as u64,
    })?;
    let salt = kd.salt().unwrap_or_default();
    let salt = MtkSalt::from_slice(salt).ok_or(MikeyError::Unsupported {
        field: "MTK salt length",
        value: salt.len() as u64,
    })?;
    state.last_counter = Some(key_ids.counter);
    state.current_mtk_id = Some(key_ids.mtk_id);
    Ok(OpenedMtk {
        key_ids,
        mtk: Mtk { key, salt },
    })
}

/// Opens an MSK message under `muk` with that MUK's reception `state`
/// (seed §6.4.6.1, §6.5.2, §6.5.3). The replay counter is updated only after
/// the message validated.
pub fn open_msk_message(
    muk: &Muk,
    state: &mut MukReceptionState,
    bytes: &[u8],
) -> Result<OpenedMskMessage, MikeyError> {
    let (sealed, info) = msk_message::parse(bytes)?;
    check_replay(state.last_counter, info.counter)?;
    let solicited_pull = sealed.kemac.encr_data().is_empty();
    if solicited_pull && info.msk_id.key_number() != MskId::CURRENT_KEY_NUMBER {
        return Err(MikeyError::WrongMessageKind(
            "MAC-only KEMAC (solicited pull) needs Key Number 0 in the MSK ID",
        ));
    }
    if solicited_pull && info.verification_requested {
        return Err(MikeyError::WrongMessageKind(
            "a solicited pull never sets the V bit",
        ));
    }
    let mut buf = Zeroizing::new([0u8; MAX_PLAINTEXT]);
    let plaintext = sealed.unseal(muk.expose(), buf.as_mut_slice())?;
    let update = if solicited_pull {
        MskUpdate::SolicitedPull {
            key_domain_id: info.key_domain_id,
            key_group: info.msk_id.key_group(),
        }
    } else {
        let kd = single_key_data(plaintext, MSK_KEY_TYPE as u8, profile::MSK_KEY_VALIDITY)?;
        let validity = MtkIdInterval::from_key_validity(&kd.validity())?;
        let msk_id = info.msk_id;
        if kd.key().len() == profile::MSK_VALIDITY_ONLY_KEY_LEN {
            MskUpdate::ValidityUpdate { msk_id, validity }
        } else {
            let msk = Msk::from_slice(kd.key()).ok_or(MikeyError::Unsupported {
                field: "MSK length",
                value: kd.key().len() as u64,
            })?;
            MskUpdate::Delivery {
                msk_id,
                msk,
                validity,
            }
        }
    };
    state.last_counter = Some(info.counter);
    Ok(OpenedMskMessage {
        key_domain_id: info.key_domain_id,
        counter: info.counter,
        verification_requested: info.verification_requested,
        update,
    })
}
