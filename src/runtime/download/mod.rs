//! Download delivery (FLUTE file objects): how objects enter a session.

pub mod ingest;
