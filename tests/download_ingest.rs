//! Download ingest end to end: a real watch folder (inotify on a tempdir) and
//! the HTTP push endpoint over real TCP on 127.0.0.1, each object checked as
//! it comes out of the session queue, counters checked in the Prometheus
//! exposition.
//!
//! The recorder is process-wide, so each test uses its own session names.

mod common;

use common::http::http;
use mbms_gateway::gateway::download::ingest::{
    IngestedObject, ObjectOrigin, PushConfig, PushServer, PushSessions, WatchConfig, ingest_queue,
    serve_push, spawn_watch,
};
use mbms_gateway::runtime::metrics::names::{self, MetricDef};
use mbms_gateway::runtime::metrics::{self, IngestMetrics};
use prometheus_parse::{Scrape, Value};
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

const TOKEN: &str = "push-token-0123456789abcdef";
/// Generous bound for an event to arrive; only a failure waits this long.
const ARRIVAL: Duration = Duration::from_secs(10);

fn counter(def: &MetricDef, labels: &[(&str, &str)]) -> f64 {
    let text = metrics::install().unwrap().render();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == def.name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Untyped(v) | Value::Gauge(v) => v,
            _ => panic!("{} is not a scalar", def.name),
        })
        .unwrap_or(0.0)
}

async fn next(queue: &mut mpsc::Receiver<IngestedObject>) -> IngestedObject {
    tokio::time::timeout(ARRIVAL, queue.recv())
        .await
        .expect("an object within 10 s")
        .expect("queue open")
}

// ---------------------------------------------------------------- watch folder

struct Watched {
    dir: tempfile::TempDir,
    queue: mpsc::Receiver<IngestedObject>,
    stop: oneshot::Sender<()>,
    watcher: mbms_gateway::gateway::download::ingest::WatchFolder,
}

fn start_watch(
    session: &str,
    configure: impl FnOnce(&mut WatchConfig),
    dir: tempfile::TempDir,
) -> Watched {
    metrics::install().unwrap();
    let mut config = WatchConfig {
        folder: dir.path().to_owned(),
        ..WatchConfig::default()
    };
    configure(&mut config);
    let (tx, queue) = ingest_queue(64);
    let (stop, stopped) = oneshot::channel::<()>();
    let watcher = spawn_watch(session, &config, tx, IngestMetrics::new(session), async {
        let _ = stopped.await;
    })
    .unwrap();
    Watched {
        dir,
        queue,
        stop,
        watcher,
    }
}

fn root(w: &Watched) -> &Path {
    w.dir.path()
}

#[tokio::test]
async fn watch_folder_sends_complete_files_once_in_order() {
    let session = "watch-order";
    let mut w = start_watch(session, |_| {}, tempfile::tempdir().unwrap());
    let root = root(&w).canonicalize().unwrap();

    // Close after write.
    std::fs::write(root.join("seg-1.m4s"), b"segment one").unwrap();
    let object = next(&mut w.queue).await;
    assert_eq!(object.content_location, "seg-1.m4s");
    assert_eq!(object.content_type.as_deref(), Some("video/iso.segment"));
    assert_eq!(object.path, root.join("seg-1.m4s"));
    assert_eq!(object.origin, ObjectOrigin::Watch);
    assert!(!object.spooled);

    // Written under a temporary name, renamed into place: only the final name.
    std::fs::write(root.join(".manifest.mpd.tmp"), b"<MPD/>").unwrap();
    std::fs::rename(root.join(".manifest.mpd.tmp"), root.join("manifest.mpd")).unwrap();
    let object = next(&mut w.queue).await;
    assert_eq!(object.content_location, "manifest.mpd");
    assert_eq!(object.content_type.as_deref(), Some("application/dash+xml"));
    assert_eq!(std::fs::read(&object.path).unwrap(), b"<MPD/>");

    // Temporary names are never sent; events are in order, so the marker
    // coming next proves none of them was.
    for temporary in [".hidden", "x.tmp", "y.part", "z~", "w.swp"] {
        std::fs::write(root.join(temporary), b"wip").unwrap();
    }
    std::fs::write(root.join("marker.txt"), b"m").unwrap();
    assert_eq!(next(&mut w.queue).await.content_location, "marker.txt");

    // Subdirectories created after start (a packager's per-representation
    // folders), written into at once: the relative path is kept.
    std::fs::create_dir_all(root.join("live/720p")).unwrap();
    std::fs::write(root.join("live/720p/seg 1.m4s"), b"hd").unwrap();
    let object = next(&mut w.queue).await;
    assert_eq!(object.content_location, "live/720p/seg%201.m4s");
    assert_eq!(std::fs::read(&object.path).unwrap(), b"hd");
    std::fs::create_dir(root.join("live/480p")).unwrap();
    std::fs::write(root.join("live/480p/init.mp4"), b"init").unwrap();
    std::fs::write(root.join("live/480p/seg-2.m4s"), b"sd").unwrap();
    assert_eq!(
        next(&mut w.queue).await.content_location,
        "live/480p/init.mp4"
    );
    assert_eq!(
        next(&mut w.queue).await.content_location,
        "live/480p/seg-2.m4s"
    );

    // Each file once: nothing else was queued before this last one.
    std::fs::write(root.join("end.mpd"), b"<MPD/>").unwrap();
    assert_eq!(next(&mut w.queue).await.content_location, "end.mpd");
    assert!(
        w.queue.try_recv().is_err(),
        "no duplicate or temporary object"
    );

    let labels = [("session", session), ("origin", "watch")];
    assert_eq!(counter(&names::DOWNLOAD_OBJECTS_INGESTED, &labels), 7.0);
    let bytes = (11 + 6 + 1 + 2 + 4 + 2 + 6) as f64;
    assert_eq!(counter(&names::DOWNLOAD_BYTES_INGESTED, &labels), bytes);

    w.stop.send(()).unwrap();
    w.watcher.join().await.unwrap();
}

#[tokio::test]
async fn existing_files_are_sent_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("old")).unwrap();
    std::fs::write(dir.path().join("old/a.ts"), b"a").unwrap();
    std::fs::write(dir.path().join("b.ts"), b"b").unwrap();
    let mut w = start_watch("watch-existing", |c| c.send_existing = true, dir);
    assert_eq!(next(&mut w.queue).await.content_location, "b.ts");
    assert_eq!(next(&mut w.queue).await.content_location, "old/a.ts");
    std::fs::write(root(&w).join("c.ts"), b"c").unwrap();
    assert_eq!(next(&mut w.queue).await.content_location, "c.ts");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.ts"), b"b").unwrap();
    let mut w = start_watch("watch-not-existing", |_| {}, dir);
    std::fs::write(root(&w).join("c.ts"), b"c").unwrap();
    assert_eq!(next(&mut w.queue).await.content_location, "c.ts");
    assert!(w.queue.try_recv().is_err());
}

#[tokio::test]
async fn oversize_files_are_counted_and_skipped() {
    let session = "watch-oversize";
    let mut w = start_watch(
        session,
        |c| {
            c.max_object_bytes = 10;
            c.ignore = vec!["*.wip".into()];
        },
        tempfile::tempdir().unwrap(),
    );
    std::fs::write(root(&w).join("big.mp4"), [0u8; 11]).unwrap();
    std::fs::write(root(&w).join("temp.wip"), b"x").unwrap();
    // `.tmp` is no longer a temporary name once the patterns are replaced.
    std::fs::write(root(&w).join("fits.tmp"), [0u8; 10]).unwrap();
    let object = next(&mut w.queue).await;
    assert_eq!(object.content_location, "fits.tmp");
    assert_eq!(object.content_type, None);
    let reason = [("session", session), ("reason", "too_large")];
    assert_eq!(counter(&names::DOWNLOAD_OBJECTS_REJECTED, &reason), 1.0);
}

#[tokio::test]
async fn a_closed_queue_stops_the_watcher() {
    let session = "watch-closed";
    let w = start_watch(session, |_| {}, tempfile::tempdir().unwrap());
    drop(w.queue);
    std::fs::write(w.dir.path().join("late.m4s"), b"x").unwrap();
    tokio::time::timeout(ARRIVAL, w.watcher.join())
        .await
        .expect("watcher stops")
        .unwrap();
    let reason = [("session", session), ("reason", "queue_closed")];
    assert_eq!(counter(&names::DOWNLOAD_OBJECTS_REJECTED, &reason), 1.0);
}

// ------------------------------------------------------------------ HTTP push

fn auth() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

fn with_length(extra: &str, body: &[u8]) -> String {
    format!("{}{extra}Content-Length: {}\r\n", auth(), body.len())
}

struct Pushing {
    _state: tempfile::TempDir,
    server: PushServer,
    queue: mpsc::Receiver<IngestedObject>,
    _stop: oneshot::Sender<()>,
}

async fn start_push(session: &str, max_object_bytes: u64) -> Pushing {
    start_push_with(session, |c| c.max_object_bytes = max_object_bytes).await
}

async fn start_push_with(session: &str, configure: impl FnOnce(&mut PushConfig)) -> Pushing {
    metrics::install().unwrap();
    let state = tempfile::tempdir().unwrap();
    let token_file = state.path().join("push.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let mut config = PushConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token_file: Some(token_file),
        ..PushConfig::default()
    };
    configure(&mut config);
    let sessions = PushSessions::new();
    let (tx, queue) = ingest_queue(4);
    sessions.register(session, tx, IngestMetrics::new(session));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = serve_push(&config, state.path(), sessions, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    Pushing {
        _state: state,
        server,
        queue,
        _stop: stop,
    }
}

fn spool_files(server: &PushServer) -> usize {
    std::fs::read_dir(server.spool_dir()).unwrap().count()
}

/// A good PUT after a refusal: accepted, and the object arrives intact.
async fn good_put_goes_through(p: &mut Pushing, session: &str, name: &str) {
    let body = format!("payload of {name}");
    let reply = http(
        p.server.local_addr(),
        "PUT",
        &format!("/sessions/{session}/objects/{name}"),
        &with_length("", body.as_bytes()),
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let object = next(&mut p.queue).await;
    assert_eq!(object.content_location, name);
    assert_eq!(std::fs::read(&object.path).unwrap(), body.as_bytes());
    object.release().unwrap();
}

#[tokio::test]
async fn push_with_token_delivers_byte_identical_objects() {
    let session = "push-ok";
    let mut p = start_push(session, 1 << 20).await;
    let addr = p.server.local_addr();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let reply = http(
        addr,
        "PUT",
        &format!("/sessions/{session}/objects/live/seg%2000042.m4s"),
        &with_length("Content-Type: video/iso.segment\r\n", &body),
        &body,
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let answer: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(answer["content_location"], "live/seg%2000042.m4s");
    assert_eq!(answer["bytes"], 100_000);
    let object = next(&mut p.queue).await;
    assert_eq!(object.content_location, "live/seg%2000042.m4s");
    assert_eq!(object.content_type.as_deref(), Some("video/iso.segment"));
    assert_eq!(object.origin, ObjectOrigin::Push);
    assert!(object.spooled);
    assert!(object.path.starts_with(p.server.spool_dir()));
    assert_eq!(std::fs::read(&object.path).unwrap(), body);
    object.release().unwrap();
    assert!(!object.path.exists());

    // POST names the object in a header; a chunked body is accepted too.
    let reply = http(
        addr,
        "POST",
        &format!("/sessions/{session}/objects"),
        &format!(
            "{}Content-Location: manifest.mpd\r\nTransfer-Encoding: chunked\r\n",
            auth()
        ),
        b"3\r\n<MP\r\n3\r\nD/>\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    let object = next(&mut p.queue).await;
    assert_eq!(object.content_location, "manifest.mpd");
    assert_eq!(object.content_type, None);
    assert_eq!(std::fs::read(&object.path).unwrap(), b"<MPD/>");
    object.release().unwrap();

    // Empty objects are objects.
    let reply = http(
        addr,
        "PUT",
        &format!("/sessions/{session}/objects/empty.bin"),
        &with_length("", b""),
        b"",
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(std::fs::read(next(&mut p.queue).await.path).unwrap(), b"");

    let labels = [("session", session), ("origin", "push")];
    assert_eq!(counter(&names::DOWNLOAD_OBJECTS_INGESTED, &labels), 3.0);
    assert_eq!(counter(&names::DOWNLOAD_BYTES_INGESTED, &labels), 100_006.0);
}

#[tokio::test]
async fn push_refusals_are_clear_counted_and_harmless() {
    let session = "push-bad";
    let mut p = start_push(session, 1000).await;
    let addr = p.server.local_addr();
    let objects = format!("/sessions/{session}/objects");
    let rejected = |reason: &'static str| {
        counter(
            &names::DOWNLOAD_OBJECTS_REJECTED,
            &[("session", session), ("reason", reason)],
        )
    };

    struct Case {
        method: &'static str,
        target: String,
        head: String,
        body: Vec<u8>,
        status: u16,
        reason: &'static str,
        /// Part of the message the client gets.
        says: &'static str,
    }
    let case = |method, target: String, head: String, body: &[u8], status, reason, says| Case {
        method,
        target,
        head,
        body: body.to_vec(),
        status,
        reason,
        says,
    };
    let put = |location: &str| format!("{objects}/{location}");
    let cases = vec![
        case(
            "PUT",
            put("a.ts"),
            "Content-Length: 1\r\n".into(),
            b"x",
            401,
            "unauthorized",
            "bearer token",
        ),
        case(
            "PUT",
            put("a.ts"),
            "Authorization: Bearer wrong-token-0123456789abc\r\nContent-Length: 1\r\n".into(),
            b"x",
            401,
            "unauthorized",
            "bearer token",
        ),
        case(
            "PUT",
            put("a.ts"),
            format!("Authorization: Basic {TOKEN}\r\nContent-Length: 1\r\n"),
            b"x",
            401,
            "unauthorized",
            "bearer token",
        ),
        case(
            "PUT",
            put(""),
            with_length("", b"x"),
            b"x",
            400,
            "bad_content_location",
            "empty",
        ),
        case(
            "PUT",
            put("a/../b.ts"),
            with_length("", b"x"),
            b"x",
            400,
            "bad_content_location",
            "dot segment `..`",
        ),
        case(
            "PUT",
            put("a//b.ts"),
            with_length("", b"x"),
            b"x",
            400,
            "bad_content_location",
            "empty path segment",
        ),
        case(
            "PUT",
            put("%2Fetc/passwd"),
            with_length("", b"x"),
            b"x",
            400,
            "bad_content_location",
            "encoded `/`",
        ),
        case(
            "PUT",
            put("seg%zz.ts"),
            with_length("", b"x"),
            b"x",
            400,
            "bad_content_location",
            "malformed percent-escape",
        ),
        case(
            "PUT",
            put("seg%00.ts"),
            with_length("", b"x"),
            b"x",
            400,
            "bad_content_location",
            "control character",
        ),
        case(
            "POST",
            objects.clone(),
            with_length("Content-Location: /abs/a.ts\r\n", b"x"),
            b"x",
            400,
            "bad_content_location",
            "relative",
        ),
        case(
            "POST",
            objects.clone(),
            with_length("Content-Location: http://cdn/a.ts\r\n", b"x"),
            b"x",
            400,
            "bad_content_location",
            "scheme `http:`",
        ),
        case(
            "POST",
            objects.clone(),
            with_length("", b"x"),
            b"x",
            400,
            "malformed",
            "without a Content-Location",
        ),
        case(
            "PUT",
            format!("{}?v=2", put("a.ts")),
            with_length("", b"x"),
            b"x",
            400,
            "malformed",
            "query string",
        ),
        case(
            "PUT",
            put("a.ts"),
            with_length("Content-Type: mp4\r\n", b"x"),
            b"x",
            400,
            "malformed",
            "Content-Type `mp4`",
        ),
        case(
            "GET",
            put("a.ts"),
            auth(),
            b"",
            405,
            "malformed",
            "method GET",
        ),
        case(
            "PUT",
            objects.clone(),
            with_length("", b"x"),
            b"x",
            405,
            "malformed",
            "use POST",
        ),
        case(
            "PUT",
            put("a.ts"),
            auth(),
            b"",
            411,
            "malformed",
            "Content-Length",
        ),
        case(
            "PUT",
            put("big.ts"),
            format!("{}Content-Length: 5000\r\n", auth()),
            b"",
            413,
            "too_large",
            "5000",
        ),
        case(
            "PUT",
            put("big.ts"),
            format!("{}Transfer-Encoding: chunked\r\n", auth()),
            format!("5dc\r\n{}\r\n0\r\n\r\n", "z".repeat(1500)).as_bytes(),
            413,
            "too_large",
            "`big.ts` exceeds the 1000-byte",
        ),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let before = rejected(c.reason);
        let reply = http(addr, c.method, &c.target, &c.head, &c.body).await;
        assert_eq!(
            reply.status, c.status,
            "{} {}: {}",
            c.method, c.target, reply.body
        );
        let message: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        let message = message["error"].as_str().unwrap();
        assert!(
            message.contains(c.says),
            "{} {}: {message:?} lacks {:?}",
            c.method,
            c.target,
            c.says
        );
        assert_eq!(
            rejected(c.reason),
            before + 1.0,
            "{} {}: metric {}",
            c.method,
            c.target,
            c.reason
        );
        if c.status == 401 {
            assert_eq!(reply.headers["www-authenticate"], "Bearer");
        }
        if c.status == 405 {
            assert!(reply.headers.contains_key("allow"));
        }
        assert_eq!(
            spool_files(&p.server),
            0,
            "spool cleaned after {} {}",
            c.method,
            c.target
        );
        good_put_goes_through(&mut p, session, &format!("after-{i}.ts")).await;
    }
    assert!(
        p.queue.try_recv().is_err(),
        "no refused object reached the queue"
    );
}

#[tokio::test]
async fn pushes_to_unknown_sessions_are_404_and_not_labelled_by_session() {
    let session = "push-known";
    let mut p = start_push(session, 1000).await;
    let unattributed = |reason| counter(&names::PUSH_REQUESTS_REJECTED, &[("reason", reason)]);
    let before = unattributed("unknown_session");
    let reply = http(
        p.server.local_addr(),
        "PUT",
        "/sessions/nosuch/objects/a.ts",
        &with_length("", b"x"),
        b"x",
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(
        reply.body.contains("unknown download session `nosuch`"),
        "{}",
        reply.body
    );
    assert_eq!(unattributed("unknown_session"), before + 1.0);

    let before = unattributed("malformed");
    let reply = http(
        p.server.local_addr(),
        "PUT",
        "/upload/a.ts",
        &with_length("", b"x"),
        b"x",
    )
    .await;
    assert_eq!(reply.status, 404);
    assert!(reply.body.contains("/upload/a.ts"), "{}", reply.body);
    assert_eq!(unattributed("malformed"), before + 1.0);

    good_put_goes_through(&mut p, session, "still-fine.ts").await;
}

#[tokio::test]
async fn a_stopped_session_answers_503_and_keeps_no_spool_file() {
    let session = "push-gone";
    let mut p = start_push(session, 1000).await;
    p.queue.close();
    let reply = http(
        p.server.local_addr(),
        "PUT",
        &format!("/sessions/{session}/objects/a.ts"),
        &with_length("", b"x"),
        b"x",
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains(session));
    assert_eq!(spool_files(&p.server), 0);
    let reason = [("session", session), ("reason", "queue_closed")];
    assert_eq!(counter(&names::DOWNLOAD_OBJECTS_REJECTED, &reason), 1.0);
}

#[tokio::test]
async fn a_stalled_upload_times_out_with_408_and_leaves_no_spool_file() {
    let session = "push-stalled";
    let mut p = start_push_with(session, |c| {
        c.request_timeout = Duration::from_millis(300);
    })
    .await;
    // Five of the ten declared bytes, then nothing (the connection stays open).
    let mut stream = TcpStream::connect(p.server.local_addr()).await.unwrap();
    let head = format!(
        "PUT /sessions/{session}/objects/slow.ts HTTP/1.1\r\nHost: test\r\n{}Content-Length: 10\r\n\r\n12345",
        auth()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = vec![0u8; 4096];
    let n = tokio::time::timeout(ARRIVAL, stream.read(&mut raw))
        .await
        .expect("answer within 10 s")
        .unwrap();
    let reply = String::from_utf8_lossy(&raw[..n]);
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
    assert!(reply.contains("`slow.ts` not received within"), "{reply}");
    assert_eq!(spool_files(&p.server), 0);
    let reason = [("session", session), ("reason", "malformed")];
    assert_eq!(counter(&names::DOWNLOAD_OBJECTS_REJECTED, &reason), 1.0);
    good_put_goes_through(&mut p, session, "after-stall.ts").await;
}

#[tokio::test]
async fn a_file_still_being_written_is_sent_once_when_closed() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut writer = std::fs::File::create(dir.path().join("growing.m4s")).unwrap();
    writer.write_all(b"first half ").unwrap();
    std::fs::write(dir.path().join("done.m4s"), b"done").unwrap();
    let mut w = start_watch("watch-growing", |c| c.send_existing = true, dir);
    // Listed at start: the complete file goes, the open one waits.
    assert_eq!(next(&mut w.queue).await.content_location, "done.m4s");
    writer.write_all(b"second half").unwrap();
    drop(writer);
    let object = next(&mut w.queue).await;
    assert_eq!(object.content_location, "growing.m4s");
    assert_eq!(
        std::fs::read(&object.path).unwrap(),
        b"first half second half"
    );
    std::fs::write(root(&w).join("last.m4s"), b"l").unwrap();
    assert_eq!(next(&mut w.queue).await.content_location, "last.m4s");
    assert!(w.queue.try_recv().is_err());
}
