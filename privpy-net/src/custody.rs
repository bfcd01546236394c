//! Key custody for a deployment on four hosts: every server host and every client
//! generates its own private key and a certificate request (PKCS #10); the cluster's
//! authority checks each request and signs it, and never sees a private key.
//!
//! 1. On each server host: [`request`] with [`Identity::Server`] writes
//!    `<dir>/certs/<role>.key` (mode 0600 from the first byte) and `<dir>/<role>.csr`.
//!    Each client does the same with [`Identity::Client`].
//! 2. The requests (public) go to the authority. [`Authority::open`] creates or
//!    reopens its two signing keys (servers, clients) in its own directory, and
//!    [`Authority::issue_cluster`] signs the four server requests and the clients'
//!    and writes a **bundle** with no private key in it: `certs/<name>.pem`,
//!    `certs/server-ca.pem`, `certs/client-ca.pem`, `cluster.toml` and one
//!    `<client>.toml` per client.
//! 3. The bundle is copied into each host's and client's directory, beside the key
//!    that never left it.
//!
//! The authority takes only the public key from a request. It checks the request's
//! signature (the requester holds the key) and that the request names exactly the
//! identity it is issued for: one DNS name, `s1.privpy` for server `s1`,
//! `alice.client.privpy` for client `alice`, no wildcard. Everything else in the
//! certificate (name, key usages, validity) is the authority's own choice, not the
//! request's.

use crate::dev::write_cluster_config;
use crate::tls::{TlsError, client_dns_name, server_name};
use privpy_core::transport::Role;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};

/// Who a key and a certificate are for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    /// A server of the cluster.
    Server(Role),
    /// A client, by its (lower-case) name.
    Client(String),
}

impl Identity {
    /// The certificate's only DNS name (`s1.privpy`, `alice.client.privpy`).
    pub fn dns_name(&self) -> String {
        match self {
            Identity::Server(r) => server_name(*r),
            Identity::Client(c) => client_dns_name(c),
        }
    }

    /// The file stem of its key, request and certificate (`s1`, `alice`).
    pub fn file_stem(&self) -> String {
        match self {
            Identity::Server(r) => r.name().to_string(),
            Identity::Client(c) => c.clone(),
        }
    }

    fn check(&self) -> Result<(), TlsError> {
        match self {
            Identity::Server(_) => Ok(()),
            Identity::Client(c) => crate::config::check_client_name(c)
                .map_err(|m| TlsError::Generate(format!("client {c:?}: {m}"))),
        }
    }
}

fn gen_err(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn io(path: &Path, e: std::io::Error) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writes `text` to `path`; secrets with mode 0600 from the first byte (Unix).
pub(crate) fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = o.open(path).map_err(|e| io(path, e))?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io(path, e))?;
    }
    std::io::Write::write_all(&mut f, text.as_bytes()).map_err(|e| io(path, e))
}

/// Generates `who`'s private key into `<dir>/certs/<stem>.key` and its certificate
/// request into `<dir>/<stem>.csr`, and returns the request's path. Run it on the
/// host (or client machine) that will use the key: the key never needs to move.
///
/// # Errors
/// A bad client name, an existing key (never overwritten: remove it first to
/// re-key), generation or file-system errors.
pub fn request(dir: &Path, who: &Identity) -> Result<PathBuf, TlsError> {
    who.check()?;
    let stem = who.file_stem();
    let key_path = dir.join("certs").join(format!("{stem}.key"));
    if key_path.exists() {
        return Err(TlsError::File {
            path: key_path,
            message: "a key is already here; remove it to make a new one".into(),
        });
    }
    let key = KeyPair::generate().map_err(gen_err)?;
    let dns = who.dns_name();
    let mut p = CertificateParams::new(vec![dns.clone()]).map_err(gen_err)?;
    p.distinguished_name.push(DnType::CommonName, dns);
    let csr = p.serialize_request(&key).map_err(gen_err)?;
    let csr_pem = csr.pem().map_err(gen_err)?;
    write_file(&key_path, &key.serialize_pem(), true)?;
    let csr_path = dir.join(format!("{stem}.csr"));
    write_file(&csr_path, &csr_pem, false)?;
    Ok(csr_path)
}

/// The cluster's authority: one signing key for server certificates, one for client
/// certificates, kept (mode 0600) in its own directory.
pub struct Authority {
    dir: PathBuf,
    servers: Issuer<'static, KeyPair>,
    clients: Issuer<'static, KeyPair>,
    server_pem: String,
    client_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Authority({})", self.dir.display())
    }
}

/// A CA's parameters; the same on every open, so that a reopened authority signs as
/// the certificate it published.
pub(crate) fn ca_params(cn: &str) -> Result<CertificateParams, TlsError> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(gen_err)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.distinguished_name.push(DnType::CommonName, cn);
    Ok(p)
}

const SERVER_CN: &str = "privpy server authority";
const CLIENT_CN: &str = "privpy client authority";

impl Authority {
    /// Opens the authority in `dir`, creating its keys and certificates on first use
    /// (`server-ca.key`, `client-ca.key` with mode 0600; `server-ca.pem`,
    /// `client-ca.pem`).
    ///
    /// # Errors
    /// Unreadable or malformed key files, generation or file-system errors.
    pub fn open(dir: &Path) -> Result<Authority, TlsError> {
        let one = |stem: &str, cn: &str| -> Result<(Issuer<'static, KeyPair>, String), TlsError> {
            let key_path = dir.join(format!("{stem}.key"));
            let pem_path = dir.join(format!("{stem}.pem"));
            let params = ca_params(cn)?;
            if key_path.exists() {
                let text = std::fs::read_to_string(&key_path).map_err(|e| io(&key_path, e))?;
                let key = KeyPair::from_pem(&text).map_err(|e| TlsError::File {
                    path: key_path.clone(),
                    message: e.to_string(),
                })?;
                let pem = std::fs::read_to_string(&pem_path).map_err(|e| io(&pem_path, e))?;
                Ok((Issuer::new(params, key), pem))
            } else {
                let key = KeyPair::generate().map_err(gen_err)?;
                let pem = params.self_signed(&key).map_err(gen_err)?.pem();
                write_file(&key_path, &key.serialize_pem(), true)?;
                write_file(&pem_path, &pem, false)?;
                Ok((Issuer::new(params, key), pem))
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let (servers, server_pem) = one("server-ca", SERVER_CN)?;
        let (clients, client_pem) = one("client-ca", CLIENT_CN)?;
        Ok(Authority {
            dir: dir.to_path_buf(),
            servers,
            clients,
            server_pem,
            client_pem,
        })
    }

    /// Checks the request in `csr_pem` and signs a certificate for `who` (PEM).
    ///
    /// # Errors
    /// [`TlsError::Request`] when the request does not parse, its signature does not
    /// verify, or it does not name exactly `who` (one DNS name, no wildcard).
    pub fn sign(&self, csr_pem: &str, who: &Identity) -> Result<String, TlsError> {
        who.check()?;
        let bad = |reason: String| TlsError::Request {
            identity: who.dns_name(),
            reason,
        };
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| bad(format!("not a valid, correctly signed request: {e}")))?;
        let want = who.dns_name();
        let names: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .map(|n| match n {
                SanType::DnsName(d) => d.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        if names != [want.clone()] {
            return Err(bad(format!(
                "the request names {names:?}; exactly [{want:?}] is required"
            )));
        }
        let mut p = CertificateParams::new(vec![want.clone()]).map_err(gen_err)?;
        p.distinguished_name.push(DnType::CommonName, want);
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = match who {
            Identity::Server(_) => &self.servers,
            Identity::Client(_) => &self.clients,
        };
        Ok(p.signed_by(&csr.public_key, issuer).map_err(gen_err)?.pem())
    }

    /// Signs the four servers' requests (`<requests>/{s1,s2,sa,sb}.csr`) and one per
    /// client (`<requests>/<client>.csr`), and writes the bundle into `out`:
    /// `certs/*.pem`, both CA certificates, `cluster.toml` (servers at `hosts`, in
    /// `s1, s2, sa, sb` order, ports from `base`) and `<client>.toml` per client. The
    /// bundle holds no private key; `cluster.toml` expects each host's own key at
    /// `certs/<role>.key` beside it.
    ///
    /// # Errors
    /// A missing or refused request (nothing is written then), or as
    /// [`write_cluster_config`].
    pub fn issue_cluster(
        &self,
        requests: &Path,
        out: &Path,
        hosts: [&str; 4],
        base: u16,
        clients: &[&str],
        preset: &str,
    ) -> Result<(), TlsError> {
        let mut who: Vec<Identity> = Role::ALL.into_iter().map(Identity::Server).collect();
        who.extend(clients.iter().map(|c| Identity::Client(c.to_string())));
        // Every request is checked before anything is written.
        let mut issued = Vec::new();
        for w in &who {
            let path = requests.join(format!("{}.csr", w.file_stem()));
            let pem = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            issued.push((w.file_stem(), self.sign(&pem, w)?));
        }
        let certs = out.join("certs");
        for (stem, pem) in &issued {
            write_file(&certs.join(format!("{stem}.pem")), pem, false)?;
        }
        write_file(&certs.join("server-ca.pem"), &self.server_pem, false)?;
        write_file(&certs.join("client-ca.pem"), &self.client_pem, false)?;
        write_cluster_config(out, base, clients, preset, Some(hosts))
    }
}
