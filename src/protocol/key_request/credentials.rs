//! What a UE and the BM-SC share after GBA (TS 33.246 §6.1, §6.2.1; TS
//! 33.220): the B-TID as the Digest username, the MRK as the Digest password,
//! and the MUK that protects MSK messages, named by IDi ‖ IDr. GBA itself is
//! out of scope: the Ks_NAF is provisioned. The derivations are the
//! `profile::key_management` choices.

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::protocol::keys::{Muk, Secret};
use crate::protocol::mikey::{Id, MukId};
use crate::protocol::profile::key_management as profile;

/// Ks_(ext)_NAF: 256 bits (TS 33.220 §4.5.2).
pub type KsNaf = Secret<32>;

/// One UE's bootstrapped security association with one BM-SC (NAF).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UeSecurityAssociation {
    /// Bootstrapping Transaction Identifier: the Digest username and MIKEY IDr.
    pub b_tid: String,
    /// The subscriber's IMS private identity, for the Membership function.
    pub impi: String,
    pub ks_naf: KsNaf,
}

// Both derivations are the identity under the current profile; a profile
// change must come with a new derivation here.
const _: () = assert!(profile::DIGEST_PASSWORD_IS_BASE64_KS_NAF && profile::MUK_IS_KS_NAF);

impl UeSecurityAssociation {
    /// The HTTP Digest password (MRK), zeroized on drop.
    pub fn digest_password(&self) -> Zeroizing<String> {
        Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(self.ks_naf.expose()))
    }

    /// The MUK: the pre-shared key of this UE's MSK messages.
    pub fn muk(&self) -> Muk {
        Muk::new(*self.ks_naf.expose())
    }

    /// The MIKEY identities of this UE's MSK messages from the BM-SC
    /// `naf_id`: IDi = NAF-Id, IDr = B-TID. `None` if one is over 65535 bytes.
    pub fn muk_id<'a>(&'a self, naf_id: &'a str) -> Option<MukId<'a>> {
        Some(MukId {
            idi: Id::new(profile::IDI_TYPE, naf_id.as_bytes())?,
            idr: Id::new(profile::IDR_TYPE, self.b_tid.as_bytes())?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_muk_and_muk_id() {
        let sa = UeSecurityAssociation {
            b_tid: "cmFuZA==@bsf.example".into(),
            impi: "001010000000001@ims.example".into(),
            ks_naf: KsNaf::new(core::array::from_fn(|i| i as u8)),
        };
        assert_eq!(
            sa.digest_password().as_str(),
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="
        );
        assert_eq!(sa.muk().expose(), sa.ks_naf.expose());
        let id = sa.muk_id("bmsc.example").unwrap();
        assert_eq!(id.to_bytes(), b"bmsc.examplecmFuZA==@bsf.example");
        assert_eq!(id.idi.id_type(), profile::IDI_TYPE);
        assert_eq!(id.idr.id_type(), profile::IDR_TYPE);
        assert!(!format!("{sa:?}").contains("AAEC"));
    }
}
