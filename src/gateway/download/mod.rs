//! Download sessions: objects in (watch folder, HTTP push, `send`), each
//! protected as an OMA DCF under the session's MTK and sent over FLUTE with
//! its MIKEY MTK message in the same carousel.

pub mod config;
pub mod ingest;
pub mod protect;
pub mod read_ahead;
pub mod send;
pub mod sender;
pub mod session;

pub use config::DownloadSession;
pub use session::{DownloadHandle, DownloadStats, start};
