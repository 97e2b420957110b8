//! The MIKEY common header (RFC 3830 §6.1; wire reference §1).

use crate::protocol::codec::{Codec, DecodeError, Reader};

/// HDR version 1 (RFC 3830 §6.1); any other value is a different protocol.
pub const VERSION: u8 = 1;

/// HDR data types used by MBMS (IANA "MIKEY Data Type").
pub mod data_type {
    /// Pre-shared key initiation: MTK messages (MSK) and MSK messages (MUK).
    pub const PSK_INIT: u8 = 0;
    /// Pre-shared key verification message (RFC 3830 §3.1).
    pub const PSK_VERIFY: u8 = 1;
}

/// CS ID map types (IANA; RFC 3830 §6.1.1, RFC 4563 §5).
pub mod map_type {
    pub const SRTP_ID: u8 = 0;
    pub const EMPTY: u8 = 1;
}

const V_BIT: u8 = 0x80;
const PRF_MASK: u8 = 0x7f;
const SRTP_CS_LEN: usize = 9;

/// The common header. `next_payload` names the first payload after HDR;
/// [`Message`](super::Message) fills it in from its payload list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hdr<'a> {
    pub data_type: u8,
    pub next_payload: u8,
    /// V bit: the initiator asks for a verification message.
    pub verification_requested: bool,
    /// 7-bit PRF function (0 = MIKEY-1).
    pub prf_func: u8,
    pub csb_id: u32,
    pub cs_id_map: CsIdMap<'a>,
}

/// The CS ID map: which crypto sessions the keys are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsIdMap<'a> {
    /// Map type 0: one 9-byte entry per crypto session.
    Srtp(SrtpIdMap<'a>),
    /// Map type 1 (RFC 4563): no map info; MBMS uses it with #CS = 0.
    Empty { num_cs: u8 },
}

/// SRTP-ID map info: #CS entries `Policy_no(1) ‖ SSRC(4) ‖ ROC(4)`, kept as the
/// raw bytes so decoding borrows instead of allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpIdMap<'a>(&'a [u8]);

/// One SRTP-ID map entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SrtpCs {
    pub policy_no: u8,
    pub ssrc: u32,
    pub roc: u32,
}

impl SrtpCs {
    pub fn to_bytes(self) -> [u8; SRTP_CS_LEN] {
        let mut out = [0u8; SRTP_CS_LEN];
        out[0] = self.policy_no;
        out[1..5].copy_from_slice(&self.ssrc.to_be_bytes());
        out[5..].copy_from_slice(&self.roc.to_be_bytes());
        out
    }
}

impl<'a> SrtpIdMap<'a> {
    /// Wraps concatenated 9-byte entries; `None` unless the length is a whole
    /// number of entries and #CS (one byte) can count them.
    pub fn from_bytes(raw: &'a [u8]) -> Option<Self> {
        let whole = raw.len().is_multiple_of(SRTP_CS_LEN);
        (whole && raw.len() / SRTP_CS_LEN <= usize::from(u8::MAX)).then_some(Self(raw))
    }

    pub fn num_cs(&self) -> u8 {
        // from_bytes and read bound the count to 255.
        (self.0.len() / SRTP_CS_LEN) as u8
    }

    pub fn entries(&self) -> impl Iterator<Item = SrtpCs> + 'a {
        self.0.chunks_exact(SRTP_CS_LEN).map(|e| SrtpCs {
            policy_no: e[0],
            ssrc: u32::from_be_bytes([e[1], e[2], e[3], e[4]]),
            roc: u32::from_be_bytes([e[5], e[6], e[7], e[8]]),
        })
    }
}

impl<'a> Codec<'a> for Hdr<'a> {
    fn encoded_len(&self) -> usize {
        10 + match &self.cs_id_map {
            CsIdMap::Srtp(map) => map.0.len(),
            CsIdMap::Empty { .. } => 0,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(self.data_type);
        out.push(self.next_payload);
        let v = if self.verification_requested {
            V_BIT
        } else {
            0
        };
        out.push(v | (self.prf_func & PRF_MASK));
        out.extend_from_slice(&self.csb_id.to_be_bytes());
        match &self.cs_id_map {
            CsIdMap::Srtp(map) => {
                out.push(map.num_cs());
                out.push(map_type::SRTP_ID);
                out.extend_from_slice(map.0);
            }
            CsIdMap::Empty { num_cs } => {
                out.push(*num_cs);
                out.push(map_type::EMPTY);
            }
        }
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let version = r.u8("HDR version")?;
        if version != VERSION {
            return Err(DecodeError::unsupported("HDR version", version.into()));
        }
        let data_type = r.u8("HDR data type")?;
        let next_payload = r.u8("HDR next payload")?;
        let v_prf = r.u8("HDR V/PRF")?;
        let csb_id = r.u32("HDR CSB ID")?;
        let num_cs = r.u8("HDR #CS")?;
        let cs_id_map = match r.u8("HDR CS ID map type")? {
            map_type::SRTP_ID => {
                let raw = r.take(usize::from(num_cs) * SRTP_CS_LEN, "HDR SRTP-ID map")?;
                CsIdMap::Srtp(SrtpIdMap(raw))
            }
            map_type::EMPTY => CsIdMap::Empty { num_cs },
            other => return Err(DecodeError::unsupported("HDR CS ID map type", other.into())),
        };
        Ok(Self {
            data_type,
            next_payload,
            verification_requested: v_prf & V_BIT != 0,
            prf_func: v_prf & PRF_MASK,
            csb_id,
            cs_id_map,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_map_header_layout() {
        let hdr = Hdr {
            data_type: data_type::PSK_INIT,
            next_payload: 21,
            verification_requested: true,
            prf_func: 0,
            csb_id: 0x1234_5678,
            cs_id_map: CsIdMap::Empty { num_cs: 0 },
        };
        let bytes = hdr.to_vec();
        assert_eq!(
            hex::encode(&bytes),
            "0100158012345678 0001".replace(' ', "")
        );
        assert_eq!(Hdr::decode(&bytes).unwrap(), hdr);
    }

    #[test]
    fn srtp_map_entries_decode() {
        let entry = SrtpCs {
            policy_no: 7,
            ssrc: 0xdead_beef,
            roc: 3,
        };
        let mut bytes = hex::decode("0100010012345678").unwrap();
        bytes.extend_from_slice(&[2, map_type::SRTP_ID]);
        bytes.extend_from_slice(&entry.to_bytes());
        bytes.extend_from_slice(&entry.to_bytes());
        let hdr = Hdr::decode(&bytes).unwrap();
        let CsIdMap::Srtp(map) = &hdr.cs_id_map else {
            panic!("expected SRTP-ID map, got {:?}", hdr.cs_id_map);
        };
        assert_eq!(map.num_cs(), 2);
        assert_eq!(map.entries().collect::<Vec<_>>(), vec![entry, entry]);
        assert_eq!(hdr.to_vec(), bytes);
    }

    #[test]
    fn rejects_other_version_and_map_type() {
        assert_eq!(
            Hdr::decode(&hex::decode("02000000000000000001").unwrap()),
            Err(DecodeError::unsupported("HDR version", 2))
        );
        assert_eq!(
            Hdr::decode(&hex::decode("01000000000000000002").unwrap()),
            Err(DecodeError::unsupported("HDR CS ID map type", 2))
        );
    }

    #[test]
    fn srtp_map_wrapper_checks_length() {
        assert!(SrtpIdMap::from_bytes(&[0; 9]).is_some());
        assert!(SrtpIdMap::from_bytes(&[0; 10]).is_none());
    }
}
