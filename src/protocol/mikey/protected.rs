//! What MTK and MSK messages share: a pre-shared-key MIKEY message whose last
//! payload is a KEMAC encrypted with AES-CM-128 and authenticated with
//! HMAC-SHA-1-160 over everything before the MAC (wire reference §2.4, §3).

use super::MikeyError;
use super::envelope::{EnvelopeKeys, MAC_LEN};
use super::ext::{GeneralExtension, KeyIds};
use super::hdr::{CsIdMap, Hdr};
use super::id::Id;
use super::kemac::Kemac;
use super::key_data::{self, KeyData};
use super::message::{Payload, PayloadIter, PayloadType};
use super::rand::Rand;
use super::timestamp::Timestamp;
use crate::protocol::codec::{Codec, DecodeError};
use crate::protocol::keys::{KeyDomainId, MskId};
use crate::protocol::profile::mikey as profile;

/// Largest KEMAC plaintext an opener accepts: far above one MSK or MTK key
/// data sub-payload, small enough to decrypt on the stack.
pub(crate) const MAX_PLAINTEXT: usize = 256;

/// Everything a sealed message needs besides the pre-shared key.
pub(crate) struct SealInput<'a> {
    pub verification_requested: bool,
    pub csb_id: u32,
    pub timestamp: Timestamp,
    pub rand: Rand<'a>,
    /// The payloads between HDR and KEMAC, in wire order (they must include
    /// `timestamp` and `rand`).
    pub payloads: &'a [Payload<'a>],
    /// `None` gives a MAC-only KEMAC (Encr data len = 0).
    pub key_data: Option<KeyData<'a>>,
}

/// Appends the sealed message to `out`. Capacity is reserved up front so the
/// key data, briefly plaintext in `out`, is never left behind by a reallocation.
pub(crate) fn seal(psk: &[u8], input: &SealInput<'_>, out: &mut Vec<u8>) {
    let hdr = Hdr {
        data_type: profile::DATA_TYPE,
        next_payload: input
            .payloads
            .first()
            .map_or(PayloadType::Kemac, Payload::payload_type) as u8,
        verification_requested: input.verification_requested,
        prf_func: profile::PRF_FUNC,
        csb_id: input.csb_id,
        cs_id_map: CsIdMap::Empty {
            num_cs: profile::NUM_CS,
        },
    };
    let key_data = input.key_data.as_slice();
    let plaintext_len = key_data::chain_len(key_data);
    let chain_len: usize = input.payloads.iter().map(|p| 1 + p.body_len()).sum();
    out.reserve(hdr.encoded_len() + chain_len + 5 + plaintext_len + MAC_LEN);

    let start = out.len();
    hdr.encode(out);
    super::message::encode_chain(input.payloads, PayloadType::Kemac as u8, out);
    out.push(PayloadType::Last as u8);
    out.push(profile::ENCR_ALG);
    // One key data sub-payload is a few dozen bytes.
    out.extend_from_slice(&(plaintext_len as u16).to_be_bytes());
    let encrypted_from = out.len();
    key_data::encode_chain(key_data, out);
    let keys = EnvelopeKeys::derive(psk, input.csb_id, input.rand);
    keys.apply_keystream(
        input.csb_id,
        input.timestamp.iv_value(),
        &mut out[encrypted_from..],
    );
    out.push(profile::MAC_ALG);
    let mac = keys.mac(&out[start..]);
    out.extend_from_slice(&mac);
}

/// A parsed, not yet authenticated, pre-shared-key message.
#[derive(Debug)]
pub(crate) struct Sealed<'a> {
    pub hdr: Hdr<'a>,
    pub key_ids: KeyIds,
    pub timestamp: Timestamp,
    pub rand: Rand<'a>,
    pub idi: Option<Id<'a>>,
    pub idr: Option<Id<'a>>,
    pub kemac: Kemac<'a>,
    /// HDR byte 0 up to the MAC field: what the MAC covers.
    covered: &'a [u8],
}

fn once<T>(slot: &mut Option<T>, value: T, name: &'static str) -> Result<(), MikeyError> {
    match slot.replace(value) {
        Some(_) => Err(MikeyError::DuplicatePayload(name)),
        None => Ok(()),
    }
}

impl<'a> Sealed<'a> {
    /// Walks the payload chain and checks the profile's HDR values; no key
    /// needed. Extensions of other types are MAC-covered and otherwise ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, MikeyError> {
        let (hdr, mut payloads) = PayloadIter::start(bytes)?;
        if hdr.data_type != profile::DATA_TYPE {
            return Err(MikeyError::Unsupported {
                field: "HDR data type",
                value: hdr.data_type.into(),
            });
        }
        if hdr.prf_func != profile::PRF_FUNC {
            return Err(MikeyError::Unsupported {
                field: "HDR PRF func",
                value: hdr.prf_func.into(),
            });
        }
        let (mut key_ids, mut timestamp, mut rand) = (None, None, None);
        let (mut idi, mut idr, mut kemac) = (None, None, None);
        for located in payloads.by_ref() {
            if kemac.is_some() {
                return Err(DecodeError::invalid("KEMAC", "not the last payload").into());
            }
            match located?.payload {
                Payload::GeneralExtension(GeneralExtension::KeyIds(ids)) => {
                    once(&mut key_ids, ids, "EXT Key ID")?
                }
                Payload::GeneralExtension(GeneralExtension::Other { .. }) => {}
                Payload::Timestamp(t) => once(&mut timestamp, t, "T")?,
                Payload::Rand(r) => once(&mut rand, r, "RAND")?,
                Payload::Id(id) if idi.is_none() => idi = Some(id),
                Payload::Id(id) => once(&mut idr, id, "ID")?,
                Payload::Kemac(k) => kemac = Some(k),
                Payload::Verification(_) => return Err(MikeyError::UnexpectedPayload("V")),
            }
        }
        payloads.expect_end()?;
        let kemac = kemac.ok_or(MikeyError::MissingPayload("KEMAC"))?;
        let covered_len = bytes.len().saturating_sub(kemac.mac().len());
        Ok(Self {
            hdr,
            key_ids: key_ids.ok_or(MikeyError::MissingPayload("EXT Key ID"))?,
            timestamp: timestamp.ok_or(MikeyError::MissingPayload("T"))?,
            // Without RAND the labels use an empty RAND (wire reference §2.3).
            rand: rand.unwrap_or(Rand::EMPTY),
            idi,
            idr,
            kemac,
            covered: bytes.get(..covered_len).unwrap_or_default(),
        })
    }

    pub fn key_domain_id(&self) -> Result<KeyDomainId, MikeyError> {
        let missing = DecodeError::invalid("Key Domain ID", "missing from EXT Key ID");
        self.key_ids.key_domain_id.ok_or(missing.into())
    }

    pub fn msk_id(&self) -> Result<MskId, MikeyError> {
        let missing = DecodeError::invalid("MSK ID", "missing from EXT Key ID");
        self.key_ids.msk_id.ok_or(missing.into())
    }

    /// The T counter; MBMS replay protection needs TS type COUNTER.
    pub fn counter(&self) -> Result<u32, MikeyError> {
        counter_of(self.timestamp)
    }

    /// Verifies the MAC (constant time) under `psk` and decrypts the KEMAC
    /// data into `buf`, returning the plaintext key data sub-payloads.
    pub fn unseal<'b>(&self, psk: &[u8], buf: &'b mut [u8]) -> Result<&'b [u8], MikeyError> {
        let (encr, mac) = (self.kemac.encr_alg(), self.kemac.mac_alg());
        if encr != profile::ENCR_ALG {
            return Err(MikeyError::Unsupported {
                field: "KEMAC encr alg",
                value: encr.into(),
            });
        }
        if mac != profile::MAC_ALG {
            return Err(MikeyError::Unsupported {
                field: "KEMAC MAC alg",
                value: mac.into(),
            });
        }
        let data = self.kemac.encr_data();
        let plain = buf.get_mut(..data.len()).ok_or(MikeyError::Unsupported {
            field: "KEMAC encr data length",
            value: data.len() as u64,
        })?;
        let keys = EnvelopeKeys::derive(psk, self.hdr.csb_id, self.rand);
        if !keys.verify_mac(self.covered, self.kemac.mac()) {
            return Err(MikeyError::BadMac);
        }
        plain.copy_from_slice(data);
        keys.apply_keystream(self.hdr.csb_id, self.timestamp.iv_value(), plain);
        Ok(plain)
    }
}

/// The value of a COUNTER timestamp; other TS types are outside the profile.
pub(crate) fn counter_of(timestamp: Timestamp) -> Result<u32, MikeyError> {
    match timestamp {
        Timestamp::Counter(c) => Ok(c),
        other => Err(MikeyError::Unsupported {
            field: "T type",
            value: other.ts_type().into(),
        }),
    }
}

/// Exactly one key data sub-payload of the given profile type and validity.
pub(crate) fn single_key_data<'b>(
    plaintext: &'b [u8],
    key_type: u8,
    validity: u8,
) -> Result<KeyData<'b>, MikeyError> {
    let mut chain = key_data::KeyDataChain::new(plaintext);
    let kd = chain
        .next()
        .ok_or(MikeyError::MissingPayload("Key data"))??;
    match chain.next() {
        None => {}
        Some(Ok(_)) => return Err(MikeyError::DuplicatePayload("Key data")),
        Some(Err(e)) => return Err(e.into()),
    }
    if kd.key_type() as u8 != key_type {
        return Err(MikeyError::Unsupported {
            field: "Key data type",
            value: (kd.key_type() as u8).into(),
        });
    }
    if kd.validity().code() != validity {
        return Err(MikeyError::Unsupported {
            field: "Key data KV",
            value: kd.validity().code().into(),
        });
    }
    Ok(kd)
}
