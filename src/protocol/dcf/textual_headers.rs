//! The ohdr TextualHeaders field: a run of `Name:Value\0` entries (Bento4
//! `AP4_TrackPropertyMap::GetTextualHeaders`). The name ends at the first colon;
//! the value may contain colons but never NUL.

use thiserror::Error;

/// Why a textual header cannot be written or read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TextualHeaderError {
    #[error("textual header {index}: empty name")]
    EmptyName { index: usize },
    #[error("textual header {index}: name contains ':' or NUL")]
    BadName { index: usize },
    #[error("textual header {index}: value contains NUL")]
    BadValue { index: usize },
    #[error("textual header {index}: no ':' between name and value")]
    MissingColon { index: usize },
    #[error("textual header {index}: not UTF-8")]
    NotUtf8 { index: usize },
    #[error("textual headers: last entry not terminated by NUL")]
    Unterminated,
    #[error("textual header {name:?} appears more than once")]
    Duplicate { name: String },
}

/// Checks the entries a writer is asked to emit: names non-empty without ':'
/// or NUL, values without NUL, names unique (case-insensitively, as Bento4's
/// packager refuses a repeated header).
pub(super) fn validate(headers: &[(String, String)]) -> Result<(), TextualHeaderError> {
    for (index, (name, value)) in headers.iter().enumerate() {
        if name.is_empty() {
            return Err(TextualHeaderError::EmptyName { index });
        }
        if name.bytes().any(|b| b == b':' || b == 0) {
            return Err(TextualHeaderError::BadName { index });
        }
        if value.bytes().any(|b| b == 0) {
            return Err(TextualHeaderError::BadValue { index });
        }
        if headers[..index]
            .iter()
            .any(|(earlier, _)| earlier.eq_ignore_ascii_case(name))
        {
            return Err(TextualHeaderError::Duplicate { name: name.clone() });
        }
    }
    Ok(())
}

/// Exact encoded length of validated entries.
pub(super) fn encoded_len(headers: &[(String, String)]) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.len() + 1 + value.len() + 1)
        .sum()
}

pub(super) fn encode(headers: &[(String, String)], out: &mut Vec<u8>) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
}

/// Splits the raw field into (name, value) pairs, in order.
pub(super) fn parse(bytes: &[u8]) -> Result<Vec<(String, String)>, TextualHeaderError> {
    let Some(body) = bytes.strip_suffix(&[0]) else {
        return if bytes.is_empty() {
            Ok(Vec::new())
        } else {
            Err(TextualHeaderError::Unterminated)
        };
    };
    body.split(|&b| b == 0)
        .enumerate()
        .map(|(index, entry)| {
            let colon = entry
                .iter()
                .position(|&b| b == b':')
                .ok_or(TextualHeaderError::MissingColon { index })?;
            if colon == 0 {
                return Err(TextualHeaderError::EmptyName { index });
            }
            let text = |part: &[u8]| {
                String::from_utf8(part.to_vec()).map_err(|_| TextualHeaderError::NotUtf8 { index })
            };
            Ok((text(&entry[..colon])?, text(&entry[colon + 1..])?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn wire_form() {
        let headers = pairs(&[("MBMS-Key-ID", "00f110"), ("Silent", "on-demand:x")]);
        validate(&headers).unwrap();
        let mut out = Vec::new();
        encode(&headers, &mut out);
        assert_eq!(out, b"MBMS-Key-ID:00f110\0Silent:on-demand:x\0");
        assert_eq!(out.len(), encoded_len(&headers));
        assert_eq!(parse(&out).unwrap(), headers);
        assert_eq!(parse(b"").unwrap(), vec![]);
        assert_eq!(parse(b"A:\0").unwrap(), pairs(&[("A", "")]));
    }

    #[test]
    fn malformed_fields() {
        assert_eq!(parse(b"A:b"), Err(TextualHeaderError::Unterminated));
        assert_eq!(
            parse(b"A:b\0nocolon\0"),
            Err(TextualHeaderError::MissingColon { index: 1 })
        );
        assert_eq!(
            parse(b":v\0"),
            Err(TextualHeaderError::EmptyName { index: 0 })
        );
        assert_eq!(
            parse(b"\0"),
            Err(TextualHeaderError::MissingColon { index: 0 })
        );
        assert_eq!(
            parse(b"A:\xff\0"),
            Err(TextualHeaderError::NotUtf8 { index: 0 })
        );
    }

    #[test]
    fn writer_side_rules() {
        assert_eq!(
            validate(&pairs(&[("", "v")])),
            Err(TextualHeaderError::EmptyName { index: 0 })
        );
        assert_eq!(
            validate(&pairs(&[("a:b", "v")])),
            Err(TextualHeaderError::BadName { index: 0 })
        );
        assert_eq!(
            validate(&pairs(&[("a", "v\0")])),
            Err(TextualHeaderError::BadValue { index: 0 })
        );
        assert_eq!(
            validate(&pairs(&[("Key", "1"), ("KEY", "2")])),
            Err(TextualHeaderError::Duplicate { name: "KEY".into() })
        );
    }

    proptest! {
        #[test]
        fn round_trip(headers in proptest::collection::vec(("[A-Za-z-]{1,12}", "[^\0]{0,20}"), 0..6)) {
            let mut unique: Vec<(String, String)> = Vec::new();
            for (n, v) in headers {
                if !unique.iter().any(|(m, _)| m.eq_ignore_ascii_case(&n)) {
                    unique.push((n, v));
                }
            }
            validate(&unique).unwrap();
            let mut out = Vec::new();
            encode(&unique, &mut out);
            prop_assert_eq!(parse(&out).unwrap(), unique);
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&bytes);
        }
    }
}
