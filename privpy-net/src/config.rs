//! `cluster.toml` (servers) and the client's configuration file.
//!
//! ```toml
//! preset = "default"          # "fast" (Z64), "default" (Z128) or "paper" (Z256)
//! comparison = "auto"         # the default: per batch, the faster for `network`;
//!                             # or "four-party", or "garbled-circuit" (the paper's Protocol 2)
//! network = "local"           # or "lan", "wan": what "auto" chooses for
//! timeout_secs = 30           # silence limit: a peer with no frame, not even a
//!                             # heartbeat, for this long is hung or dead; a live
//!                             # peer's step may take 20 times this
//! output_ttl_secs = 86400     # unfetched outputs are deleted after this
//! max_frame_mib = 64          # largest frame accepted, and a client's largest message:
//!                             # larger uploads and fetches travel in parts, larger
//!                             # protocol steps as continuation frames
//! handshake_timeout_secs = 5  # a connection must finish TLS (and say Hello) within this
//! idle_timeout_secs = 60      # a client connection with no request for this long is closed
//! max_connections = 256       # open connections per listener; more are closed at once
//! max_jobs = 2                # jobs running at once on S1
//! quota_mib = 1024            # input shares each client may store on each primary
//! memory_budget_mib = 512     # one array's share in a job's memory, per server; larger
//!                             # inputs are used as LargeArrays (Session::large_input)
//! max_queued_jobs = 16        # jobs waiting for a slot; beyond, requests are refused as busy
//! max_job_secs = 3600         # a job running longer is stopped on every server; S1 also
//!                             # stops a job whose client disconnects
//! kernel_threads = 4          # threads for local kernels; default: the host's cores
//!                             # (`dev` writes 1: four servers on one host)
//! batch_window_ms = 2         # inference requests for one model arriving within this
//!                             # window run as one batch (S1)
//! max_batch = 64              # at most this many requests per batch
//! model_jobs = 2              # batches of one model running at once (S1); while they
//!                             # run, the next batch fills
//! max_queued_requests = 4096  # calls and inferences waiting on a primary; beyond, busy
//! request_timeout_secs = 60   # a call or inference not answered by then is refused as busy
//! server_ca = "certs/server-ca.pem"
//! client_ca = "certs/client-ca.pem"
//! clients = ["alice", "bob"]  # accepted client names (their certificates name them)
//!
//! [servers.s1]
//! peer_addr = "10.0.0.1:7101"     # server links
//! client_addr = "10.0.0.1:7201"   # clients (s1 and s2 only)
//! cert = "certs/s1.pem"
//! key = "certs/s1.key"
//! data_dir = "data/s1"            # the share store (s1 and s2 only)
//! metrics_addr = "127.0.0.1:9101" # optional: metrics (Prometheus text format, HTTP)
//! # ... [servers.s2], [servers.sa], [servers.sb]
//!
//! [[models]]                      # a deployed model: Client::infer("mnist-mlp", x)
//! name = "mnist-mlp"
//! program = "mlp_predict"         # a row-wise program (Program::row_wise)
//! input = "images"                # its parameter filled by the requests' rows
//! owner = "owner"                 # the client whose stored inputs are the weights;
//! weights = { w1 = "w1", b1 = "b1", w2 = "w2", b2 = "b2", w3 = "w3", b3 = "b3" }
//! #   every other parameter -> the owner's input; the owner grants it to each
//! #   client that may query the model (for example "alice@mlp_predict")
//! ```
//!
//! Relative paths are relative to the directory of the configuration file. A server
//! needs the addresses of all four servers but only its own certificate and key.

use privpy_core::transport::Role;
use privpy_core::{Comparison, Config, Network};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this format.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (line and column included).
        message: String,
    },
    /// A value is missing or wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads a configuration file.
fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses TOML into `T`; `path` names the file in errors.
fn parse<T: serde::de::DeserializeOwned>(text: &str, path: &Path) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The number format preset of a cluster.
pub fn preset(name: &str) -> Option<Config> {
    match name {
        "fast" => Some(Config::fast()),
        "default" => Some(Config::default()),
        "paper" => Some(Config::paper()),
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    #[serde(default = "default_preset")]
    preset: String,
    #[serde(default)]
    comparison: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default = "default_timeout")]
    timeout_secs: f64,
    #[serde(default = "default_ttl")]
    output_ttl_secs: u64,
    #[serde(default = "default_frame")]
    max_frame_mib: usize,
    #[serde(default = "default_handshake")]
    handshake_timeout_secs: f64,
    #[serde(default = "default_idle")]
    idle_timeout_secs: f64,
    #[serde(default = "default_connections")]
    max_connections: usize,
    #[serde(default = "default_jobs")]
    max_jobs: usize,
    #[serde(default = "default_quota")]
    quota_mib: usize,
    #[serde(default = "default_budget")]
    memory_budget_mib: usize,
    #[serde(default = "default_queued")]
    max_queued_jobs: usize,
    #[serde(default = "default_job_secs")]
    max_job_secs: f64,
    #[serde(default)]
    kernel_threads: Option<usize>,
    #[serde(default = "default_window")]
    batch_window_ms: f64,
    #[serde(default = "default_max_batch")]
    max_batch: usize,
    #[serde(default = "default_model_jobs")]
    model_jobs: usize,
    #[serde(default = "default_queued_requests")]
    max_queued_requests: usize,
    #[serde(default = "default_request_timeout")]
    request_timeout_secs: f64,
    #[serde(default)]
    models: Vec<RawModel>,
    server_ca: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    clients: Vec<String>,
    servers: BTreeMap<String, RawServer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    peer_addr: SocketAddr,
    client_addr: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    metrics_addr: Option<SocketAddr>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    program: String,
    input: String,
    owner: String,
    #[serde(default)]
    weights: BTreeMap<String, String>,
}

fn default_window() -> f64 {
    2.0
}
fn default_max_batch() -> usize {
    64
}
fn default_model_jobs() -> usize {
    2
}
fn default_request_timeout() -> f64 {
    60.0
}
fn default_queued_requests() -> usize {
    4096
}

fn default_handshake() -> f64 {
    5.0
}
fn default_idle() -> f64 {
    60.0
}
fn default_connections() -> usize {
    256
}
fn default_budget() -> usize {
    (privpy_core::DEFAULT_MEMORY_BUDGET >> 20) as usize
}

fn default_quota() -> usize {
    1024
}

fn default_jobs() -> usize {
    2
}
fn default_queued() -> usize {
    16
}
fn default_job_secs() -> f64 {
    3600.0
}
fn default_preset() -> String {
    "default".into()
}
fn default_timeout() -> f64 {
    30.0
}
fn default_ttl() -> u64 {
    86_400
}
fn default_frame() -> usize {
    64
}

/// One server's entry in `cluster.toml`.
#[derive(Clone, Debug)]
pub struct ServerEntry {
    /// Where the other servers connect.
    pub peer_addr: SocketAddr,
    /// Where clients connect (`S1` and `S2`).
    pub client_addr: Option<SocketAddr>,
    /// Certificate chain (PEM) of this server; needed only on its own host.
    pub cert: Option<PathBuf>,
    /// Private key (PEM, PKCS#8); needed only on its own host.
    pub key: Option<PathBuf>,
    /// Directory of the share store (`S1` and `S2`).
    pub data_dir: Option<PathBuf>,
    /// Where this server serves its metrics (Prometheus text format over HTTP).
    pub metrics_addr: Option<SocketAddr>,
}

/// The whole cluster's configuration, as every server reads it.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The number format.
    pub config: Config,
    /// The preset's name.
    pub preset: String,
    /// How long a server waits for a peer before giving up.
    pub timeout: Duration,
    /// Unfetched outputs are deleted after this.
    pub output_ttl: Duration,
    /// Largest frame body accepted, in bytes (`max_frame_mib`, default 64 MiB). On
    /// server links a larger message travels as continuation frames, up to 64 times
    /// this in all; a client's message is one frame at most (uploads and fetches
    /// larger than that travel in parts).
    pub max_frame: usize,
    /// Time a new connection has to finish its TLS handshake (and, on the peer
    /// port, its `Hello`).
    pub handshake_timeout: Duration,
    /// A client connection without a request for this long is closed.
    pub idle_timeout: Duration,
    /// Open connections per listener; further connections are closed at once.
    pub max_connections: usize,
    /// Jobs running at once (on `S1`).
    pub max_jobs: usize,
    /// Bytes of input shares (stored records) each client may keep on each primary
    /// (`quota_mib`, default 1024); an upload beyond is refused with
    /// [`crate::wire::RefusalKind::Quota`].
    pub quota: u64,
    /// Jobs waiting for a slot; further run requests are refused as busy.
    pub max_queued_jobs: usize,
    /// A job still running this long after it started is stopped on every server.
    pub max_job: Duration,
    /// Threads for this server's large local kernels (matrix products); by default
    /// the host's cores ([`privpy_core::set_kernel_threads`]).
    pub kernel_threads: usize,
    /// Authority that signs server certificates.
    pub server_ca: PathBuf,
    /// Authority that signs client certificates.
    pub client_ca: PathBuf,
    /// Accepted client names.
    pub clients: Vec<String>,
    /// Inference requests for one model arriving within this window run as one batch.
    pub batch_window: Duration,
    /// The most requests in one batch.
    pub max_batch: usize,
    /// Batches of one model running at once.
    pub model_jobs: usize,
    /// Calls and inference requests waiting on a primary; beyond, they are refused as busy.
    pub max_queued_requests: usize,
    /// A call or inference request not answered within this is refused as busy.
    pub request_timeout: Duration,
    /// Deployed models, by name.
    pub models: Vec<ModelDeployment>,
    /// The four servers, by [`Role::index`].
    pub servers: [ServerEntry; 4],
}

impl ClusterConfig {
    /// Reads and checks a `cluster.toml`.
    ///
    /// # Errors
    /// An unreadable file, invalid TOML, an unknown preset or key, a missing server,
    /// a primary server without client address or data directory, a bad client name.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Self::from_toml(&read(path)?, path.parent().unwrap_or(Path::new(".")), path)
    }

    /// Parses `text` with relative paths resolved against `base`; `path` names the
    /// file in errors.
    ///
    /// # Errors
    /// As [`ClusterConfig::from_file`].
    pub fn from_toml(text: &str, base: &Path, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawCluster = parse(text, path)?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let config = preset(&raw.preset).ok_or_else(|| {
            invalid(format!(
                "unknown preset {:?} (use \"fast\", \"default\" or \"paper\")",
                raw.preset
            ))
        })?;
        let config = match raw.comparison.as_deref() {
            None | Some("auto") => config.with_comparison(Comparison::Auto),
            Some("four-party") => config.with_comparison(Comparison::FourParty),
            Some("garbled-circuit") => config.with_comparison(Comparison::GarbledCircuit),
            Some(other) => {
                return Err(invalid(format!(
                    "unknown comparison protocol {other:?} (use \"auto\", \"four-party\" or \"garbled-circuit\")"
                )));
            }
        };
        let config = config.with_memory_budget((raw.memory_budget_mib as u64) << 20);
        let config = match raw.network.as_deref() {
            None | Some("local") => config.with_network(Network::Local),
            Some("lan") => config.with_network(Network::Lan),
            Some("wan") => config.with_network(Network::Wan),
            Some(other) => {
                return Err(invalid(format!(
                    "unknown network {other:?} (use \"local\", \"lan\" or \"wan\")"
                )));
            }
        };
        if !(raw.timeout_secs > 0.0 && raw.timeout_secs <= 86_400.0) {
            return Err(invalid(format!(
                "timeout_secs = {} must be in (0, 86400]",
                raw.timeout_secs
            )));
        }
        if raw.max_frame_mib == 0 || raw.max_frame_mib > 4095 {
            return Err(invalid(format!(
                "max_frame_mib = {} must be in 1..=4095",
                raw.max_frame_mib
            )));
        }
        for (key, v) in [
            ("handshake_timeout_secs", raw.handshake_timeout_secs),
            ("idle_timeout_secs", raw.idle_timeout_secs),
            ("max_job_secs", raw.max_job_secs),
            ("request_timeout_secs", raw.request_timeout_secs),
        ] {
            if !(v > 0.0 && v <= 86_400.0) {
                return Err(invalid(format!("{key} = {v} must be in (0, 86400]")));
            }
        }
        for (key, v, max) in [
            ("max_connections", raw.max_connections, 1_000_000),
            ("max_jobs", raw.max_jobs, 1024),
            ("max_queued_jobs", raw.max_queued_jobs, 1_000_000),
            ("quota_mib", raw.quota_mib, 1 << 30),
            ("memory_budget_mib", raw.memory_budget_mib, 1 << 30),
        ] {
            let min = usize::from(key != "max_queued_jobs");
            if v < min || v > max {
                return Err(invalid(format!("{key} = {v} must be in {min}..={max}")));
            }
        }
        for c in &raw.clients {
            check_client_name(c).map_err(|m| invalid(format!("client {c:?}: {m}")))?;
        }
        if !(raw.batch_window_ms >= 0.0 && raw.batch_window_ms <= 10_000.0) {
            return Err(invalid(format!(
                "batch_window_ms = {} must be in [0, 10000]",
                raw.batch_window_ms
            )));
        }
        for (key, v, max) in [
            ("max_batch", raw.max_batch, 1 << 20),
            ("model_jobs", raw.model_jobs, 1024),
            ("max_queued_requests", raw.max_queued_requests, 1 << 24),
        ] {
            if v < 1 || v > max {
                return Err(invalid(format!("{key} = {v} must be in 1..={max}")));
            }
        }
        let mut models: Vec<ModelDeployment> = Vec::new();
        for m in raw.models {
            check_name(&m.name).map_err(|e| invalid(format!("model {:?}: {e}", m.name)))?;
            if models.iter().any(|d| d.name == m.name) {
                return Err(invalid(format!("model {:?} is deployed twice", m.name)));
            }
            if !raw.clients.contains(&m.owner) {
                return Err(invalid(format!(
                    "model {:?}: owner {:?} is not a client of this cluster",
                    m.name, m.owner
                )));
            }
            for (p, n) in &m.weights {
                check_name(n)
                    .map_err(|e| invalid(format!("model {:?}, weight {p:?}: {e}", m.name)))?;
            }
            models.push(ModelDeployment {
                name: m.name,
                program: m.program,
                input: m.input,
                owner: m.owner,
                weights: m.weights.into_iter().collect(),
            });
        }
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let mut servers = raw.servers;
        for k in servers.keys() {
            if !Role::ALL.iter().any(|r| r.name() == k) {
                return Err(invalid(format!(
                    "unknown server [servers.{k}] (use s1, s2, sa, sb)"
                )));
            }
        }
        let mut entries = Vec::new();
        for role in Role::ALL {
            let s = servers
                .remove(role.name())
                .ok_or_else(|| invalid(format!("missing [servers.{}]", role.name())))?;
            if role.is_primary() && (s.client_addr.is_none() || s.data_dir.is_none()) {
                return Err(invalid(format!(
                    "[servers.{}] needs client_addr and data_dir",
                    role.name()
                )));
            }
            entries.push(ServerEntry {
                peer_addr: s.peer_addr,
                client_addr: s.client_addr,
                cert: s.cert.map(resolve),
                key: s.key.map(resolve),
                data_dir: s.data_dir.map(resolve),
                metrics_addr: s.metrics_addr,
            });
        }
        let servers: [ServerEntry; 4] = entries
            .try_into()
            .map_err(|_| invalid("four servers expected".into()))?;
        Ok(ClusterConfig {
            config,
            preset: raw.preset,
            timeout: Duration::from_secs_f64(raw.timeout_secs),
            output_ttl: Duration::from_secs(raw.output_ttl_secs),
            max_frame: raw.max_frame_mib << 20,
            handshake_timeout: Duration::from_secs_f64(raw.handshake_timeout_secs),
            idle_timeout: Duration::from_secs_f64(raw.idle_timeout_secs),
            max_connections: raw.max_connections,
            max_jobs: raw.max_jobs,
            quota: (raw.quota_mib as u64) << 20,
            max_queued_jobs: raw.max_queued_jobs,
            max_job: Duration::from_secs_f64(raw.max_job_secs),
            kernel_threads: match raw.kernel_threads {
                Some(n) if (1..=1024).contains(&n) => n,
                Some(n) => {
                    return Err(invalid(format!("kernel_threads = {n} must be in 1..=1024")));
                }
                None => std::thread::available_parallelism().map_or(1, usize::from),
            },
            server_ca: resolve(raw.server_ca),
            client_ca: resolve(raw.client_ca),
            clients: raw.clients,
            batch_window: Duration::from_secs_f64(raw.batch_window_ms / 1000.0),
            max_batch: raw.max_batch,
            model_jobs: raw.model_jobs,
            max_queued_requests: raw.max_queued_requests,
            request_timeout: Duration::from_secs_f64(raw.request_timeout_secs),
            models,
            servers,
        })
    }

    /// The entry of `role`.
    pub fn server(&self, role: Role) -> &ServerEntry {
        &self.servers[role.index()]
    }
}

/// A model deployed for [`crate::client::Client::infer`]: a row-wise program whose
/// `input` parameter the requests fill and whose other parameters are `owner`'s
/// stored inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDeployment {
    /// The name clients ask for.
    pub name: String,
    /// The registered program that computes it.
    pub program: String,
    /// The program's parameter filled by the requests' rows.
    pub input: String,
    /// The client whose stored inputs are the weights.
    pub owner: String,
    /// Every other parameter of the program → the name of the owner's stored input.
    pub weights: Vec<(String, String)>,
}

/// Checks a client name: a [`check_name`] name in lower case (names are compared
/// byte for byte with certificates, so one spelling per client).
///
/// # Errors
/// What is wrong with it.
pub fn check_client_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("client names are lower case".into());
    }
    Ok(())
}

/// A name usable for a client, an input or an output: 1–64 characters from
/// `[A-Za-z0-9_.-]`, not starting with `.` or `-`.
///
/// # Errors
/// What is wrong with the name.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("names have 1 to 64 characters".into());
    }
    if name.starts_with(['.', '-']) {
        return Err("names do not start with '.' or '-'".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "{c:?} is not allowed in names (use A-Z a-z 0-9 _ . -)"
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: String,
    server_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    s1: SocketAddr,
    s2: SocketAddr,
    #[serde(default = "default_client_timeout")]
    timeout_secs: f64,
    #[serde(default = "default_frame")]
    max_frame_mib: usize,
}

fn default_client_timeout() -> f64 {
    600.0
}

/// A client's configuration file:
///
/// ```toml
/// name = "alice"
/// server_ca = "certs/server-ca.pem"
/// cert = "certs/alice.pem"
/// key = "certs/alice.key"
/// s1 = "127.0.0.1:7201"
/// s2 = "127.0.0.1:7202"
/// timeout_secs = 600     # longest wait for a reply (a run waits for the program)
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The client's name (its certificate is issued for `<name>.client.privpy`).
    pub name: String,
    /// Authority that signs the servers' certificates.
    pub server_ca: PathBuf,
    /// The client's certificate chain (PEM).
    pub cert: PathBuf,
    /// The client's private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// `S1`'s client address.
    pub s1: SocketAddr,
    /// `S2`'s client address.
    pub s2: SocketAddr,
    /// Longest wait for a reply.
    pub timeout: Duration,
    /// Largest frame accepted.
    pub max_frame: usize,
}

impl ClientConfig {
    /// Reads a client configuration file.
    ///
    /// # Errors
    /// An unreadable file, invalid TOML, a bad name or timeout.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let raw: RawClient = parse(&read(path)?, path)?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        check_client_name(&raw.name).map_err(|m| invalid(format!("name {:?}: {m}", raw.name)))?;
        if !(raw.timeout_secs > 0.0 && raw.timeout_secs <= 86_400.0) {
            return Err(invalid("timeout_secs must be in (0, 86400]".into()));
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        Ok(ClientConfig {
            name: raw.name,
            server_ca: resolve(raw.server_ca),
            cert: resolve(raw.cert),
            key: resolve(raw.key),
            s1: raw.s1,
            s2: raw.s2,
            timeout: Duration::from_secs_f64(raw.timeout_secs),
            max_frame: raw.max_frame_mib.clamp(1, 4095) << 20,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
preset = "fast"
server_ca = "ca.pem"
client_ca = "cca.pem"
clients = ["alice"]
[servers.s1]
peer_addr = "127.0.0.1:1"
client_addr = "127.0.0.1:2"
data_dir = "d1"
[servers.s2]
peer_addr = "127.0.0.1:3"
client_addr = "127.0.0.1:4"
data_dir = "/abs/d2"
[servers.sa]
peer_addr = "127.0.0.1:5"
[servers.sb]
peer_addr = "127.0.0.1:6"
"#;

    #[test]
    fn parses_and_resolves_paths() {
        let c = ClusterConfig::from_toml(GOOD, Path::new("/etc/p"), Path::new("c.toml")).unwrap();
        assert_eq!(c.config, Config::fast());
        assert_eq!(c.server_ca, Path::new("/etc/p/ca.pem"));
        assert_eq!(
            c.server(Role::S1).data_dir.as_deref(),
            Some(Path::new("/etc/p/d1"))
        );
        assert_eq!(
            c.server(Role::S2).data_dir.as_deref(),
            Some(Path::new("/abs/d2"))
        );
        assert_eq!(c.timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_files_name_the_problem() {
        let err = |t: &str| {
            ClusterConfig::from_toml(t, Path::new("."), Path::new("c.toml"))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&GOOD.replace("fast", "turbo")).contains("unknown preset"));
        assert!(
            err(&GOOD.replace("[servers.sb]\npeer_addr = \"127.0.0.1:6\"", ""))
                .contains("missing [servers.sb]")
        );
        assert!(
            err(&GOOD.replace("data_dir = \"d1\"", "")).contains("needs client_addr and data_dir")
        );
        assert!(err(&GOOD.replace("\"alice\"", "\"al ice\"")).contains("not allowed"));
        assert!(err(&GOOD.replace("127.0.0.1:1", "nowhere")).contains("c.toml"));
        assert!(err(&format!("{GOOD}\nextra = 1")).contains("extra"));
    }

    #[test]
    fn names() {
        assert!(check_name("x_alice-1.v2").is_ok());
        for bad in ["", "-x", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
