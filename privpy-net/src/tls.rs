//! TLS 1.3 with mutual authentication (rustls, `ring` provider).
//!
//! Identities are DNS names in the certificates' subject alternative names:
//! server `s1` is `s1.privpy`, client `alice` is `alice.client.privpy`. Server
//! certificates are signed by the cluster's server authority, client certificates by
//! its client authority; a certificate from any other authority fails the handshake.
//! Connections always verify the name of the role they expect, whatever address
//! they dial, so a server cannot be impersonated by its address.
//!
//! [`dev_certificates`] writes a complete development set (two authorities, four
//! server and any number of client certificates) for the one-command local cluster.

use crate::config::check_client_name;
use privpy_core::transport::Role;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A certificate or key problem.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Building the client-certificate verifier failed.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// Generating development certificates failed.
    #[error("certificate generation: {0}")]
    Generate(String),
    /// The authority refused a certificate request.
    #[error("certificate request for {identity}: {reason}")]
    Request {
        /// The identity the request was to be signed for.
        identity: String,
        /// Why it was refused.
        reason: String,
    },
}

/// The DNS name that identifies a server role.
pub fn server_name(role: Role) -> String {
    format!("{}.privpy", role.name())
}

/// The DNS name that identifies a client.
pub fn client_dns_name(client: &str) -> String {
    format!("{client}{CLIENT_SUFFIX}")
}

/// The DNS suffix of client identities.
const CLIENT_SUFFIX: &str = ".client.privpy";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_err(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads a PEM certificate chain.
///
/// # Errors
/// An unreadable file or one without certificates.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_err(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// Reads a PEM private key.
///
/// # Errors
/// An unreadable file or one without a key.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_err(path, e.to_string()))
}

fn roots(ca: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut store = RootCertStore::empty();
    for c in load_certs(ca)? {
        store
            .add(c)
            .map_err(|e| file_err(ca, format!("not a usable authority: {e}")))?;
    }
    Ok(Arc::new(store))
}

/// Everything a server needs for its TLS endpoints.
#[derive(Clone)]
pub struct ServerTls {
    /// Accepts other servers (client certificates from the server authority).
    pub peer_acceptor: Arc<ServerConfig>,
    /// Dials other servers.
    pub peer_connector: Arc<ClientConfig>,
    /// Accepts clients (client certificates from the client authority).
    pub client_acceptor: Arc<ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls { .. }")
    }
}

impl ServerTls {
    /// Builds the three TLS 1.3 configurations of a server.
    ///
    /// # Errors
    /// Unreadable or invalid certificates, keys or authorities.
    pub fn new(
        cert: &Path,
        key: &Path,
        server_ca: &Path,
        client_ca: &Path,
    ) -> Result<Self, TlsError> {
        let chain = load_certs(cert)?;
        let key = load_key(key)?;
        let server_roots = roots(server_ca)?;
        let client_roots = roots(client_ca)?;
        let acceptor = |roots: Arc<RootCertStore>| -> Result<Arc<ServerConfig>, TlsError> {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            Ok(Arc::new(
                ServerConfig::builder_with_provider(provider())
                    .with_protocol_versions(&[&rustls::version::TLS13])?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain.clone(), key.clone_key())?,
            ))
        };
        let peer_connector = Arc::new(
            ClientConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])?
                .with_root_certificates(server_roots.clone())
                .with_client_auth_cert(chain.clone(), key.clone_key())?,
        );
        Ok(ServerTls {
            peer_acceptor: acceptor(server_roots)?,
            peer_connector,
            client_acceptor: acceptor(client_roots)?,
        })
    }
}

/// A client's TLS configuration: trusts the server authority, presents its certificate.
///
/// # Errors
/// Unreadable or invalid files.
pub fn client_tls(
    cert: &Path,
    key: &Path,
    server_ca: &Path,
) -> Result<Arc<ClientConfig>, TlsError> {
    Ok(Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots(server_ca)?)
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
    ))
}

/// The `ServerName` to verify when dialing `role`.
pub fn dial_name(role: Role) -> ServerName<'static> {
    // "s1.privpy" etc. are valid DNS names by construction.
    ServerName::try_from(server_name(role)).unwrap_or_else(|_| unreachable!("valid DNS name"))
}

/// Whether the (already chain-verified) end-entity certificate names `dns`.
pub fn cert_names(cert: &CertificateDer<'_>, dns: &str) -> bool {
    let Ok(parsed) = ParsedCertificate::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(dns.to_string()) else {
        return false;
    };
    rustls::client::verify_server_name(&parsed, &name).is_ok()
}

/// Which accepted client a verified certificate belongs to: its one client name
/// (`<name>.client.privpy` among its DNS names), compared byte for byte with the
/// accepted names (which are lower case). A certificate with a wildcard name, with
/// two client names, or with a name in another case belongs to nobody.
pub fn client_identity<'a>(cert: &CertificateDer<'_>, accepted: &'a [String]) -> Option<&'a str> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut names = ee
        .valid_dns_names()
        .filter(|n| n.contains('*') || n.to_ascii_lowercase().ends_with(CLIENT_SUFFIX));
    let (Some(only), None) = (names.next(), names.next()) else {
        return None;
    };
    if only.contains('*') {
        return None;
    }
    accepted
        .iter()
        .find(|c| client_dns_name(c) == only)
        .map(String::as_str)
}

/// Writes a development certificate set into `dir`:
/// `server-ca.pem`, `client-ca.pem`, `{s1,s2,sa,sb}.pem/.key`, and
/// `<client>.pem/.key` for each client. Keys are ECDSA P-256, written with mode 0600
/// on Unix. **For development only**: the authorities' keys are not kept, so the set
/// cannot be extended; generate a new one instead.
///
/// # Errors
/// A bad client name, generation or file-system errors.
pub fn dev_certificates(dir: &Path, clients: &[&str]) -> Result<(), TlsError> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
    let g = |e: rcgen::Error| TlsError::Generate(e.to_string());
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e.to_string()))?;
    let write = |name: &str, text: &str, secret: bool| {
        crate::custody::write_file(&dir.join(name), text, secret)
    };
    let authority = |cn: &str| -> Result<(Issuer<'static, KeyPair>, String), TlsError> {
        let p = crate::custody::ca_params(cn)?;
        let key = KeyPair::generate().map_err(g)?;
        let pem = p.self_signed(&key).map_err(g)?.pem();
        Ok((Issuer::new(p, key), pem))
    };
    let leaf = |dns: String, ca: &Issuer<'static, KeyPair>, file: &str| -> Result<(), TlsError> {
        let mut p = CertificateParams::new(vec![dns.clone()]).map_err(g)?;
        p.distinguished_name.push(DnType::CommonName, dns);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(g)?;
        let cert = p.signed_by(&key, ca).map_err(g)?;
        write(&format!("{file}.pem"), &cert.pem(), false)?;
        write(&format!("{file}.key"), &key.serialize_pem(), true)
    };
    for c in clients {
        check_client_name(c).map_err(|m| TlsError::Generate(format!("client {c:?}: {m}")))?;
    }
    let (server_ca, server_pem) = authority("privpy development server authority")?;
    write("server-ca.pem", &server_pem, false)?;
    for role in Role::ALL {
        leaf(server_name(role), &server_ca, role.name())?;
    }
    let (client_ca, client_pem) = authority("privpy development client authority")?;
    write("client-ca.pem", &client_pem, false)?;
    for c in clients {
        leaf(client_dns_name(c), &client_ca, c)?;
    }
    Ok(())
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    fn cert_with(names: &[&str]) -> CertificateDer<'static> {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    /// One exact, lower-case client name per certificate: wildcards, other cases and
    /// certificates naming two clients belong to nobody.
    #[test]
    fn client_identities_are_exact() {
        let accepted = vec!["alice".to_string(), "bob".to_string()];
        let id = |names: &[&str]| client_identity(&cert_with(names), &accepted);
        assert_eq!(id(&["alice.client.privpy"]), Some("alice"));
        assert_eq!(id(&["bob.client.privpy", "localhost"]), Some("bob"));
        assert_eq!(id(&["*.client.privpy"]), None, "wildcard");
        assert_eq!(id(&["ALICE.client.privpy"]), None, "other case");
        assert_eq!(id(&["Alice.Client.Privpy"]), None, "other case");
        assert_eq!(
            id(&["alice.client.privpy", "bob.client.privpy"]),
            None,
            "two clients"
        );
        assert_eq!(
            id(&["alice.client.privpy", "*.client.privpy"]),
            None,
            "a wildcard too"
        );
        assert_eq!(id(&["carol.client.privpy"]), None, "not accepted");
        assert!(crate::config::check_client_name("Alice").is_err());
        assert!(crate::config::check_client_name("alice").is_ok());
    }
}
