//! The receiving side of a FLUTE session (RFC 3926 §3, TS 26.346 §7), as a
//! probe or UE runs it: ALC packets in, FDT Instances and whole objects out.
//!
//! - Packets are demultiplexed by TSI and TOI. TOI 0 carries FDT Instances
//!   (EXT_FDT); a newer instance's File entries name the objects.
//! - Each object is rebuilt by an [`ObjectDecoder`] set up from the packet's
//!   EXT_FTI (every packet carries one in the MBMS profile), so symbols are
//!   placed even before the FDT is known; a finished object waits (bounded)
//!   for its FDT entry.
//! - A completed object is checked against the FDT's Content-MD5 and
//!   Transfer-Length; repeats of a completed object are ignored until the
//!   FDT maps its TOI to another object (TOI wrap-around).
//!
//! Sans-IO: bytes in, events out; the caller owns sockets and clocks.

use std::collections::{BTreeMap, HashMap};

use md5::{Digest, Md5};
use thiserror::Error;

use super::alc::AlcPacket;
use super::fdt::{FdtFile, FdtInstance, FdtParseError};
use super::fec::{FecDecodeError, ObjectDecoder};
use super::lct::TOI_FDT;
use crate::protocol::codec::{Codec, DecodeError};

/// Objects completed before their FDT entry arrived, kept at most.
pub const MAX_UNNAMED_OBJECTS: usize = 64;
/// Objects being rebuilt at once, at most.
pub const MAX_OPEN_OBJECTS: usize = 1024;

/// Why a packet or object was not taken.
#[derive(Debug, Error)]
pub enum ReceiveError {
    #[error("ALC packet: {0}")]
    Packet(#[from] DecodeError),
    #[error("TSI {got} is not the session's {expected}")]
    OtherSession { expected: u64, got: u64 },
    #[error("TOI {toi}: packet without EXT_FTI before the object's OTI is known")]
    NoOti { toi: u128 },
    #[error("TOI {toi}: {source}")]
    Fec {
        toi: u128,
        #[source]
        source: FecDecodeError,
    },
    #[error("FDT Instance {instance_id}: {source}")]
    Fdt {
        instance_id: u32,
        #[source]
        source: FdtParseError,
    },
    #[error("FDT Instance {instance_id} is not UTF-8")]
    FdtNotText { instance_id: u32 },
    #[error("TOI 0 packet without EXT_FDT")]
    FdtWithoutExtFdt,
    #[error("{content_location}: Content-MD5 does not match the received object")]
    Md5Mismatch { content_location: String },
    #[error("{content_location}: {got} bytes received, the FDT says {expected}")]
    LengthMismatch {
        content_location: String,
        expected: u64,
        got: u64,
    },
    #[error("too many objects in progress ({MAX_OPEN_OBJECTS})")]
    TooManyObjects,
}

/// What a packet completed.
#[derive(Debug)]
pub enum ReceiverEvent {
    /// A new FDT Instance.
    Fdt { instance_id: u32 },
    /// An object, whole and checked against its FDT entry.
    Object { file: Box<FdtFile>, data: Vec<u8> },
    /// The sender closed the session (A flag).
    SessionClosed,
}

/// Counters of one receiver.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    pub packets: u64,
    pub bytes: u64,
    pub rejected_packets: u64,
    pub fdt_instances: u64,
    pub objects: u64,
    pub repeats_ignored: u64,
}

enum Slot {
    Decoding(Box<ObjectDecoder>),
    /// Whole, waiting for the FDT entry that names it.
    Unnamed(Vec<u8>),
    /// Delivered; repeats are ignored.
    Delivered,
}

pub struct FluteReceiver {
    tsi: Option<u64>,
    max_object_len: u64,
    /// The File entries of the newest FDT Instances, by TOI.
    files: HashMap<u128, FdtFile>,
    fdt_decoders: BTreeMap<u32, ObjectDecoder>,
    last_instance: Option<u32>,
    objects: HashMap<u128, Slot>,
    stats: ReceiverStats,
}

impl FluteReceiver {
    /// A receiver for session `tsi` (any when `None`) that accepts objects
    /// of at most `max_object_len` bytes.
    pub fn new(tsi: Option<u64>, max_object_len: u64) -> Self {
        Self {
            tsi,
            max_object_len,
            files: HashMap::new(),
            fdt_decoders: BTreeMap::new(),
            last_instance: None,
            objects: HashMap::new(),
            stats: ReceiverStats::default(),
        }
    }

    pub fn stats(&self) -> &ReceiverStats {
        &self.stats
    }

    /// The FDT entry for `toi`, if an FDT named it.
    pub fn file(&self, toi: u128) -> Option<&FdtFile> {
        self.files.get(&toi)
    }

    /// Entries of the FDT whose objects were not delivered (yet).
    pub fn pending_files(&self) -> impl Iterator<Item = &FdtFile> {
        self.files
            .values()
            .filter(|f| !matches!(self.objects.get(&f.toi), Some(Slot::Delivered)))
    }

    /// Takes one datagram. Events go to `events` (a packet may complete an
    /// FDT and with it name objects already rebuilt).
    pub fn receive(
        &mut self,
        datagram: &[u8],
        events: &mut Vec<ReceiverEvent>,
    ) -> Result<(), ReceiveError> {
        self.stats.packets += 1;
        self.stats.bytes += datagram.len() as u64;
        let result = self.take(datagram, events);
        if result.is_err() {
            self.stats.rejected_packets += 1;
        }
        result
    }

    fn take(
        &mut self,
        datagram: &[u8],
        events: &mut Vec<ReceiverEvent>,
    ) -> Result<(), ReceiveError> {
        let packet = AlcPacket::decode(datagram)?;
        let tsi = packet.header.tsi;
        if let Some(expected) = self.tsi
            && expected != tsi
        {
            return Err(ReceiveError::OtherSession { expected, got: tsi });
        }
        if packet.header.close_session {
            events.push(ReceiverEvent::SessionClosed);
        }
        if packet.payload_id.is_none() {
            return Ok(());
        }
        let toi = packet.header.toi;
        if toi == TOI_FDT {
            return self.take_fdt(&packet, events);
        }
        let max = self.max_object_len;
        if !self.objects.contains_key(&toi) && self.objects.len() >= MAX_OPEN_OBJECTS {
            return Err(ReceiveError::TooManyObjects);
        }
        let slot = match self.objects.get_mut(&toi) {
            Some(slot) => slot,
            None => {
                let oti = packet.oti().ok_or(ReceiveError::NoOti { toi })??;
                let decoder = ObjectDecoder::new(&oti, max)
                    .map_err(|source| ReceiveError::Fec { toi, source })?;
                self.objects
                    .entry(toi)
                    .or_insert(Slot::Decoding(Box::new(decoder)))
            }
        };
        let Slot::Decoding(decoder) = slot else {
            self.stats.repeats_ignored += 1;
            return Ok(());
        };
        decoder
            .push_packet(&packet)
            .map_err(|source| ReceiveError::Fec { toi, source })?;

        if !decoder.is_complete() {
            return Ok(());
        }
        let Some(Slot::Decoding(decoder)) = self.objects.remove(&toi) else {
            return Ok(());
        };
        let data = decoder
            .finish()
            .map_err(|source| ReceiveError::Fec { toi, source })?;
        self.objects.insert(toi, Slot::Unnamed(data));
        self.deliver(toi, events)
    }

    fn take_fdt(
        &mut self,
        packet: &AlcPacket<'_>,
        events: &mut Vec<ReceiverEvent>,
    ) -> Result<(), ReceiveError> {
        let instance_id = packet
            .header
            .extensions
            .fdt()
            .ok_or(ReceiveError::FdtWithoutExtFdt)?
            .instance_id;
        if self.last_instance == Some(instance_id) {
            self.stats.repeats_ignored += 1;
            return Ok(());
        }
        let decoder = match self.fdt_decoders.entry(instance_id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let oti = packet.oti().ok_or(ReceiveError::NoOti { toi: TOI_FDT })??;
                let decoder = ObjectDecoder::new(&oti, self.max_object_len).map_err(|source| {
                    ReceiveError::Fec {
                        toi: TOI_FDT,
                        source,
                    }
                })?;
                e.insert(decoder)
            }
        };
        decoder
            .push_packet(packet)
            .map_err(|source| ReceiveError::Fec {
                toi: TOI_FDT,
                source,
            })?;
        if !decoder.is_complete() {
            // Instances never completed are dropped once newer ones are.
            while self.fdt_decoders.len() > 8 {
                self.fdt_decoders.pop_first();
            }
            return Ok(());
        }
        let Some(decoder) = self.fdt_decoders.remove(&instance_id) else {
            return Ok(());
        };
        let data = decoder.finish().map_err(|source| ReceiveError::Fec {
            toi: TOI_FDT,
            source,
        })?;
        let text = String::from_utf8(data).map_err(|_| ReceiveError::FdtNotText { instance_id })?;
        let instance = FdtInstance::parse(&text).map_err(|source| ReceiveError::Fdt {
            instance_id,
            source,
        })?;
        self.last_instance = Some(instance_id);
        self.stats.fdt_instances += 1;
        events.push(ReceiverEvent::Fdt { instance_id });
        for mut file in instance.files.clone() {
            if file.fec_oti.is_none() {
                file.fec_oti = instance.fec_oti.clone();
            }
            let toi = file.toi;
            let renamed = self
                .files
                .get(&toi)
                .is_some_and(|old| old.content_location != file.content_location);
            if renamed && matches!(self.objects.get(&toi), Some(Slot::Delivered)) {
                // The TOI now names another object (wrap-around).
                self.objects.remove(&toi);
            }
            self.files.insert(toi, file);
            if matches!(self.objects.get(&toi), Some(Slot::Unnamed(_))) {
                self.deliver(toi, events)?;
            }
        }
        if instance.full_fdt {
            // A full FDT lists every live object: forget the others.
            let live: std::collections::HashSet<u128> =
                instance.files.iter().map(|f| f.toi).collect();
            self.files.retain(|toi, _| live.contains(toi));
            self.objects
                .retain(|toi, slot| !matches!(slot, Slot::Delivered) || live.contains(toi));
        }
        self.trim_unnamed();
        Ok(())
    }

    /// Delivers the whole object at `toi` if the FDT names it.
    fn deliver(&mut self, toi: u128, events: &mut Vec<ReceiverEvent>) -> Result<(), ReceiveError> {
        let Some(file) = self.files.get(&toi).cloned() else {
            self.trim_unnamed();
            return Ok(());
        };
        let Some(Slot::Unnamed(data)) = self.objects.remove(&toi) else {
            return Ok(());
        };
        self.objects.insert(toi, Slot::Delivered);
        if let Some(expected) = file.transfer_length.or(file.content_length)
            && expected != data.len() as u64
        {
            return Err(ReceiveError::LengthMismatch {
                content_location: file.content_location,
                expected,
                got: data.len() as u64,
            });
        }
        if let Some(md5) = file.content_md5
            && <[u8; 16]>::from(Md5::digest(&data)) != md5
        {
            return Err(ReceiveError::Md5Mismatch {
                content_location: file.content_location,
            });
        }
        self.stats.objects += 1;
        events.push(ReceiverEvent::Object {
            file: Box::new(file),
            data,
        });
        Ok(())
    }

    fn trim_unnamed(&mut self) {
        let unnamed: Vec<u128> = self
            .objects
            .iter()
            .filter(|(_, s)| matches!(s, Slot::Unnamed(_)))
            .map(|(toi, _)| *toi)
            .collect();
        let excess = unnamed.len().saturating_sub(MAX_UNNAMED_OBJECTS);
        if excess > 0 {
            for toi in unnamed.into_iter().take(excess) {
                self.objects.remove(&toi);
            }
        }
    }
}
