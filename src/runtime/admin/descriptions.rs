//! The SDP descriptions the admin endpoint serves at `/sessions/NAME/sdp`,
//! kept current by whoever runs the sessions.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

/// Session name → its SDP text, or why it has none. Clones share one map.
#[derive(Debug, Clone, Default)]
pub struct SessionDescriptions {
    sessions: Arc<RwLock<BTreeMap<String, Result<String, String>>>>,
}

impl SessionDescriptions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces every description at once (after a start or a reload).
    pub fn replace(&self, sessions: BTreeMap<String, Result<String, String>>) {
        *self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner) = sessions;
    }

    /// The description of `name`: `None` when no such session runs.
    pub fn get(&self, name: &str) -> Option<Result<String, String>> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
    }
}
