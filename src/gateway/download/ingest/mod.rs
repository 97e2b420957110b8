//! Ingest for download sessions: complete objects from a watch folder
//! ([`watch`]) or from HTTP push ([`push`]) become [`IngestedObject`]s on a
//! session's bounded [`IngestQueue`], in the order they completed. Protection
//! and sending read them from there.

pub mod content_type;
pub mod name_patterns;
pub mod push;
pub mod watch;

pub use crate::runtime::metrics::IngestOrigin as ObjectOrigin;
pub use name_patterns::NamePatterns;
pub use push::{
    PushConfig, PushConfigError, PushResource, PushServer, PushSessions, is_media_type, serve_push,
};
pub use watch::{WatchConfig, WatchFolder, spawn_watch};

use std::path::PathBuf;
use tokio::sync::mpsc;

/// Default size limit of one object (watch folder and push): large enough for
/// long media files, small enough that a runaway upload cannot fill a disk.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 1 << 30;

/// A complete object ready to be protected and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestedObject {
    /// Canonical relative URI reference (e.g. `live/seg-00042.m4s`), see
    /// [`crate::protocol::flute::content_location`].
    pub content_location: String,
    /// From the push request, or guessed from the file extension for the
    /// watch folder ([`content_type::guess`]).
    pub content_type: Option<String>,
    /// A complete file that will not change; read it streaming.
    pub path: PathBuf,
    pub origin: ObjectOrigin,
    /// True when the gateway owns the file (push spool) and deletes it once
    /// sent; false for an operator's file, which is never deleted.
    pub spooled: bool,
}

impl IngestedObject {
    /// Called once the object is no longer needed: removes a spooled file,
    /// leaves an operator's file alone.
    pub fn release(&self) -> std::io::Result<()> {
        if self.spooled {
            std::fs::remove_file(&self.path)
        } else {
            Ok(())
        }
    }
}

/// The sending side of a download session's object queue (bounded: ingest
/// waits for capacity instead of buffering without limit).
pub type IngestQueue = mpsc::Sender<IngestedObject>;

/// A new bounded queue holding at most `depth` objects.
pub fn ingest_queue(depth: usize) -> (IngestQueue, mpsc::Receiver<IngestedObject>) {
    mpsc::channel(depth)
}
