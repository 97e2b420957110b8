//! Configuration reload (`SIGHUP`): which sessions start, stop, restart or are
//! left alone. Sessions are matched by name, whatever their kind; a session
//! whose configuration is equal in every field (but for how its flows are
//! announced in SDP) is untouched (its sockets, threads and MTK state keep
//! running, so it does not lose a packet). Any other difference restarts it:
//! its ingest sockets, egress settings or keys may depend on the field that
//! changed.
//!
//! Settings of the whole process (state directory, instance, BM-SC connection,
//! admin endpoint, lease size) are not reloadable: a reload that changes them
//! is refused as a whole and the running configuration stays. The push
//! endpoint is: its listener is replaced, the sessions' routes stay.

use super::config::{GatewayConfig, StreamingSession};
use super::download::DownloadSession;
use std::collections::HashMap;

/// A session configuration of any kind, matched across reloads by its name.
pub trait NamedSession: PartialEq {
    fn name(&self) -> &str;

    /// Whether a session configured as `self` may keep running as `other`.
    fn runs_like(&self, other: &Self) -> bool {
        self == other
    }
}

impl NamedSession for StreamingSession {
    fn name(&self) -> &str {
        &self.name
    }

    /// Equal but for how the flows are announced (`sdp`): the data path is
    /// the same, only the description differs.
    fn runs_like(&self, other: &Self) -> bool {
        let unannounced = |s: &Self| {
            let mut s = s.clone();
            s.flows.iter_mut().for_each(|f| f.sdp = None);
            s
        };
        unannounced(self) == unannounced(other)
    }
}

impl NamedSession for DownloadSession {
    fn name(&self) -> &str {
        &self.name
    }
}

/// What a reload does to the sessions of one kind.
#[derive(Debug, PartialEq)]
pub struct SessionPlan<'a, C> {
    /// In the new configuration only: start.
    pub added: Vec<&'a C>,
    /// In the old configuration only: stop (by name).
    pub removed: Vec<String>,
    /// In both, with a different configuration: stop, then start the new one.
    pub changed: Vec<&'a C>,
    /// In both, equal: leave running.
    pub unchanged: Vec<String>,
}

impl<C> SessionPlan<'_, C> {
    /// True when the reload leaves every session of this kind running as is.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// Compares two session lists by name (names are unique in a valid
/// configuration). Orders follow the lists: `removed` the old one, the rest
/// the new one.
pub fn plan<'a, C: NamedSession>(old: &[C], new: &'a [C]) -> SessionPlan<'a, C> {
    let old_by_name: HashMap<&str, &C> = old.iter().map(|c| (c.name(), c)).collect();
    let mut plan = SessionPlan {
        added: Vec::new(),
        removed: Vec::new(),
        changed: Vec::new(),
        unchanged: Vec::new(),
    };
    for session in new {
        match old_by_name.get(session.name()) {
            None => plan.added.push(session),
            Some(previous) if previous.runs_like(session) => {
                plan.unchanged.push(session.name().into())
            }
            Some(_) => plan.changed.push(session),
        }
    }
    let new_names: std::collections::HashSet<&str> = new.iter().map(|c| c.name()).collect();
    plan.removed = old
        .iter()
        .filter(|c| !new_names.contains(c.name()))
        .map(|c| c.name().into())
        .collect();
    plan
}

/// A reload that cannot be applied; the running configuration stays.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadRefused {
    #[error("{0}")]
    Invalid(String),
    #[error("`{field}` changed; it takes effect only at a restart (nothing was reloaded)")]
    NeedsRestart { field: &'static str },
    #[error("push: the new endpoint cannot start ({0}); nothing was reloaded")]
    Push(String),
}

/// Checks that `new` differs from `running` only in its sessions.
pub fn check_reloadable(running: &GatewayConfig, new: &GatewayConfig) -> Result<(), ReloadRefused> {
    let needs_restart = |field| Err(ReloadRefused::NeedsRestart { field });
    if new.state_dir != running.state_dir {
        return needs_restart("state_dir");
    }
    if new.instance_id != running.instance_id {
        return needs_restart("instance_id");
    }
    if new.lease_block != running.lease_block {
        return needs_restart("lease_block");
    }
    // The Key Groups are derived from the sessions and follow them.
    let mut bmsc = new.bmsc.clone();
    bmsc.key_groups.clone_from(&running.bmsc.key_groups);
    if bmsc != running.bmsc {
        return needs_restart("bmsc");
    }
    if new.admin != running.admin {
        return needs_restart("admin");
    }
    if new.ingest != running.ingest {
        return needs_restart("ingest");
    }
    Ok(())
}

/// The outcome of one reload, for the log and the reload metric.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub started: Vec<String>,
    pub stopped: Vec<String>,
    pub restarted: Vec<String>,
    pub unchanged: usize,
    /// Sessions of the new configuration that could not start (e.g. an
    /// ingest port in use), with the reason. They are not running.
    pub failed: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct S(&'static str, u32);

    impl NamedSession for S {
        fn name(&self) -> &str {
            self.0
        }
    }

    #[test]
    fn sessions_are_matched_by_name_and_compared_whole() {
        let old = [S("a", 1), S("b", 1), S("c", 1)];
        let new = [S("c", 2), S("a", 1), S("d", 1)];
        let p = plan(&old, &new);
        assert_eq!(p.added, [&S("d", 1)]);
        assert_eq!(p.removed, ["b"]);
        assert_eq!(p.changed, [&S("c", 2)]);
        assert_eq!(p.unchanged, ["a"]);
        assert!(!p.is_empty());
    }

    #[test]
    fn an_equal_list_changes_nothing() {
        let old = [S("a", 1), S("b", 2)];
        let new = [S("b", 2), S("a", 1)];
        let p = plan(&old, &new);
        assert!(p.is_empty());
        assert_eq!(p.unchanged, ["b", "a"]);
    }

    const BASE: &str = r#"
state_dir = "/tmp/x"
instance_id = "gw-a"
[bmsc]
endpoint = "http://127.0.0.1:50051"
key_domain_id = "64f000"
[[streaming]]
name = "tv"
key_group = 1
destination = "239.1.1.1"
[[streaming.flow]]
ingest = "127.0.0.1:5004"
port = 5004
"#;

    const SECOND: &str = r#"
[[streaming]]
name = "radio"
key_group = 2
destination = "239.1.1.2"
[[streaming.flow]]
ingest = "127.0.0.1:5006"
port = 5004
"#;

    #[test]
    fn sessions_and_their_key_groups_are_reloadable() {
        let running = GatewayConfig::parse(BASE).unwrap();
        let new = GatewayConfig::parse(&format!("{BASE}{SECOND}")).unwrap();
        assert_eq!(new.bmsc.key_groups, [1, 2]);
        assert_eq!(check_reloadable(&running, &new), Ok(()));
        let p = plan(&running.streaming, &new.streaming);
        assert_eq!(p.added.len(), 1);
        assert_eq!(p.unchanged, ["tv"]);
    }

    #[test]
    fn process_settings_need_a_restart() {
        let running = GatewayConfig::parse(BASE).unwrap();
        for (from, to, field) in [
            ("/tmp/x", "/tmp/y", "state_dir"),
            ("gw-a", "gw-b", "instance_id"),
            ("127.0.0.1:50051", "127.0.0.1:50052", "bmsc"),
        ] {
            let new = GatewayConfig::parse(&BASE.replace(from, to)).unwrap();
            assert_eq!(
                check_reloadable(&running, &new),
                Err(ReloadRefused::NeedsRestart { field })
            );
        }
        let new = GatewayConfig::parse(&format!("lease_block = 8\n{BASE}")).unwrap();
        assert_eq!(
            check_reloadable(&running, &new),
            Err(ReloadRefused::NeedsRestart {
                field: "lease_block"
            })
        );
        let new = GatewayConfig::parse(&format!("{BASE}\n[ingest]\nworkers = 3\n")).unwrap();
        assert_eq!(
            check_reloadable(&running, &new),
            Err(ReloadRefused::NeedsRestart { field: "ingest" })
        );
    }

    #[test]
    fn a_changed_field_restarts_only_that_session() {
        let running = GatewayConfig::parse(&format!("{BASE}{SECOND}")).unwrap();
        let new = GatewayConfig::parse(&format!(
            "{BASE}{}",
            SECOND.replace("239.1.1.2", "239.1.1.3")
        ))
        .unwrap();
        let p = plan(&running.streaming, &new.streaming);
        assert_eq!(p.changed.len(), 1);
        assert_eq!(p.changed[0].name, "radio");
        assert_eq!(p.unchanged, ["tv"]);
        assert!(p.added.is_empty() && p.removed.is_empty());
    }

    #[test]
    fn a_new_announcement_alone_restarts_nothing() {
        let announced = |bitrate: &str| {
            let flow = format!(
                "port = 5004\nsdp = {{ media = \"video\", payload_type = 96, bitrate = \"{bitrate}\" }}\n"
            );
            GatewayConfig::parse(&BASE.replacen("port = 5004\n", &flow, 1)).unwrap()
        };
        let running = announced("2Mbit");
        let faster = announced("3Mbit");
        let p = plan(&running.streaming, &faster.streaming);
        assert!(p.is_empty(), "{:?}", p.changed);
        assert_eq!(p.unchanged, ["tv"]);
        // Announcing a session that was not, or no longer, is description too.
        let unannounced = GatewayConfig::parse(BASE).unwrap();
        assert!(plan(&running.streaming, &unannounced.streaming).is_empty());
        // The data path still compares whole.
        let mut moved = announced("2Mbit");
        moved.streaming[0].flows[0].port = 5006;
        assert_eq!(plan(&running.streaming, &moved.streaming).changed.len(), 1);
    }
}
