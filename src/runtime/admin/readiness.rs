//! Readiness: named checks that components keep up to date ("session tv1":
//! no valid MSK for Key Group 1; "bmsc": connected; "egress tv1": sender thread
//! alive). `/readyz` is 200 while every check passes and 503 with the failing
//! ones otherwise. A component registers its check, failing, as it starts, so
//! readiness never runs ahead of it. Some checks also decide liveness
//! (`/healthz`): a failure only a restart mends, such as a dead data-path
//! thread, not one that mends itself, such as a BM-SC outage.

use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

type Probe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
enum Check {
    /// Pushed by the component when it changes.
    Status(Result<(), String>),
    /// Pulled when readiness is asked (e.g. a thread's liveness flag).
    Probe(Probe),
    /// A probe that decides liveness too: when it fails, only a restart helps.
    LiveProbe(Probe),
}

impl Check {
    fn decides_liveness(&self) -> bool {
        matches!(self, Self::LiveProbe(_))
    }
}

/// The registry of readiness checks; cheap to clone, every clone shares it.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<String, Check>>>,
}

/// The outcome of every check at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReadinessReport {
    pub ready: bool,
    /// Check name → what is wrong.
    pub failing: BTreeMap<String, String>,
    pub passing: Vec<String>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("report", &self.report())
            .finish()
    }
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or replaces) the check `name`: `Err` says what is wrong.
    pub fn set(&self, name: impl Into<String>, status: Result<(), String>) {
        self.insert(name.into(), Check::Status(status));
    }

    /// Registers a check evaluated on every readiness request.
    pub fn probe(
        &self,
        name: impl Into<String>,
        probe: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.insert(name.into(), Check::Probe(Arc::new(probe)));
    }

    /// Registers a probe that decides liveness as well as readiness: when it
    /// fails, only a restart helps.
    pub fn probe_live(
        &self,
        name: impl Into<String>,
        probe: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.insert(name.into(), Check::LiveProbe(Arc::new(probe)));
    }

    /// Removes the check `name` (its component was stopped on purpose).
    pub fn remove(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Evaluates every check; probes run outside the registry lock.
    pub fn report(&self) -> ReadinessReport {
        self.evaluate(|_| true)
    }

    /// Evaluates the checks that decide liveness (`ready` then means alive).
    pub fn liveness(&self) -> ReadinessReport {
        self.evaluate(Check::decides_liveness)
    }

    fn evaluate(&self, include: impl Fn(&Check) -> bool) -> ReadinessReport {
        let checks: Vec<(String, Check)> = self
            .lock()
            .iter()
            .filter(|(_, check)| include(check))
            .map(|(name, check)| (name.clone(), check.clone()))
            .collect();
        let mut failing = BTreeMap::new();
        let mut passing = Vec::new();
        for (name, check) in checks {
            let status = match check {
                Check::Status(status) => status,
                Check::Probe(probe) | Check::LiveProbe(probe) => probe(),
            };
            match status {
                Ok(()) => passing.push(name),
                Err(reason) => {
                    failing.insert(name, reason);
                }
            }
        }
        ReadinessReport {
            ready: failing.is_empty(),
            failing,
            passing,
        }
    }

    fn insert(&self, name: String, check: Check) {
        self.lock().insert(name, check);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Check>> {
        self.checks.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn failing_checks_are_named_until_they_pass() {
        let readiness = Readiness::new();
        readiness.set("bmsc", Ok(()));
        readiness.set("session tv1", Err("no valid MSK for key group 1".into()));
        let report = readiness.clone().report();
        assert!(!report.ready);
        assert_eq!(
            report.failing.get("session tv1").map(String::as_str),
            Some("no valid MSK for key group 1")
        );
        assert_eq!(report.passing, ["bmsc"]);

        readiness.set("session tv1", Ok(()));
        let report = readiness.report();
        assert!(report.ready);
        assert!(report.failing.is_empty());
        assert_eq!(report.passing, ["bmsc", "session tv1"]);
    }

    #[test]
    fn probes_are_evaluated_on_each_report() {
        let readiness = Readiness::new();
        let alive = Arc::new(AtomicBool::new(true));
        let flag = alive.clone();
        readiness.probe("egress tv1", move || {
            if flag.load(Ordering::Relaxed) {
                Ok(())
            } else {
                Err("sender thread stopped".into())
            }
        });
        assert!(readiness.report().ready);
        alive.store(false, Ordering::Relaxed);
        let report = readiness.report();
        assert!(!report.ready);
        assert_eq!(report.failing["egress tv1"], "sender thread stopped");
        readiness.remove("egress tv1");
        assert!(readiness.report().ready);
    }
}
