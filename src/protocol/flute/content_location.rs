//! The Content-Location of a FLUTE object (RFC 3926 §3.4.2: a URI; TS 26.346
//! §7.2.10: the name a UE stores the file under). The gateway only accepts
//! relative references made of plain path segments, because a receiver maps
//! them onto a directory tree: an absolute URI, a `..` or `.` segment, an empty
//! segment, a query or fragment, or a control character could make two objects
//! collide or escape the receiver's output folder.
//!
//! The canonical form is the one the FDT carries and receivers compare: each
//! segment percent-decoded, then re-encoded with the unreserved characters and
//! the sub-delimiters `!$&'()*+,;=` and `@` left literal and everything else as
//! `%XX` with upper-case hex (RFC 3986 §2.1, §6.2.2.1–2). `:` is always encoded
//! so the first segment can never read as a scheme (RFC 3986 §4.2).

use thiserror::Error;

/// Longest canonical Content-Location accepted, in bytes. Receivers keep it
/// as a file path; 1024 stays below common `PATH_MAX` values once prefixed by
/// an output folder.
pub const MAX_CONTENT_LOCATION_LEN: usize = 1024;

/// Why a Content-Location was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ContentLocationError {
    #[error("Content-Location is empty")]
    Empty,
    #[error("Content-Location of {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("Content-Location starts with `/`: only relative references are accepted")]
    Absolute,
    #[error("Content-Location has the scheme `{scheme}:`: only relative references are accepted")]
    Scheme { scheme: String },
    #[error("Content-Location contains `{found}` at byte {position}: no query or fragment allowed")]
    QueryOrFragment { found: char, position: usize },
    #[error("Content-Location has an empty path segment at byte {position}")]
    EmptySegment { position: usize },
    #[error("Content-Location has the dot segment `{segment}` at byte {position}")]
    DotSegment {
        segment: &'static str,
        position: usize,
    },
    #[error("Content-Location has the control character U+{code:04X} at byte {position}")]
    ControlCharacter { code: u32, position: usize },
    #[error("Content-Location has a backslash at byte {position} (ambiguous path separator)")]
    Backslash { position: usize },
    #[error("Content-Location has an encoded `/` (%2F) at byte {position}")]
    EncodedSlash { position: usize },
    #[error("Content-Location has a malformed percent-escape at byte {position}")]
    BadPercentEncoding { position: usize },
    #[error("Content-Location segment at byte {position} does not decode to UTF-8")]
    NotUtf8 { position: usize },
}

/// Validates a relative URI reference (percent-escapes allowed, as in an HTTP
/// request path or a `Content-Location` header) and returns its canonical form.
pub fn canonical_content_location(reference: &str) -> Result<String, ContentLocationError> {
    if reference.is_empty() {
        return Err(ContentLocationError::Empty);
    }
    if reference.starts_with('/') {
        return Err(ContentLocationError::Absolute);
    }
    if let Some((position, found)) = reference
        .char_indices()
        .find(|(_, c)| matches!(c, '?' | '#'))
    {
        return Err(ContentLocationError::QueryOrFragment { found, position });
    }
    if let Some(scheme) = scheme_of(reference) {
        return Err(ContentLocationError::Scheme {
            scheme: scheme.to_owned(),
        });
    }
    let mut canonical = String::with_capacity(reference.len());
    let mut position = 0;
    for raw in reference.split('/') {
        let segment = percent_decode(raw, position)?;
        let segment =
            String::from_utf8(segment).map_err(|_| ContentLocationError::NotUtf8 { position })?;
        if segment.contains('/') {
            return Err(ContentLocationError::EncodedSlash { position });
        }
        push_segment(&mut canonical, &segment, position)?;
        position += raw.len() + 1;
    }
    check_length(canonical)
}

/// Builds the canonical Content-Location from plain (not percent-encoded)
/// path segments, such as the components of a file's path below a watch
/// folder.
pub fn content_location_from_segments<'s>(
    segments: impl IntoIterator<Item = &'s str>,
) -> Result<String, ContentLocationError> {
    let mut canonical = String::new();
    let mut position = 0;
    for segment in segments {
        if segment.contains('/') {
            return Err(ContentLocationError::EncodedSlash { position });
        }
        push_segment(&mut canonical, segment, position)?;
        position += segment.len() + 1;
    }
    if canonical.is_empty() {
        return Err(ContentLocationError::Empty);
    }
    check_length(canonical)
}

/// The path segments of a canonical Content-Location, decoded (for a receiver
/// that writes the object under an output folder).
pub fn decoded_segments(canonical: &str) -> Result<Vec<String>, ContentLocationError> {
    let canonical = canonical_content_location(canonical)?;
    let mut position = 0;
    canonical
        .split('/')
        .map(|raw| {
            let at = position;
            position += raw.len() + 1;
            String::from_utf8(percent_decode(raw, at)?)
                .map_err(|_| ContentLocationError::NotUtf8 { position: at })
        })
        .collect()
}

fn check_length(canonical: String) -> Result<String, ContentLocationError> {
    if canonical.len() > MAX_CONTENT_LOCATION_LEN {
        return Err(ContentLocationError::TooLong {
            len: canonical.len(),
            max: MAX_CONTENT_LOCATION_LEN,
        });
    }
    Ok(canonical)
}

/// `scheme ":"` at the start (RFC 3986 §3.1: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )),
/// before any `/`.
fn scheme_of(reference: &str) -> Option<&str> {
    let first = reference.split('/').next()?;
    let (scheme, _) = first.split_once(':')?;
    let mut chars = scheme.chars();
    let starts_alpha = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    (starts_alpha && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
        .then_some(scheme)
}

/// Checks one decoded segment starting at `position` of the input and appends
/// it, encoded, to `out` (with a `/` before every segment but the first).
fn push_segment(
    out: &mut String,
    segment: &str,
    position: usize,
) -> Result<(), ContentLocationError> {
    match segment {
        "" => return Err(ContentLocationError::EmptySegment { position }),
        "." => {
            return Err(ContentLocationError::DotSegment {
                segment: ".",
                position,
            });
        }
        ".." => {
            return Err(ContentLocationError::DotSegment {
                segment: "..",
                position,
            });
        }
        _ => {}
    }
    if let Some((offset, control)) = segment.char_indices().find(|(_, c)| c.is_control()) {
        return Err(ContentLocationError::ControlCharacter {
            code: u32::from(control),
            position: position + offset,
        });
    }
    if let Some(offset) = segment.find('\\') {
        return Err(ContentLocationError::Backslash {
            position: position + offset,
        });
    }
    if !out.is_empty() {
        out.push('/');
    }
    for byte in segment.bytes() {
        if is_literal(byte) {
            out.push(char::from(byte));
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
    }
    Ok(())
}

/// Unreserved characters, the sub-delimiters and `@` (RFC 3986 §3.3 pchar,
/// minus `:`).
fn is_literal(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'@'
        )
}

/// Decodes `%XX` escapes of one segment that starts at `position`.
fn percent_decode(raw: &str, position: usize) -> Result<Vec<u8>, ContentLocationError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let high = bytes.get(i + 1).and_then(|b| hex_value(*b));
            let low = bytes.get(i + 2).and_then(|b| hex_value(*b));
            let (Some(high), Some(low)) = (high, low) else {
                return Err(ContentLocationError::BadPercentEncoding {
                    position: position + i,
                });
            };
            out.push(high << 4 | low);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_value(byte: u8) -> Option<u8> {
    char::from(byte)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_relative_paths_are_kept() {
        for ok in [
            "seg.m4s",
            "live/seg-00042.m4s",
            "a/b/c/manifest.mpd",
            "v1_(x)+y=z@w~!$&',;*.ts",
        ] {
            assert_eq!(canonical_content_location(ok).as_deref(), Ok(ok));
        }
    }

    #[test]
    fn escapes_are_normalised() {
        assert_eq!(
            canonical_content_location("live%20hd/seg%2d1.m4s").as_deref(),
            Ok("live%20hd/seg-1.m4s")
        );
        assert_eq!(
            canonical_content_location("caf%c3%a9/x").as_deref(),
            Ok("caf%C3%A9/x")
        );
        assert_eq!(
            canonical_content_location("café/a b.mp4").as_deref(),
            Ok("caf%C3%A9/a%20b.mp4")
        );
        assert_eq!(
            canonical_content_location("dir/a:b").as_deref(),
            Ok("dir/a%3Ab")
        );
        assert_eq!(
            canonical_content_location("100%25.ts").as_deref(),
            Ok("100%25.ts")
        );
    }

    #[test]
    fn each_rejection_names_its_reason() {
        use ContentLocationError as E;
        let cases: &[(&str, E)] = &[
            ("", E::Empty),
            ("/abs/x.mp4", E::Absolute),
            (
                "http://h/x",
                E::Scheme {
                    scheme: "http".into(),
                },
            ),
            (
                "urn:x",
                E::Scheme {
                    scheme: "urn".into(),
                },
            ),
            (
                "a?b",
                E::QueryOrFragment {
                    found: '?',
                    position: 1,
                },
            ),
            (
                "a#b",
                E::QueryOrFragment {
                    found: '#',
                    position: 1,
                },
            ),
            ("a//b", E::EmptySegment { position: 2 }),
            ("a/", E::EmptySegment { position: 2 }),
            (
                "a/../b",
                E::DotSegment {
                    segment: "..",
                    position: 2,
                },
            ),
            (
                "%2e%2E/b",
                E::DotSegment {
                    segment: "..",
                    position: 0,
                },
            ),
            (
                "./b",
                E::DotSegment {
                    segment: ".",
                    position: 0,
                },
            ),
            (
                "a/b\u{1}",
                E::ControlCharacter {
                    code: 1,
                    position: 3,
                },
            ),
            (
                "a/%0a",
                E::ControlCharacter {
                    code: 0x0a,
                    position: 2,
                },
            ),
            ("a\\b", E::Backslash { position: 1 }),
            ("a/b%2Fc", E::EncodedSlash { position: 2 }),
            ("a/b%zz", E::BadPercentEncoding { position: 3 }),
            ("a/b%4", E::BadPercentEncoding { position: 3 }),
            ("x/%ff", E::NotUtf8 { position: 2 }),
        ];
        for (input, expected) in cases {
            assert_eq!(
                canonical_content_location(input).as_ref(),
                Err(expected),
                "{input:?}"
            );
            assert!(!expected.to_string().is_empty());
        }
    }

    #[test]
    fn length_limit_applies_to_the_canonical_form() {
        let fits = "a".repeat(MAX_CONTENT_LOCATION_LEN);
        assert!(canonical_content_location(&fits).is_ok());
        // 342 spaces encode to 1026 bytes.
        let grows = " ".repeat(342);
        assert_eq!(
            canonical_content_location(&grows),
            Err(ContentLocationError::TooLong {
                len: 1026,
                max: MAX_CONTENT_LOCATION_LEN
            })
        );
    }

    #[test]
    fn segments_are_encoded_and_checked() {
        assert_eq!(
            content_location_from_segments(["live", "seg 1.m4s"]).as_deref(),
            Ok("live/seg%201.m4s")
        );
        assert_eq!(
            content_location_from_segments(["a", ".."]),
            Err(ContentLocationError::DotSegment {
                segment: "..",
                position: 2
            })
        );
        assert_eq!(
            content_location_from_segments([]),
            Err(ContentLocationError::Empty)
        );
        assert_eq!(
            decoded_segments("caf%C3%A9/a%20b.mp4"),
            Ok(vec!["café".to_owned(), "a b.mp4".to_owned()])
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_canonical_is_a_fixed_point(input in "\\PC{0,64}|[a-z%/.:?#0-9A-F\\\\]{0,32}") {
            if let Ok(canonical) = canonical_content_location(&input) {
                prop_assert_eq!(canonical_content_location(&canonical), Ok(canonical.clone()));
                prop_assert!(canonical.len() <= MAX_CONTENT_LOCATION_LEN);
                prop_assert!(!canonical.starts_with('/'));
                prop_assert!(canonical.bytes().all(|b| b.is_ascii_graphic()));
            }
        }

        #[test]
        fn plain_segments_round_trip(segments in proptest::collection::vec("[^/\\\\\\p{Cc}]{1,12}", 1..5)) {
            prop_assume!(segments.iter().all(|s| s != "." && s != ".."));
            let canonical = content_location_from_segments(segments.iter().map(String::as_str)).unwrap();
            prop_assert_eq!(decoded_segments(&canonical).unwrap(), segments);
        }
    }
}
