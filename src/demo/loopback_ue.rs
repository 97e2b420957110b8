//! One UE and the BM-SC's key management on loopback, provisioned with a fresh
//! random Ks_NAF: what the demo (and a lab) needs to run the chain from
//! registration to decrypted media on one machine.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use zeroize::Zeroizing;

use crate::bmsc::BmscControl;
use crate::bmsc::key_management::{
    KeyManagementConfig, RunningKeyManagement, UserServiceConfig, start_key_management,
};
use crate::protocol::key_request::{BackOff, KsNaf, UeSecurityAssociation};
use crate::protocol::keys::KeyDomainId;
use crate::ue::key_management::{RunningUe, UeConfig, start_ue};

/// The User Service the loopback UE registers to.
pub const LOOPBACK_SERVICE: &str = "urn:mbms-gateway:loopback:service";
const B_TID: &str = "bG9vcGJhY2s=@bsf.localhost";

/// Starts the Key Request and Key Distribution functions of the BM-SC behind
/// `control` on 127.0.0.1 (files in `dir`), and a UE registered to one User
/// Service protected by `key_group`.
pub async fn start_loopback_ue(
    dir: &Path,
    control: BmscControl,
    key_domain_id: KeyDomainId,
    key_group: u16,
) -> anyhow::Result<(RunningKeyManagement, RunningUe)> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
    let mut ks_naf = [0u8; 32];
    getrandom::fill(&mut ks_naf).map_err(|e| anyhow::anyhow!("OS random source: {e}"))?;
    let ks_naf = KsNaf::new(ks_naf);
    let ue_port = UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port();
    let ue_file = dir.join("ues.toml");
    let text = Zeroizing::new(format!(
        "[[ue]]\nb_tid = \"{B_TID}\"\nimpi = \"loopback@ims.localhost\"\nks_naf = \"{}\"\nmikey_port = {ue_port}\nservices = [\"{LOOPBACK_SERVICE}\"]\n",
        hex::encode(ks_naf.expose())
    ));
    std::fs::write(&ue_file, text.as_bytes()).with_context(|| format!("{}", ue_file.display()))?;
    let km = start_key_management(
        &KeyManagementConfig {
            listen: "127.0.0.1:0".parse()?,
            tls: None,
            mikey_source: "127.0.0.1:0".parse()?,
            naf_id: "bmsc.localhost".into(),
            digest_algorithm: "SHA-256".into(),
            nonce_lifetime_s: 300,
            request_ack: true,
            ue_file,
            services: vec![UserServiceConfig {
                id: LOOPBACK_SERVICE.into(),
                key_groups: vec![key_group],
            }],
        },
        control,
        Some(&dir.join("bmsc-key-management")),
    )
    .await?;
    let ue = start_ue(UeConfig {
        key_request_url: format!("http://{}/keymanagement", km.http_addr),
        ca_file: None,
        sa: UeSecurityAssociation {
            b_tid: B_TID.into(),
            impi: "loopback@ims.localhost".into(),
            ks_naf,
        },
        mikey_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, ue_port)),
        key_domain_id,
        services: vec![LOOPBACK_SERVICE.into()],
        key_groups: vec![key_group],
        backoff: BackOff {
            offset: Duration::from_millis(500),
            random_period: Duration::from_millis(500),
        },
        retry: Duration::from_secs(1),
        max_retry: Duration::from_secs(4),
    })
    .await?;
    Ok((km, ue))
}
