//! TLS for the HTTP endpoints and their clients, from PEM files: a server
//! identity (certificate chain and key, and for mutual TLS the CA its
//! clients must be signed by) and a client's trust anchor. rustls with the
//! ring provider, as the gRPC connection to the BM-SC uses. Every error
//! names the file and what was wrong with it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Server certificate and key (PEM); with `client_ca_file`, clients must present a
/// certificate signed by that CA (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// The server identity these files hold (see [`server_config`]).
    pub fn server_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        server_config(
            &self.cert_file,
            &self.key_file,
            self.client_ca_file.as_deref(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{what} {}: {e}", path.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "{what} {}: no certificate in it",
        path.display()
    );
    Ok(certs)
}

fn roots(path: &Path, what: &str) -> anyhow::Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    for cert in certificates(path, what)? {
        store
            .add(cert)
            .map_err(|e| anyhow!("{what} {}: {e}", path.display()))?;
    }
    Ok(store)
}

/// A server identity: `cert_file` (the chain, leaf first) and `key_file`;
/// with `client_ca_file`, clients must present a certificate it signed.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    client_ca_file: Option<&Path>,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = certificates(cert_file, "tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| anyhow!("tls.key_file {}: {e}", key_file.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match client_ca_file {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots(ca, "tls.client_ca_file")?),
                provider(),
            )
            .build()
            .with_context(|| format!("tls.client_ca_file {}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .with_context(|| format!("tls.cert_file {} with tls.key_file", cert_file.display()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client that trusts the CA in `ca_file` only.
pub fn client_config(ca_file: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots(ca_file, "ca_file")?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
