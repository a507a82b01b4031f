//! TLS on the RPC links (rustls on ring): a client that verifies the node against a CA (and may
//! present a certificate), a server that presents its certificate (and may require clients'
//! certificates signed by a CA: mutual TLS).
//!
//! ```text
//!  net().connect ─► ClientTls::wrap (verify the node's name or IP) ─► token handshake ─► tarpc
//!  accept        ─► ServerTls::accept (within the handshake time)  ─► token handshake ─► tarpc
//! ```

use std::{io, path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
use tokio_rustls::{
    TlsAcceptor, TlsConnector,
    rustls::{
        ClientConfig, RootCertStore, ServerConfig, crypto::CryptoProvider,
        server::WebPkiClientVerifier,
    },
};

use crate::net::Stream;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {}: not PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{what} {}: no certificate in it", path.display()));
    }
    Ok(certs)
}

fn key(path: &Path, what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("{what} {}: not a PEM private key: {e}", path.display()))
}

fn roots(path: &Path, what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs(path, what)? {
        roots
            .add(cert)
            .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A client's TLS: the CA it trusts, and its own certificate for mutual TLS.
#[derive(Clone)]
pub struct ClientTls(TlsConnector);

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

impl ClientTls {
    /// Trusts the CA certificates in `ca`; presents `cert` and `key` when given (mutual TLS).
    /// `flags` names the options in errors, e.g. `("--cacert", "--cert", "--key")`.
    ///
    /// # Errors
    /// A file that cannot be read or is not PEM, or a key that does not fit.
    pub fn from_files(
        ca: &Path,
        cert_key: Option<(&Path, &Path)>,
        flags: (&str, &str, &str),
    ) -> Result<Self, String> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots(ca, flags.0)?);
        let config = match cert_key {
            Some((cert, k)) => builder
                .with_client_auth_cert(certs(cert, flags.1)?, key(k, flags.2)?)
                .map_err(|e| format!("{} and {}: {e}", flags.1, flags.2))?,
            None => builder.with_no_client_auth(),
        };
        Ok(Self(TlsConnector::from(Arc::new(config))))
    }

    /// TLS over `stream` to the node named `host` (a DNS name or an IP address, which its
    /// certificate must name).
    ///
    /// # Errors
    /// A host that is no valid name, or a failed TLS handshake (untrusted or wrong
    /// certificate, a node that does not speak TLS).
    pub async fn wrap(&self, stream: Stream, host: &str) -> io::Result<Stream> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{host}: {e}")))?;
        let tls = self
            .0
            .connect(name, stream)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS with {host} failed: {e}")))?;
        Ok(Box::new(tls))
    }
}

/// A node's TLS: its certificate and key, and the CA its clients' certificates must come from
/// (mutual TLS), if any.
#[derive(Clone)]
pub struct ServerTls(TlsAcceptor);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

impl ServerTls {
    /// From `--tls-cert`, `--tls-key` and `--tls-client-ca`.
    ///
    /// # Errors
    /// A file that cannot be read or is not PEM, or a key that does not fit the certificate.
    pub fn from_files(cert: &Path, k: &Path, client_ca: Option<&Path>) -> Result<Self, String> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match client_ca {
            Some(ca) => {
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots(ca, "--tls-client-ca")?),
                    provider(),
                )
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", ca.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = builder
            .with_single_cert(certs(cert, "--tls-cert")?, key(k, "--tls-key")?)
            .map_err(|e| format!("--tls-cert and --tls-key: {e}"))?;
        Ok(Self(TlsAcceptor::from(Arc::new(config))))
    }

    /// The TLS handshake on an accepted connection.
    ///
    /// # Errors
    /// A client that does not speak TLS, or (mutual TLS) presents no trusted certificate.
    pub async fn accept(&self, stream: Stream) -> io::Result<Stream> {
        Ok(Box::new(self.0.accept(stream).await?))
    }
}
