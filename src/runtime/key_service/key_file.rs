//! The MSK key file: a TOML list of MSKs with their validity, the MSK
//! source of a reference BM-SC (`keys.source = "file"`) and of a probe that
//! is given its MSKs instead of asking for them. Every entry passes the same
//! checks as an MSK received over gRPC; key bytes are wiped once read.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;
use zeroize::Zeroize;

use super::msk_set::MskRecord;
use super::proto;
use super::validate::{MskScope, key_domain_hex, msk_from_wire};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFileEntry {
    msk_id: u32,
    /// 32 hex digits.
    key: String,
    seq_l: u32,
    seq_u: u32,
    not_before: i64,
    not_after: i64,
}

impl Drop for KeyFileEntry {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    key_domain_id: String,
    #[serde(default)]
    msk: Vec<KeyFileEntry>,
}

/// Reads a key file:
///
/// ```toml
/// key_domain_id = "09f107"
/// [[msk]]
/// msk_id = 0x00010001          # Key Group 1, Key Number 1
/// key = "000102030405060708090a0b0c0d0e0f"
/// seq_l = 1
/// seq_u = 65535
/// not_before = 1767225600      # unix seconds
/// not_after = 1798761600
/// ```
///
/// Every entry passes the same checks as an MSK received over gRPC.
pub fn load_key_file(path: &Path, scope: &MskScope) -> anyhow::Result<Vec<MskRecord>> {
    let context = || format!("key file {}", path.display());
    let mut text = std::fs::read_to_string(path).with_context(context)?;
    let parsed = parse_key_file(&text, scope);
    text.zeroize();
    parsed.with_context(context)
}

/// [`load_key_file`] on the file's text.
pub fn parse_key_file(text: &str, scope: &MskScope) -> anyhow::Result<Vec<MskRecord>> {
    let file: KeyFile = toml::from_str(text)?;
    let expected = key_domain_hex(scope.key_domain_id);
    anyhow::ensure!(
        file.key_domain_id.eq_ignore_ascii_case(&expected),
        "key_domain_id {} is not the configured {expected}",
        file.key_domain_id
    );
    file.msk
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let key = hex::decode(&entry.key)
                .map_err(|e| anyhow::anyhow!("msk[{i}].key: not hex: {e}"))?;
            let wire = proto::Msk {
                key_domain_id: scope.key_domain_id.0.to_vec(),
                msk_id: entry.msk_id,
                key,
                seq_l: entry.seq_l,
                seq_u: entry.seq_u,
                not_before_unix: entry.not_before,
                not_after_unix: entry.not_after,
            };
            msk_from_wire(wire, scope).with_context(|| format!("msk[{i}]"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keys::{KeyDomainId, MskId};
    use std::collections::BTreeSet;

    fn scope() -> MskScope {
        MskScope {
            key_domain_id: KeyDomainId([0x09, 0xf1, 0x07]),
            key_groups: BTreeSet::from([1]),
        }
    }

    #[test]
    fn example_key_file_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/bmsc-keys.example.toml");
        let records = load_key_file(&path, &scope()).unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r.msk_id, MskId::new(1, 1));
        assert_eq!(
            r.key.expose(),
            &core::array::from_fn::<u8, 16, _>(|i| i as u8)
        );
        assert_eq!((r.validity.0.0, r.validity.1.0), (1, 0xFFFF));
        assert_eq!((r.not_before, r.not_after), (1_767_225_600, 1_798_761_600));
    }

    #[test]
    fn key_file_errors_name_the_entry_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let entry = |msk_id: &str, key: &str| {
            format!(
                "[[msk]]\nmsk_id = {msk_id}\nkey = \"{key}\"\nseq_l = 1\nseq_u = 9\nnot_before = 1\nnot_after = 2\n"
            )
        };
        let good = entry("0x00010001", &"ab".repeat(16));
        let check = |body: String| {
            std::fs::write(&path, format!("key_domain_id = \"09f107\"\n{body}")).unwrap();
            format!("{:#}", load_key_file(&path, &scope()).unwrap_err())
        };
        let err = check(format!("{good}{}", entry("0x00010002", &"ab".repeat(15))));
        assert!(
            err.contains("msk[1]: Msk.key of MSK 0x00010002: must be 16 bytes, got 15"),
            "{err}"
        );
        let err = check(entry("0x00020001", &"ab".repeat(16)));
        assert!(
            err.contains("msk[0]: Msk.msk_id 0x00020001: unknown Key Group 2"),
            "{err}"
        );
        let err = check(entry("0x00010001", "zz"));
        assert!(err.contains("msk[0].key: not hex"), "{err}");
        std::fs::write(&path, "key_domain_id = \"010203\"\n").unwrap();
        let err = format!("{:#}", load_key_file(&path, &scope()).unwrap_err());
        assert!(
            err.contains("key_domain_id 010203 is not the configured 09f107"),
            "{err}"
        );
    }
}
