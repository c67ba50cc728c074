//! TLS for the bridge's MQTT connection (`mqtts://`), with rustls: the
//! broker's certificate is checked against a CA bundle the operator names
//! (`--mqtt-ca`, a cluster's cert-manager CA) or the system's roots, and the
//! bridge may present its own certificate (`--mqtt-cert`/`--mqtt-key`) where
//! the broker wants mutual TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the bridge's trust and identity come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttTls {
    /// PEM CA bundle; the system's roots when absent.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain and private key, for mutual TLS.
    pub client_auth: Option<(PathBuf, PathBuf)>,
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate file", path.display()))?;
    if certificates.is_empty() {
        bail!("{}: holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display());
    }
    Ok(certificates)
}

impl MqttTls {
    /// The rustls client configuration; every file is read and checked now,
    /// so a wrong path fails at start with its name, not at first connect.
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(ca) => {
                for certificate in read_certificates(ca)? {
                    roots
                        .add(certificate)
                        .with_context(|| format!("{}: a CA certificate is invalid", ca.display()))?;
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (added, _) = roots.add_parsable_certificates(native.certs);
                if added == 0 {
                    bail!("no system CA certificates found: pass --mqtt-ca with the broker's CA bundle");
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots);
        Ok(match &self.client_auth {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = read_certificates(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("{}: not a PEM private key", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .context("the client certificate and key do not match")?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_malformed_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = MqttTls { ca: Some(dir.path().join("nope.pem")), client_auth: None };
        let error = format!("{:#}", missing.client_config().unwrap_err());
        assert!(error.contains("nope.pem"), "{error}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let error =
            format!("{:#}", MqttTls { ca: Some(garbage), client_auth: None }.client_config().unwrap_err());
        assert!(error.contains("garbage.pem") && error.contains("no PEM certificate"), "{error}");
    }
}
