//! The watch folder of a download session: every file that is complete in the
//! folder tree becomes an object, named by its path relative to the folder.
//!
//! "Complete" means the kernel reported it closed after writing
//! (`IN_CLOSE_WRITE`) or renamed into place (`IN_MOVED_TO`), so a packager
//! that writes a DASH/HLS segment and then its manifest puts them on air in
//! that order, one object per event. Temporary names ([`NamePatterns`]) are
//! never sent; a file renamed from one into its final name is.
//!
//! The `inotify` crate is used directly rather than the portable `notify`
//! crate: the guarantee rests on exactly those two Linux events, and on adding
//! the watch of a new subdirectory and then scanning it ourselves, which
//! `notify`'s event model neither exposes precisely nor lets us order.

use super::name_patterns::{DEFAULT_TEMPORARY_PATTERNS, NamePatterns};
use super::{DEFAULT_MAX_OBJECT_BYTES, IngestQueue, IngestedObject, ObjectOrigin, content_type};
use crate::protocol::flute::content_location::content_location_from_segments;
use crate::runtime::metrics::{IngestMetrics, IngestRejectReason};
use anyhow::Context;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use serde::Deserialize;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;

/// `[download.watch]` of a download session.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    /// The folder watched, with every subdirectory (also those created later).
    pub folder: PathBuf,
    /// File and directory names never sent: shell patterns (`*`, `?`) over
    /// one name. Default: dotfiles, `*.tmp`, `*.part`, `*~`, `*.swp`.
    #[serde(default = "default_ignore")]
    pub ignore: Vec<String>,
    /// Also send the files already in the folder at start (default: only
    /// files completed after start).
    #[serde(default)]
    pub send_existing: bool,
    /// Larger files are refused (metric `too_large`).
    #[serde(default = "default_max_object_bytes")]
    pub max_object_bytes: u64,
}

fn default_ignore() -> Vec<String> {
    DEFAULT_TEMPORARY_PATTERNS
        .iter()
        .map(|p| (*p).to_owned())
        .collect()
}

fn default_max_object_bytes() -> u64 {
    DEFAULT_MAX_OBJECT_BYTES
}

impl Default for WatchConfig {
    /// Every default, with an empty `folder` to be filled in.
    fn default() -> Self {
        Self {
            folder: PathBuf::new(),
            ignore: default_ignore(),
            send_existing: false,
            max_object_bytes: default_max_object_bytes(),
        }
    }
}

/// A running watch folder.
#[derive(Debug)]
pub struct WatchFolder {
    task: JoinHandle<()>,
}

impl WatchFolder {
    /// Waits until the watcher stopped: `shutdown` completed, the queue was
    /// closed, or the watched folder itself was removed.
    pub async fn join(self) -> anyhow::Result<()> {
        self.task.await.context("watch folder task")
    }
}

/// Watches `config.folder` for session `session` and sends each completed
/// file to `queue` until `shutdown` completes. Every watch of the existing
/// tree is in place when this returns, so a file completed afterwards is
/// never missed. Must be called within a Tokio runtime.
pub fn spawn_watch(
    session: &str,
    config: &WatchConfig,
    queue: IngestQueue,
    metrics: IngestMetrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<WatchFolder> {
    let root = config
        .folder
        .canonicalize()
        .with_context(|| format!("watch folder {}", config.folder.display()))?;
    anyhow::ensure!(
        root.is_dir(),
        "watch folder {} is not a directory",
        root.display()
    );
    let inotify = Inotify::init().context("inotify_init")?;
    let mut watcher = Watcher {
        session: session.to_owned(),
        root,
        ignore: NamePatterns::new(&config.ignore),
        max_object_bytes: config.max_object_bytes,
        watches: inotify.watches(),
        directories: HashMap::new(),
        found_by_scan: HashMap::new(),
        queue,
        metrics,
    };
    let existing = watcher.watch_tree(PathBuf::new())?;
    let events = inotify
        .into_event_stream(vec![0u8; EVENT_BUFFER_BYTES])
        .context("inotify event stream")?;
    tracing::info!(session, folder = %watcher.root.display(), "watch folder started");
    let send_existing = config.send_existing;
    let task = tokio::spawn(async move {
        if send_existing {
            for relative in existing {
                if watcher.pick_up(&relative, Discovery::Scan).await == Flow::Stop {
                    return;
                }
            }
        }
        watcher.run(events, shutdown).await;
    });
    Ok(WatchFolder { task })
}

/// Room for many events per read (each is 16 bytes plus the name).
const EVENT_BUFFER_BYTES: usize = 64 * 1024;

/// Events on the watched directories: completion of a file, and the
/// appearance, departure and removal of a directory.
fn directory_mask() -> WatchMask {
    WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::CREATE
        | WatchMask::DELETE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// How a file came to the watcher's attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Discovery {
    /// A completion event: the file is complete.
    Event,
    /// Found by listing a directory: complete unless someone still has it
    /// open for writing, in which case its `IN_CLOSE_WRITE` follows.
    Scan,
}

/// Tells a file seen by a scan from a later version at the same path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    len: u64,
    modified_ns: i128,
}

impl FileIdentity {
    fn of(metadata: &Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }
}

struct Watcher {
    session: String,
    root: PathBuf,
    ignore: NamePatterns,
    max_object_bytes: u64,
    watches: Watches,
    /// Each watched directory, relative to `root` (empty for `root`).
    directories: HashMap<WatchDescriptor, PathBuf>,
    /// Files a scan sent, so the completion event that may already be queued
    /// for the same version does not send it again. An entry stays until such
    /// an event or the directory leaving the tree; only files completed
    /// before their directory's watch existed get one, so it stays small.
    found_by_scan: HashMap<PathBuf, FileIdentity>,
    queue: IngestQueue,
    metrics: IngestMetrics,
}

impl Watcher {
    async fn run(
        mut self,
        mut events: inotify::EventStream<Vec<u8>>,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let event = tokio::select! {
                () = &mut shutdown => break,
                event = events.next() => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(e)) => {
                    tracing::error!(session = self.session, error = %e, "watch folder: reading inotify events failed");
                    break;
                }
                None => break,
            };
            if self
                .handle(event.wd, event.mask, event.name.as_deref())
                .await
                == Flow::Stop
            {
                break;
            }
        }
        tracing::info!(session = self.session, "watch folder stopped");
    }

    async fn handle(&mut self, wd: WatchDescriptor, mask: EventMask, name: Option<&OsStr>) -> Flow {
        if mask.contains(EventMask::Q_OVERFLOW) {
            tracing::error!(
                session = self.session,
                "watch folder: inotify queue overflowed, completed files may have been missed (raise fs.inotify.max_queued_events)"
            );
            return Flow::Continue;
        }
        if mask.contains(EventMask::IGNORED) {
            let gone = self.directories.remove(&wd);
            if gone.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
                tracing::error!(session = self.session, folder = %self.root.display(), "watch folder removed");
                return Flow::Stop;
            }
            return Flow::Continue;
        }
        let (Some(parent), Some(name)) = (self.directories.get(&wd), name) else {
            return Flow::Continue;
        };
        let relative = parent.join(name);
        if self.ignored(name) {
            return Flow::Continue;
        }
        if mask.contains(EventMask::ISDIR) {
            if mask.intersects(EventMask::CREATE | EventMask::MOVED_TO) {
                return self.watch_new_directory(relative).await;
            }
            if mask.contains(EventMask::MOVED_FROM) {
                self.unwatch_tree(&relative);
            }
            return Flow::Continue;
        }
        if mask.intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO) {
            return self.pick_up(&relative, Discovery::Event).await;
        }
        Flow::Continue
    }

    fn ignored(&self, name: &OsStr) -> bool {
        name.to_str().is_some_and(|n| self.ignore.matches(n))
    }

    /// A directory appeared: watch it (and its subdirectories), then send the
    /// files completed in it before its watch existed.
    async fn watch_new_directory(&mut self, relative: PathBuf) -> Flow {
        let files = match self.watch_tree(relative.clone()) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(session = self.session, directory = %relative.display(), error = %format!("{e:#}"), "watch folder: cannot watch new directory");
                return Flow::Continue;
            }
        };
        for file in files {
            if self.pick_up(&file, Discovery::Scan).await == Flow::Stop {
                return Flow::Stop;
            }
        }
        Flow::Continue
    }

    /// Adds a watch on `relative` and every directory below it (watch first,
    /// then list, so nothing completed in between is missed) and returns the
    /// files found, in name order.
    fn watch_tree(&mut self, relative: PathBuf) -> anyhow::Result<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut pending = vec![relative];
        while let Some(directory) = pending.pop() {
            let absolute = self.root.join(&directory);
            let wd = self
                .watches
                .add(&absolute, directory_mask())
                .with_context(|| format!("inotify watch on {}", absolute.display()))?;
            self.directories.insert(wd, directory.clone());
            let mut entries: Vec<_> = std::fs::read_dir(&absolute)
                .with_context(|| format!("listing {}", absolute.display()))?
                .filter_map(Result::ok)
                .collect();
            entries.sort_by_key(|e| e.file_name());
            let mut subdirectories = Vec::new();
            for entry in entries {
                if self.ignored(&entry.file_name()) {
                    continue;
                }
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                let path = directory.join(entry.file_name());
                if kind.is_dir() {
                    subdirectories.push(path);
                } else if kind.is_file() {
                    files.push(path);
                }
            }
            // Popped in name order.
            pending.extend(subdirectories.into_iter().rev());
        }
        Ok(files)
    }

    /// A directory left the tree: its watches would report wrong paths.
    fn unwatch_tree(&mut self, relative: &Path) {
        let below: Vec<WatchDescriptor> = self
            .directories
            .iter()
            .filter(|(_, d)| d.starts_with(relative))
            .map(|(wd, _)| wd.clone())
            .collect();
        for wd in below {
            self.directories.remove(&wd);
            // Fails harmlessly if the kernel already dropped it.
            let _ = self.watches.remove(wd);
        }
        self.found_by_scan
            .retain(|path, _| !path.starts_with(relative));
    }

    /// Sends the file at `relative` once, unless it turns out not to be a
    /// complete regular file within the limits.
    async fn pick_up(&mut self, relative: &Path, discovery: Discovery) -> Flow {
        let path = self.root.join(relative);
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(e) => {
                tracing::warn!(session = self.session, file = %path.display(), error = %e, "watch folder: completed file cannot be read");
                self.metrics.rejected(IngestRejectReason::Unreadable);
                return Flow::Continue;
            }
        };
        if !metadata.is_file() {
            return Flow::Continue;
        }
        let identity = FileIdentity::of(&metadata);
        match discovery {
            Discovery::Event => {
                if self.found_by_scan.remove(relative) == Some(identity) {
                    return Flow::Continue;
                }
            }
            // Listed twice (a directory reported both by its parent's listing
            // and by its own creation event): already sent.
            Discovery::Scan if self.found_by_scan.get(relative) == Some(&identity) => {
                return Flow::Continue;
            }
            Discovery::Scan => match open_for_writing(&path) {
                Ok(false) => {
                    self.found_by_scan.insert(relative.to_owned(), identity);
                }
                Ok(true) => return Flow::Continue,
                Err(e) => {
                    tracing::warn!(session = self.session, file = %path.display(), error = %e, "watch folder: cannot tell whether a file found by listing is complete; waiting for its close event");
                    return Flow::Continue;
                }
            },
        }
        if metadata.len() > self.max_object_bytes {
            tracing::warn!(session = self.session, file = %path.display(), bytes = metadata.len(), limit = self.max_object_bytes, "watch folder: file over the size limit not sent");
            self.metrics.rejected(IngestRejectReason::TooLarge);
            return Flow::Continue;
        }
        let Some(content_location) = self.content_location(relative) else {
            self.metrics
                .rejected(IngestRejectReason::BadContentLocation);
            return Flow::Continue;
        };
        let content_type = relative
            .file_name()
            .and_then(OsStr::to_str)
            .and_then(content_type::guess)
            .map(str::to_owned);
        let object = IngestedObject {
            content_location,
            content_type,
            path,
            origin: ObjectOrigin::Watch,
            spooled: false,
        };
        if self.queue.send(object).await.is_err() {
            tracing::info!(session = self.session, "watch folder: session queue closed");
            self.metrics.rejected(IngestRejectReason::QueueClosed);
            return Flow::Stop;
        }
        self.metrics.ingested(ObjectOrigin::Watch, metadata.len());
        Flow::Continue
    }

    fn content_location(&self, relative: &Path) -> Option<String> {
        let segments: Option<Vec<&str>> = relative
            .components()
            .map(|c| match c {
                Component::Normal(name) => name.to_str(),
                _ => None,
            })
            .collect();
        let Some(segments) = segments else {
            tracing::warn!(session = self.session, file = %relative.display(), "watch folder: file name is not UTF-8; not sent");
            return None;
        };
        content_location_from_segments(segments)
            .inspect_err(|e| {
                tracing::warn!(session = self.session, file = %relative.display(), error = %e, "watch folder: file name is not a valid Content-Location; not sent");
            })
            .ok()
    }
}

/// Whether any process has `path` open for writing: a read lease
/// (`F_SETLEASE`, fcntl(2)) is refused with `EAGAIN` exactly then. Needs the
/// caller to own the file (or `CAP_LEASE`); otherwise the error is returned.
fn open_for_writing(path: &Path) -> io::Result<bool> {
    let file = std::fs::File::open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor owned by `file`, alive for both calls.
    let taken = unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_RDLCK) };
    if taken == 0 {
        // SAFETY: as above.
        unsafe { libc::fcntl(fd, libc::F_SETLEASE, libc::F_UNLCK) };
        return Ok(false);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EAGAIN) {
        Ok(true)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn parse(text: &str) -> Result<WatchConfig, toml::de::Error> {
        toml::from_str(text)
    }

    #[test]
    fn config_defaults_and_unknown_keys() {
        let config = parse("folder = \"/srv/live\"").unwrap();
        assert_eq!(
            config,
            WatchConfig {
                folder: "/srv/live".into(),
                ..WatchConfig::default()
            }
        );
        assert_eq!(config.ignore, [".*", "*.tmp", "*.part", "*~", "*.swp"]);
        let config = parse("folder = \"x\"\nignore = [\"*.wip\"]\nsend_existing = true").unwrap();
        assert_eq!(config.ignore, ["*.wip"]);
        assert!(config.send_existing);
        assert!(parse("folder = \"x\"\nrecursive = true").is_err());
    }

    #[test]
    fn a_file_open_for_writing_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg.m4s");
        let mut writer = std::fs::File::create(&path).unwrap();
        writer.write_all(b"partial").unwrap();
        assert!(open_for_writing(&path).unwrap());
        drop(writer);
        assert!(!open_for_writing(&path).unwrap());
    }
}
