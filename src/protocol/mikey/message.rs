//! A MIKEY message: HDR followed by payloads chained by next-payload bytes
//! (RFC 3830 §6; wire reference §2.1). Each payload starts with the type of
//! the payload *after* it, so the chain is walked here, not in the payloads.

use super::ext::GeneralExtension;
use super::hdr::Hdr;
use super::id::Id;
use super::kemac::Kemac;
use super::rand::Rand;
use super::timestamp::Timestamp;
use super::verification::Verification;
use crate::protocol::codec::{Codec, DecodeError, Reader};

/// Next-payload codes (IANA "Next payload").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PayloadType {
    Last = 0,
    Kemac = 1,
    Pke = 2,
    Dh = 3,
    Sign = 4,
    Timestamp = 5,
    Id = 6,
    Cert = 7,
    Chash = 8,
    Verification = 9,
    Sp = 10,
    Rand = 11,
    Err = 12,
    /// Sub-payload inside KEMAC only.
    KeyData = 20,
    GeneralExtension = 21,
}

/// A top-level payload this implementation can decode. Public-key, DH,
/// certificate, signature, SP and error payloads are not used by MBMS and are
/// rejected by the decoder as unsupported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload<'a> {
    Kemac(Kemac<'a>),
    Timestamp(Timestamp),
    Id(Id<'a>),
    Verification(Verification<'a>),
    Rand(Rand<'a>),
    GeneralExtension(GeneralExtension<'a>),
}

impl<'a> Payload<'a> {
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Self::Kemac(_) => PayloadType::Kemac,
            Self::Timestamp(_) => PayloadType::Timestamp,
            Self::Id(_) => PayloadType::Id,
            Self::Verification(_) => PayloadType::Verification,
            Self::Rand(_) => PayloadType::Rand,
            Self::GeneralExtension(_) => PayloadType::GeneralExtension,
        }
    }

    /// Body length (without the next-payload byte).
    pub fn body_len(&self) -> usize {
        match self {
            Self::Kemac(p) => p.encoded_len(),
            Self::Timestamp(p) => p.encoded_len(),
            Self::Id(p) => p.encoded_len(),
            Self::Verification(p) => p.encoded_len(),
            Self::Rand(p) => p.encoded_len(),
            Self::GeneralExtension(p) => p.encoded_len(),
        }
    }

    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Self::Kemac(p) => p.encode(out),
            Self::Timestamp(p) => p.encode(out),
            Self::Id(p) => p.encode(out),
            Self::Verification(p) => p.encode(out),
            Self::Rand(p) => p.encode(out),
            Self::GeneralExtension(p) => p.encode(out),
        }
    }

    /// Reads the body of a payload whose type the previous payload announced.
    pub fn read_body(payload_type: u8, r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        const KEMAC: u8 = PayloadType::Kemac as u8;
        const T: u8 = PayloadType::Timestamp as u8;
        const ID: u8 = PayloadType::Id as u8;
        const V: u8 = PayloadType::Verification as u8;
        const RAND: u8 = PayloadType::Rand as u8;
        const EXT: u8 = PayloadType::GeneralExtension as u8;
        Ok(match payload_type {
            KEMAC => Self::Kemac(Kemac::read(r)?),
            T => Self::Timestamp(Timestamp::read(r)?),
            ID => Self::Id(Id::read(r)?),
            V => Self::Verification(Verification::read(r)?),
            RAND => Self::Rand(Rand::read(r)?),
            EXT => Self::GeneralExtension(GeneralExtension::read(r)?),
            other => return Err(DecodeError::unsupported("next payload", other.into())),
        })
    }
}

/// Appends `payloads` as a chain: before each body, the type of the payload
/// after it (0 after the last). `hdr.next_payload` must name the first; use
/// [`first_payload_type`].
pub fn encode_chain(payloads: &[Payload<'_>], last_next: u8, out: &mut Vec<u8>) {
    for (i, payload) in payloads.iter().enumerate() {
        let next = payloads
            .get(i + 1)
            .map_or(last_next, |p| p.payload_type() as u8);
        out.push(next);
        payload.encode_body(out);
    }
}

/// The HDR next-payload value for a chain.
pub fn first_payload_type(payloads: &[Payload<'_>]) -> u8 {
    payloads
        .first()
        .map_or(PayloadType::Last as u8, |p| p.payload_type() as u8)
}

/// A payload as found in a buffer, with the offset of its first byte (its
/// next-payload byte), so callers can locate MAC-covered ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<'a> {
    pub offset: usize,
    pub payload: Payload<'a>,
}

/// Walks the payloads after HDR without allocating.
#[derive(Debug, Clone)]
pub struct PayloadIter<'a> {
    r: Reader<'a>,
    next_type: u8,
    failed: bool,
}

impl<'a> PayloadIter<'a> {
    /// Reads HDR and positions the walk on the first payload.
    pub fn start(bytes: &'a [u8]) -> Result<(Hdr<'a>, Self), DecodeError> {
        let mut r = Reader::new(bytes);
        let hdr = Hdr::read(&mut r)?;
        let next_type = hdr.next_payload;
        Ok((
            hdr,
            Self {
                r,
                next_type,
                failed: false,
            },
        ))
    }

    /// Fails unless the chain ended exactly at the end of the buffer.
    pub fn expect_end(&self) -> Result<(), DecodeError> {
        self.r.expect_end("MIKEY message")
    }
}

impl<'a> Iterator for PayloadIter<'a> {
    type Item = Result<Located<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.next_type == PayloadType::Last as u8 {
            return None;
        }
        let offset = self.r.position();
        let item = self.r.u8("next payload").and_then(|next| {
            let payload = Payload::read_body(self.next_type, &mut self.r)?;
            self.next_type = next;
            Ok(Located { offset, payload })
        });
        self.failed = item.is_err();
        Some(item)
    }
}

/// A whole message, decoded into a list (allocates; for tools and tests —
/// the MTK/MSK openers walk with [`PayloadIter`] instead).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// `hdr.next_payload` is ignored on encode and set from `payloads`.
    pub hdr: Hdr<'a>,
    pub payloads: Vec<Payload<'a>>,
}

impl<'a> Codec<'a> for Message<'a> {
    fn encoded_len(&self) -> usize {
        self.hdr.encoded_len()
            + self
                .payloads
                .iter()
                .map(|p| 1 + p.body_len())
                .sum::<usize>()
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let hdr = Hdr {
            next_payload: first_payload_type(&self.payloads),
            ..self.hdr.clone()
        };
        hdr.encode(out);
        encode_chain(&self.payloads, PayloadType::Last as u8, out);
    }

    fn read(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let hdr = Hdr::read(r)?;
        let mut next_type = hdr.next_payload;
        let mut payloads = Vec::new();
        while next_type != PayloadType::Last as u8 {
            let next = r.u8("next payload")?;
            payloads.push(Payload::read_body(next_type, r)?);
            next_type = next;
        }
        Ok(Self { hdr, payloads })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::mikey::hdr::CsIdMap;

    fn hdr(next_payload: u8) -> Hdr<'static> {
        Hdr {
            data_type: 0,
            next_payload,
            verification_requested: false,
            prf_func: 0,
            csb_id: 1,
            cs_id_map: CsIdMap::Empty { num_cs: 0 },
        }
    }

    #[test]
    fn chain_bytes_name_the_following_payload() {
        let msg = Message {
            hdr: hdr(0),
            payloads: vec![
                Payload::Timestamp(Timestamp::Counter(9)),
                Payload::Rand(Rand::new(&[7]).unwrap()),
            ],
        };
        let bytes = msg.to_vec();
        // HDR next = T(5); T's next = RAND(11); RAND's next = last(0).
        assert_eq!(bytes[2], 5);
        assert_eq!(&bytes[10..], &[11, 2, 0, 0, 0, 9, 0, 1, 7]);
        let (_, iter) = PayloadIter::start(&bytes).unwrap();
        let offsets: Vec<_> = iter.map(|p| p.unwrap().offset).collect();
        assert_eq!(offsets, [10, 16]);
    }

    #[test]
    fn unknown_and_unused_payload_types_are_rejected() {
        for code in [PayloadType::Sp as u8, PayloadType::KeyData as u8, 13, 0xff] {
            let mut bytes = hdr(code).to_vec();
            bytes.extend_from_slice(&[0, 0, 0, 0]);
            assert_eq!(
                Message::decode(&bytes),
                Err(DecodeError::unsupported("next payload", code.into()))
            );
            let (_, mut iter) = PayloadIter::start(&bytes).unwrap();
            assert!(iter.next().unwrap().is_err());
            assert!(iter.next().is_none(), "the walk stops after an error");
        }
    }

    #[test]
    fn trailing_bytes_after_the_last_payload() {
        let mut bytes = hdr(0).to_vec();
        bytes.push(0);
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::Trailing {
                what: std::any::type_name::<Message>(),
                extra: 1
            })
        );
    }
}
