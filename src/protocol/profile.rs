//! The project's wire profile: every choice that the TS 33.246 text available to
//! the project leaves open (design §2, wire reference §9). Each item is one
//! constant here, so a correction against the specification is a one-line change;
//! the README's "Conformance" section lists the same items.
//!
//! IANA code points that are not choices (payload type numbers, FEC Encoding IDs,
//! LCT extension numbers) live next to the code that uses them.

/// MIKEY common header (RFC 3830 §6.1), MTK and MSK messages alike.
pub mod mikey {
    /// HDR data type 0: pre-shared key (MSK for MTK messages, MUK for MSK messages).
    pub const DATA_TYPE: u8 = 0;
    /// PRF func 0: MIKEY-1 (RFC 3830 §4.1.2), HMAC-SHA-1 based.
    pub const PRF_FUNC: u8 = 0;
    /// #CS = 0 with CS ID map type 1, the empty map of RFC 4563 §5.
    pub const NUM_CS: u8 = 0;
    pub const CS_ID_MAP_TYPE: u8 = 1;
    /// T payload type 2 (COUNTER), a 32-bit value right-aligned in the 64-bit T of
    /// the KEMAC IV (RFC 3830 §4.2.3).
    pub const TS_TYPE: u8 = 2;
    /// RAND length: 16 fresh random bytes per message.
    pub const RAND_LEN: usize = 16;
    /// KEMAC encryption 1 (AES-CM-128) and MAC 1 (HMAC-SHA-1-160).
    pub const ENCR_ALG: u8 = 1;
    pub const MAC_ALG: u8 = 1;
    /// Key data type 3 (TEK+SALT) for the MTK: 16-byte key, 14-byte salt (H1 of
    /// the wire reference §2.7: the MTK is the SRTP master key, the salt the
    /// master salt).
    pub const MTK_KEY_DATA_TYPE: u8 = 3;
    /// MTK key validity: KV 0 (null).
    pub const MTK_KEY_VALIDITY: u8 = 0;
    /// MSK key data type 2 (TEK) with KV 2 (interval) carrying [SEQl, SEQu] as
    /// 2-byte MTK IDs (seed §6.5.3 fixes the meaning, not the encoding).
    pub const MSK_KEY_DATA_TYPE: u8 = 2;
    pub const MSK_KEY_VALIDITY: u8 = 2;
    /// An MSK message "without any key in KEMAC" only updates the Key Validity
    /// data (seed §6.5.3), e.g. SEQl > SEQu to invalidate the MSK. The CR text
    /// does not fix its encoding; the project sends one Key data sub-payload of
    /// type `MSK_KEY_DATA_TYPE` whose key length is this value (0), carrying the
    /// KV interval. A KEMAC with Encr data len = 0 is the solicited pull
    /// (seed §6.3.2.2.4), which has no validity to carry.
    pub const MSK_VALIDITY_ONLY_KEY_LEN: usize = 0;
    /// General Extension type 3 (Key ID, RFC 4563) holding entries
    /// `KeyIdType(1) ‖ KeyIdLen(2, BE) ‖ KeyId`.
    pub const EXT_TYPE_KEY_ID: u8 = 3;
    /// MUK ID = IDi ‖ IDr (seed §6.4.6.1 "combining IDi and IDr"; EF_MUK stores
    /// IDr first, the CR text does not fix the order).
    pub const MUK_ID_IDI_FIRST: bool = true;
}

/// SRTP for streaming sessions (RFC 3711; TS 33.246 §6.6.2 as profiled).
pub mod srtp {
    /// MKI = MSK ID (4) ‖ MTK ID (2) on every packet.
    pub const MKI_LEN: usize = 6;
    /// HMAC-SHA1-80.
    pub const AUTH_TAG_LEN: usize = 10;
    /// Key derivation rate 0: session keys derived once per master key.
    pub const KEY_DERIVATION_RATE: u64 = 0;
    const _: () = assert!(KEY_DERIVATION_RATE == 0, "srtp::kdf derives at rate 0 only");
    /// The ROC on air (RFC 4771): RCCm2 on every 16th packet. MBMS has no
    /// receiver feedback, so a UE joining after a sequence wrap learns the ROC
    /// only from the stream. RCCm2 keeps the default HMAC-SHA1-80 tag on every
    /// other packet: a service announced with integrity protection on
    /// (seed §6.3.2.1A) stays authenticated on every packet, and those packets
    /// are plain `AES_CM_128_HMAC_SHA1_80` to any RFC 3711 receiver that knows
    /// the ROC. RCCm1 and RCCm3 would leave 15 of every 16 packets without
    /// integrity. The RCC packets keep the 10-byte tag: ROC ‖ a 48-bit MAC.
    /// R = 16 bounds a late joiner's wait to 16 packets (0.3 s for a 50
    /// packets/s audio stream), well inside the MTK message re-send interval.
    pub const ROC_TRANSMISSION: crate::protocol::srtp::RocTransmission =
        crate::protocol::srtp::RocTransmission::Rcc {
            mode: crate::protocol::srtp::RccMode::Rccm2,
            rate: ROC_RATE,
        };
    /// R of [`ROC_TRANSMISSION`]: a packet carries the ROC when its SEQ is 0 mod R.
    pub const ROC_RATE: core::num::NonZeroU16 = core::num::NonZeroU16::new(16).unwrap();
}

/// OMA DRM v2 DCF for download sessions (TS 33.246 §6.6.3 as profiled).
pub mod dcf {
    /// EncryptionMethod 1 (AES_128_CBC) with PaddingScheme 1 (RFC 2630).
    pub const ENCRYPTION_METHOD: u8 = 1;
    pub const PADDING_SCHEME: u8 = 1;
    /// Textual header carrying hex(Key Domain ID ‖ MSK ID ‖ MTK ID).
    pub const KEY_ID_HEADER: &str = "MBMS-Key-ID";
    /// Content-Type of a protected object in the FDT (OMA-defined, not IANA).
    pub const CONTENT_TYPE: &str = "application/vnd.oma.drm.dcf";
}

/// FLUTE as profiled by TS 26.346 §7.
pub mod flute {
    /// EXT_FDT version 1: FLUTE per RFC 3926.
    pub const FDT_VERSION: u8 = 1;
    /// TSI length in bytes (16-bit TSI, H = 1, S = 0).
    pub const TSI_LEN: usize = 2;
    /// Content-Type of the MIKEY MTK object (IANA, RFC 3830).
    pub const MIKEY_CONTENT_TYPE: &str = "application/mikey";
    /// Content-Location of the MIKEY object carrying one MTK, which protected
    /// files name in `mbms2009:Decryption-KEY-URI` (seed §6.3.3.2.1 asks for
    /// "its own identifier" only; the form is the project's).
    pub fn mikey_content_location(mki: crate::protocol::keys::Mki) -> String {
        format!("mbms-keys/{:08x}-{:04x}.mikey", mki.msk_id.0, mki.mtk_id.0)
    }
    /// LCT codepoint carrying a FEC Encoding ID: the ID itself, as `ypo/flute`
    /// and `rt-libflute` do (wire reference §7.2; no 3GPP rule found for it).
    pub const fn codepoint(fec_encoding_id: u8) -> u8 {
        fec_encoding_id
    }
    /// The inverse of [`codepoint`], for receiving.
    pub const fn fec_encoding_id(codepoint: u8) -> u8 {
        codepoint
    }
    /// EXT_FTI in every ALC packet (not only the first of each block), so a
    /// receiver that joins mid-object can place every symbol it gets.
    pub const FTI_IN_EVERY_PACKET: bool = true;
}

/// UDP port of MIKEY MTK messages in streaming sessions (IANA "mikey", seed §6.3.3.2.2).
pub const MIKEY_UDP_PORT: u16 = 2269;

/// The UE-facing key management of TS 33.246 §6.2.1, §6.3.2 (registration,
/// deregistration, MSK requests, MSK delivery). The seed CRs leave the HTTP
/// payloads to stage 3 and GBA is out of scope (UEs are provisioned with their
/// Ks_NAF), so these are the project's choices.
pub mod key_management {
    /// The HTTP Digest password is the MRK, and the MRK is Ks_(ext)_NAF itself
    /// (GBA_ME), written as base64 as TS 24.109 §5 does for Ua passwords.
    /// UNVERIFIED: TS 33.246 §6.1 may derive MRK from Ks_NAF with a KDF.
    pub const DIGEST_PASSWORD_IS_BASE64_KS_NAF: bool = true;
    /// The MUK is Ks_(ext)_NAF itself (GBA_ME, 256 bits). UNVERIFIED as above.
    pub const MUK_IS_KS_NAF: bool = true;
    /// MIKEY IDi of MSK messages: the BM-SC's NAF-Id (its FQDN), ID type URI.
    pub const IDI_TYPE: u8 = 1;
    /// MIKEY IDr of MSK messages: the UE's B-TID (an NAI: `base64(RAND)@BSF`).
    pub const IDR_TYPE: u8 = 0;
    /// IANA media types of the request and response bodies (registered for
    /// TS 26.346 / TS 33.246 key management).
    pub const REGISTER_TYPE: &str = "application/mbms-register+xml";
    pub const REGISTER_RESPONSE_TYPE: &str = "application/mbms-register-response+xml";
    pub const DEREGISTER_TYPE: &str = "application/mbms-deregister+xml";
    pub const MSK_REQUEST_TYPE: &str = "application/mbms-msk+xml";
    pub const MSK_RESPONSE_TYPE: &str = "application/mbms-msk-response+xml";
    /// XML namespace of the bodies (project namespace: the 3GPP schema was
    /// not available to check against).
    pub const XML_NAMESPACE: &str = "urn:mbms-gateway:key-management:2026";
    /// UDP port on which a UE receives MSK messages unless provisioned
    /// otherwise: the IANA MIKEY port.
    pub const UE_MSK_PORT: u16 = super::MIKEY_UDP_PORT;
}
