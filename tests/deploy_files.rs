//! The configuration shipped in the Kubernetes ConfigMap is a valid gateway
//! configuration (the example in `deploy/gateway.example.toml` is checked by the
//! config module's own tests).

use mbms_gateway::gateway::config::GatewayConfig;

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

/// Where the Deployment mounts the admin token Secret, and the Secret's value.
const ADMIN_TOKEN_MOUNT: &str = "/etc/mbms-gateway/admin/token";

fn secret_admin_token(yaml: &str) -> String {
    let line = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .expect("a token key in the Secret");
    line.trim().to_owned()
}

#[test]
fn kubernetes_configmap_is_a_valid_configuration() {
    let text = configmap_toml(include_str!("../deploy/kubernetes/configmap.yaml"));
    // The Secret, mounted where the Deployment puts it; both probes send
    // the same token.
    let deployment = include_str!("../deploy/kubernetes/deployment.yaml");
    assert!(
        deployment
            .contains("{name: admin-token, mountPath: /etc/mbms-gateway/admin, readOnly: true}")
    );
    let token = secret_admin_token(include_str!("../deploy/kubernetes/secret-admin-token.yaml"));
    let header = format!("{{name: Authorization, value: \"Bearer {token}\"}}");
    assert_eq!(deployment.matches(&header).count(), 2, "{header}");
    let dir = tempfile::tempdir().unwrap();
    let mounted = dir.path().join("token");
    std::fs::write(&mounted, &token).unwrap();
    assert_eq!(text.matches(ADMIN_TOKEN_MOUNT).count(), 1, "{text}");
    let text = text.replace(ADMIN_TOKEN_MOUNT, mounted.to_str().unwrap());

    let config = GatewayConfig::parse(&text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    assert_eq!(config.state_dir.to_str(), Some("/var/lib/mbms-gateway"));
    assert!(!config.admin.listen.ip().is_loopback());
    assert_eq!(
        config.admin.load_token().unwrap(),
        Some(token),
        "off loopback, the token comes from the Secret"
    );
    assert_eq!(config.streaming.len(), 1);
    let tls = config.bmsc.tls.expect("BM-SC over TLS");
    assert!(tls.ca_file.starts_with("/etc/mbms-gateway/tls"));
}
