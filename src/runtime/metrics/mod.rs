//! Operations metrics: the process-wide Prometheus recorder, the metric table
//! ([`names`]), the fixed label values ([`labels`]) and the typed handles call
//! sites use ([`handles`]). Rendering is done by the admin endpoint, not by
//! an exporter listener of its own.
//!
//! Nothing here knows the data path: components count in their own plain
//! atomics and hand copies ([`SessionTotals`], [`EgressTotals`]) to the
//! handles at scrape time, so the metrics can be imported from anywhere
//! without a loop.

pub mod handles;
pub mod labels;
pub mod names;

pub use handles::{
    BmscMetrics, EgressMetrics, EgressTotals, GatewayMetrics, IngestMetrics, InputMetrics,
    LatencyMetrics, PushMetrics, SessionMetrics, SessionTotals,
};
pub use labels::{
    BmscRpc, BmscState, DropReason, EgressLabel, IngestOrigin, IngestRejectReason, LabelValue,
    MikeyTransport, ReloadResult, RpcFailure, SessionKind,
};

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use names::MetricType;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError, Weak};

/// A function run before each render, to copy state that is kept elsewhere
/// (egress thread atomics, client status) into gauges and counters.
type Hook = Arc<dyn Fn() + Send + Sync>;

#[derive(Default)]
struct Hooks {
    next_id: u64,
    by_id: BTreeMap<u64, Hook>,
}

/// The installed recorder; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    hooks: Arc<Mutex<Hooks>>,
    /// Sessions no longer configured: their series are left out of every
    /// render. The recorder cannot delete a series, so they are kept, and a
    /// session added again under its name goes on with them.
    withdrawn: Arc<Mutex<BTreeSet<String>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The recorder can be installed only once per process; later calls get the
/// same [`Metrics`].
static INSTALLED: Mutex<Option<Metrics>> = Mutex::new(None);

/// Installs the Prometheus recorder for the whole process (idempotent): every
/// histogram gets its explicit buckets, every metric its help text, and
/// `build_info` is set. Handles must be made after this call to be exported.
pub fn install() -> Result<Metrics, BuildError> {
    let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(metrics) = installed.as_ref() {
        return Ok(metrics.clone());
    }
    let mut builder = PrometheusBuilder::new();
    for def in names::ALL {
        if let MetricType::Histogram(buckets) = def.kind {
            builder = builder.set_buckets_for_metric(Matcher::Full(def.name.into()), buckets)?;
        }
    }
    let handle = builder.install_recorder()?;
    describe_all();
    handles::publish_build_info();
    let metrics = Metrics {
        handle,
        hooks: Arc::default(),
        withdrawn: Arc::default(),
    };
    *installed = Some(metrics.clone());
    Ok(metrics)
}

fn describe_all() {
    ::metrics::with_recorder(|recorder| {
        for def in names::ALL {
            let (name, help) = (def.name.into(), def.help.into());
            match def.kind {
                MetricType::Counter => recorder.describe_counter(name, None, help),
                MetricType::Gauge => recorder.describe_gauge(name, None, help),
                MetricType::Histogram(_) => recorder.describe_histogram(name, None, help),
            }
        }
    });
}

impl Metrics {
    /// The Prometheus text exposition of every metric, after running the
    /// scrape hooks.
    pub fn render(&self) -> String {
        let hooks: Vec<Hook> = self
            .hooks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .by_id
            .values()
            .cloned()
            .collect();
        for hook in hooks {
            hook();
        }
        let text = self.handle.render();
        let withdrawn = self
            .withdrawn
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if withdrawn.is_empty() {
            return text;
        }
        let labels: Vec<String> = withdrawn
            .iter()
            .map(|name| format!("session=\"{}\"", escape_label_value(name)))
            .collect();
        let shown = |line: &&str| {
            line.starts_with('#')
                || !labels.iter().any(|label| {
                    line.match_indices(label.as_str()).any(|(at, _)| {
                        matches!(line.as_bytes().get(at.wrapping_sub(1)), Some(b'{' | b','))
                    })
                })
        };
        let mut out: String = text.lines().filter(shown).collect::<Vec<_>>().join("\n");
        out.push('\n');
        out
    }

    /// Leaves the series of session `name` out of every render from now on
    /// (the session was removed from the configuration).
    pub fn withdraw_session(&self, name: &str) {
        self.withdrawn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name.to_owned());
    }

    /// Shows the series of session `name` again (it was added back).
    pub fn restore_session(&self, name: &str) {
        self.withdrawn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
    }

    /// Drains recorded histogram samples into their buckets; run periodically
    /// so memory stays bounded between scrapes.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }

    /// Runs `hook` before every render until the returned guard is dropped.
    #[must_use = "the hook is removed when the guard is dropped"]
    pub fn on_scrape(&self, hook: impl Fn() + Send + Sync + 'static) -> ScrapeHook {
        let mut hooks = self.hooks.lock().unwrap_or_else(PoisonError::into_inner);
        let id = hooks.next_id;
        hooks.next_id += 1;
        hooks.by_id.insert(id, Arc::new(hook));
        ScrapeHook {
            id,
            hooks: Arc::downgrade(&self.hooks),
        }
    }
}

/// A label value as the text exposition writes it (backslash, double quote
/// and line feed escaped).
fn escape_label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Keeps a scrape hook registered; dropping it removes the hook.
pub struct ScrapeHook {
    id: u64,
    hooks: Weak<Mutex<Hooks>>,
}

impl Drop for ScrapeHook {
    fn drop(&mut self) {
        if let Some(hooks) = self.hooks.upgrade() {
            hooks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .by_id
                .remove(&self.id);
        }
    }
}
