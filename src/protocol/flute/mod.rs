//! FLUTE (RFC 3926, as profiled by TS 26.346 §7) on ALC (RFC 5775) and LCT
//! (RFC 5651): header codecs, FEC Object Transmission Information, block
//! partitioning, the Compact No-Code packetizer, Raptor and RaptorQ FEC (`fec`), the
//! FDT-Instance model, TOI allocation and the download-session carousel (which
//! FDT and object go next).
//!
//! Decoders borrow from the packet and never panic; the packetizer writes into
//! caller-owned buffers and takes the object as a stream of symbol slices, so a
//! large object never has to sit in memory.

pub mod alc;
pub mod carousel;
pub mod content_location;
pub mod ext;
pub mod fdt;
pub mod fec;
pub mod lct;
pub mod object_sender;
pub mod oti;
pub mod partition;
pub mod receiver;
pub mod toi;

use thiserror::Error;

/// Why a FLUTE/ALC value cannot be built or sent. Decoding failures use the
/// shared [`crate::protocol::codec::DecodeError`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FluteError {
    #[error("{field}: value {value} does not fit in {bits} bits")]
    ValueTooWide {
        field: &'static str,
        value: u128,
        bits: u32,
    },
    #[error("LCT field widths: {reason}")]
    InvalidWidths { reason: &'static str },
    #[error("LCT header extension {het}: body of {len} bytes is not allowed ({reason})")]
    ExtensionBody {
        het: u8,
        len: usize,
        reason: &'static str,
    },
    #[error("LCT header of {len} bytes exceeds the 1020-byte HDR_LEN limit")]
    HeaderTooLong { len: usize },
    #[error("FEC Encoding ID {0} is not supported by this operation")]
    UnsupportedFec(u8),
    #[error("encoding symbol length must be at least 1 byte")]
    ZeroSymbolLength,
    #[error("maximum source block length must be at least 1 symbol")]
    ZeroBlockLength,
    #[error("sub-block count N must be at least 1")]
    ZeroSubBlocks,
    #[error("{blocks} source blocks cannot partition {symbols} source symbols")]
    BlockCount { blocks: u64, symbols: u64 },
    #[error("symbol length {symbol_length} is not a multiple of the symbol alignment {alignment}")]
    SymbolAlignment { symbol_length: u16, alignment: u8 },
    #[error("repair overhead {0} is not a finite fraction in 0..=10")]
    RepairOverhead(String),
    #[error("{scheme} needs at least {min} source symbols per block; {symbols} is too few")]
    TooFewSourceSymbols {
        scheme: &'static str,
        symbols: u64,
        min: u64,
    },
    #[error("{what} {value} exceeds the {scheme} limit {limit}")]
    SchemeLimit {
        scheme: &'static str,
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error("{what} {value} exceeds the limit {limit} of the FEC Payload ID")]
    PayloadIdOverflow {
        what: &'static str,
        value: u64,
        limit: u64,
    },
    #[error(
        "packet of {needed} bytes (headers {header_len} + symbol {symbol_len}) exceeds the maximum ALC packet size {max}"
    )]
    PacketTooLarge {
        needed: usize,
        header_len: usize,
        symbol_len: usize,
        max: usize,
    },
    #[error("symbol of {got} bytes given where {expected} bytes were requested")]
    SymbolLengthMismatch { expected: usize, got: usize },
    #[error("output buffer of {available} bytes is smaller than the {needed}-byte packet")]
    OutputTooSmall { needed: usize, available: usize },
    #[error("TOI 0 is reserved for FDT Instances (RFC 3926 §3.3)")]
    ReservedToi,
    #[error("object transmission is complete: no further packet")]
    ObjectComplete,
}
