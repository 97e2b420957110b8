//! The configuration shipped in the Kubernetes ConfigMap is a valid gateway
//! configuration (the example in `deploy/gateway.example.toml` is checked by the
//! config module's own tests).

use mbms_gateway::runtime::config::GatewayConfig;

/// The literal block `gateway.toml: |` of the ConfigMap, de-indented.
fn configmap_toml(yaml: &str) -> String {
    let mut lines = yaml.lines().skip_while(|l| l.trim() != "gateway.toml: |");
    lines.next().expect("a gateway.toml key");
    let block: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .collect();
    block
        .iter()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn kubernetes_configmap_is_a_valid_configuration() {
    let text = configmap_toml(include_str!("../deploy/kubernetes/configmap.yaml"));
    let config = GatewayConfig::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    assert_eq!(config.state_dir.to_str(), Some("/var/lib/mbms-gateway"));
    assert!(!config.admin.listen.ip().is_loopback());
    assert!(
        config.admin.token.is_some(),
        "off loopback, a token is required"
    );
    assert_eq!(config.streaming.len(), 1);
    let tls = config.bmsc.tls.expect("BM-SC over TLS");
    assert!(tls.ca_file.starts_with("/etc/mbms-gateway/tls"));
}
