//! The README's metric table lists every exported metric, with its type and
//! labels as `src/runtime/metrics/names.rs` declares them.

use mbms_gateway::runtime::metrics::names::{ALL, MetricType};

#[test]
fn every_metric_is_documented_in_the_readme() {
    let readme = include_str!("../README.md");
    for def in ALL {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", def.name)))
            .unwrap_or_else(|| panic!("README lists no row for {}", def.name));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let kind = match def.kind {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram(_) => "histogram",
        };
        assert_eq!(cells[2], kind, "{}", def.name);
        let labels = if def.labels.is_empty() {
            "–".to_owned()
        } else {
            def.labels.join(", ")
        };
        assert_eq!(cells[3], labels, "{}", def.name);
    }
}
