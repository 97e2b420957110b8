//! The Content-Type of a watch-folder file, from its extension: the media
//! types a DASH or HLS packager writes, and a few common file types. A UE
//! picks the handler by this type (TS 26.346 §7.2.10), so an unknown extension
//! gets none rather than a wrong one.

/// Lower-case extension → media type.
const TYPES: &[(&str, &str)] = &[
    // DASH (ISO/IEC 23009-1 Annex C; RFC 8081 for segments).
    ("mpd", "application/dash+xml"),
    ("m4s", "video/iso.segment"),
    ("mp4", "video/mp4"),
    ("m4v", "video/mp4"),
    ("m4a", "audio/mp4"),
    ("cmfv", "video/mp4"),
    ("cmfa", "audio/mp4"),
    ("cmft", "application/mp4"),
    // HLS (RFC 8216 §4).
    ("m3u8", "application/vnd.apple.mpegurl"),
    ("ts", "video/mp2t"),
    ("aac", "audio/aac"),
    // Subtitles and metadata.
    ("vtt", "text/vtt"),
    ("ttml", "application/ttml+xml"),
    ("xml", "application/xml"),
    ("json", "application/json"),
    ("sdp", "application/sdp"),
    // Plain files.
    ("txt", "text/plain"),
    ("html", "text/html"),
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("png", "image/png"),
    ("mp3", "audio/mpeg"),
    ("pdf", "application/pdf"),
    ("zip", "application/zip"),
    ("bin", "application/octet-stream"),
];

/// The media type for `file_name`'s extension (case-insensitive), if known.
pub fn guess(file_name: &str) -> Option<&'static str> {
    let (_, extension) = file_name.rsplit_once('.')?;
    TYPES
        .iter()
        .find(|(known, _)| known.eq_ignore_ascii_case(extension))
        .map(|(_, media_type)| *media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_and_hls_files_get_their_types() {
        assert_eq!(guess("manifest.mpd"), Some("application/dash+xml"));
        assert_eq!(guess("seg-00042.M4S"), Some("video/iso.segment"));
        assert_eq!(guess("init.mp4"), Some("video/mp4"));
        assert_eq!(guess("index.m3u8"), Some("application/vnd.apple.mpegurl"));
        assert_eq!(guess("seg7.ts"), Some("video/mp2t"));
        assert_eq!(guess("archive.tar.zip"), Some("application/zip"));
    }

    #[test]
    fn unknown_or_missing_extensions_get_none() {
        assert_eq!(guess("README"), None);
        assert_eq!(guess("data.xyz"), None);
        assert_eq!(guess("trailing."), None);
    }

    #[test]
    fn table_keys_are_unique_lower_case() {
        for (i, (ext, media_type)) in TYPES.iter().enumerate() {
            assert_eq!(ext.to_ascii_lowercase(), *ext);
            assert!(media_type.contains('/'));
            assert!(
                TYPES[i + 1..].iter().all(|(other, _)| other != ext),
                "{ext}"
            );
        }
    }
}
