//! Objects into download sessions.

use std::path::PathBuf;

/// Where an object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectOrigin {
    Watch,
    Push,
}

/// A complete object ready to be protected and sent.
#[derive(Debug, Clone)]
pub struct IngestedObject {
    pub content_location: String,
    pub content_type: Option<String>,
    pub path: PathBuf,
    pub origin: ObjectOrigin,
    pub spooled: bool,
}
