//! HTTPS/WSS: the rustls configuration from PEM files, or a self-signed
//! certificate generated at start for localhost and this machine's LAN
//! addresses, so that a phone on the same network can open the examples
//! (browsers allow camera and microphone only on secure pages).

use crate::config::TlsConfig;
use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use std::net::IpAddr;

/// What the HTTP server speaks.
pub struct Tls {
    pub rustls: RustlsConfig,
    /// For a self-signed certificate: the LAN addresses it names, to tell
    /// the user which URLs work from another device.
    pub lan_addresses: Vec<IpAddr>,
}

/// The TLS setup of `config`, or `None` for plain HTTP.
pub async fn load(config: &TlsConfig) -> anyhow::Result<Option<Tls>> {
    if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
        let rustls = RustlsConfig::from_pem_file(cert, key)
            .await
            .with_context(|| {
                format!(
                    "cannot use the TLS certificate {} with key {} (PEM files expected)",
                    cert.display(),
                    key.display()
                )
            })?;
        return Ok(Some(Tls {
            rustls,
            lan_addresses: Vec::new(),
        }));
    }
    if !config.self_signed {
        return Ok(None);
    }
    let lan_addresses = crate::netif::lan_addresses();
    let (cert, key) = self_signed(&lan_addresses)?;
    let rustls = RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
        .await
        .context("cannot use the generated self-signed certificate")?;
    Ok(Some(Tls {
        rustls,
        lan_addresses,
    }))
}

/// A certificate and key (PEM) for localhost, the loopback addresses and `lan`.
pub fn self_signed(lan: &[IpAddr]) -> anyhow::Result<(String, String)> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    names.extend(lan.iter().map(IpAddr::to_string));
    let certified = rcgen::generate_simple_self_signed(names)
        .context("cannot generate a self-signed certificate")?;
    Ok((certified.cert.pem(), certified.signing_key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_self_signed_certificate_is_accepted_by_rustls() {
        let lan = [IpAddr::from([192, 168, 1, 20])];
        let (cert, key) = self_signed(&lan).expect("generate");
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        RustlsConfig::from_pem(cert.into_bytes(), key.into_bytes())
            .await
            .expect("rustls takes it");
    }
}
