//! One server of a networked cluster.
//!
//! [`start`] binds the server's peer port (and, on `S1`/`S2`, its client port) and
//! serves on its own tokio runtime until the returned [`ServerHandle`] stops it;
//! [`start_with`] does the same over [`Listeners`] bound by the caller (port 0 in the
//! tests), and [`run`] serves on the caller's runtime until a shutdown future
//! completes, then drains running jobs within a deadline (as mini-redis does).
//!
//! The code is split by concern: this module (listeners, accept loops, start and
//! shutdown), `peers.rs` (server links: accepting, dialing, connecting a job),
//! `jobs.rs` (admission and execution), `clients.rs` (the client protocol).
//!
//! A job goes like this:
//! 1. A client sends `Run` to `S1`. `S1` checks the program, the bindings of its
//!    parameters to stored inputs, the client's right to read them, and their shapes;
//!    a refusal names the problem and nothing starts.
//! 2. `S1` opens a stream for the job to `S2`, `Sa` and `Sb`; `S2` to `Sa` and `Sb`;
//!    `Sa` to `Sb`. Streams travel on long-lived links ([`crate::mux`]): one TLS 1.3
//!    connection per server pair, dialed by the lower role when first needed, whose
//!    peer was authenticated once (its certificate must name the role it claims).
//!    Every stream opens with `Hello` (the job: program, version, number format,
//!    parameters and their shapes); the accepting server checks that it has the same
//!    program version (and, on `S2`, the same inputs), then acknowledges or refuses
//!    with the reason.
//! 3. Each server runs the program ([`privpy_core::node::run_node`]) on a thread of
//!    its own over a [`NetTransport`]. When it fails (for example, a peer is lost), it
//!    sends `Abort` with the reason to every peer and drops its links, so every server
//!    stops within the timeout, with a message that names the lost peer.
//! 4. `S1` and `S2` store their output shares; `S2`, `Sa` and `Sb` report `Finished`
//!    to `S1`, which replies to the client with the outputs and everyone's traffic.
//!
//! Logs (tracing) carry job ids, names, shapes, sizes and peer roles; never share
//! bytes or values.

use crate::config::{ClusterConfig, check_name};
use crate::link::{Conn, ConnError, NetTransport};
use crate::mux::{JobLink, Link, OnOpen};
use crate::registry::{Job, PreparedCache, Program, Registry};
use crate::store::{Staged, Store, StoredInput};
use crate::tls::{ServerTls, TlsError, cert_names, client_identity, dial_name, server_name};
use crate::wire::{Control, JobSpec, Param, Refusal, RefusalKind, Reply, Request};
use privpy_core::node::{NodeInput, run_node_in};
use privpy_core::share::Share;
use privpy_core::transport::{CommStats, Role};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tracing::{debug, info, warn};

/// A server that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration lacks something this role needs.
    #[error("configuration: {0}")]
    Config(String),
    /// Certificates or keys.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The share store.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The runtime could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// Links arriving for a job, handed to its runner.
type Arrivals = mpsc::UnboundedSender<(Role, JobSpec, JobLink)>;

struct Shared {
    role: Role,
    cluster: ClusterConfig,
    registry: Registry,
    tls: ServerTls,
    store: Option<Store>,
    pending: Mutex<HashMap<u64, Arrivals>>,
    /// The links this server dialed (to the higher roles), kept across jobs.
    links: [tokio::sync::Mutex<Option<Arc<Link>>>; 4],
    /// The links the lower roles dialed to this server.
    accepted: Mutex<[Option<Arc<Link>>; 4]>,
    /// Set at shutdown: no new job is accepted.
    stopping: AtomicBool,
    rt: tokio::runtime::Handle,
    /// Job slots (`max_jobs`) and the number of run requests waiting for one.
    jobs: Arc<tokio::sync::Semaphore>,
    queued: std::sync::atomic::AtomicUsize,
    /// Jobs running on this server ([`ActiveJob`]).
    active: std::sync::atomic::AtomicUsize,
    /// Parked call and inference requests, and the batcher (`calls.rs`).
    calls: calls::Calls,
    metrics: Arc<Metrics>,
    /// Prepared weight matrices kept across jobs.
    prepared: Arc<PreparedCache>,
    /// Keys of prepared matrices every server kept in a job that succeeded (`S1`).
    confirmed: Mutex<std::collections::HashSet<String>>,
}

/// A running server. Dropping it stops the server abruptly (as [`ServerHandle::kill`]).
pub struct ServerHandle {
    role: Role,
    rt: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
    shared: Arc<Shared>,
    /// How long [`ServerHandle::shutdown`] waits for running jobs.
    drain: Duration,
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The server's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Stops accepting connections, waits for the jobs running here to finish (at
    /// most the configured `timeout_secs`), then stops.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.rt.take() {
            let shared = self.shared.clone();
            let drain = self.drain;
            rt.block_on(async move { shared.drain(drain).await });
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }

    /// The number of jobs running on this server.
    pub fn running_jobs(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// Stops at once, dropping every connection, as if the process died.
    pub fn kill(mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }

    /// Blocks until the process receives Ctrl-C (SIGINT) or SIGTERM, then shuts down.
    pub fn wait_for_signal(self) {
        if let Some(rt) = &self.rt {
            rt.block_on(async {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{SignalKind, signal};
                    match signal(SignalKind::terminate()) {
                        Ok(mut term) => {
                            tokio::select! {
                                _ = tokio::signal::ctrl_c() => {}
                                _ = term.recv() => {}
                            }
                        }
                        Err(_) => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                }
                #[cfg(not(unix))]
                let _ = tokio::signal::ctrl_c().await;
            });
        }
        info!(role = %self.role, "shutting down");
        self.shutdown();
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The sockets a server listens on: its peer port and, on `S1`/`S2`, its client port.
/// Bound before the server starts ([`start_with`], [`run`]), so that a caller (a test,
/// a supervisor handing over sockets) can bind port 0 and put the ports it got into
/// the configuration, without racing anyone for a port.
#[derive(Debug)]
pub struct Listeners {
    peer: std::net::TcpListener,
    client: Option<std::net::TcpListener>,
}

impl Listeners {
    /// Binds the addresses `cluster` gives `role` (`peer_addr`, and `client_addr` on
    /// a primary).
    ///
    /// # Errors
    /// [`ServerError::Bind`] when an address cannot be bound;
    /// [`ServerError::Config`] when a primary has no `client_addr`.
    pub fn bind(role: Role, cluster: &ClusterConfig) -> Result<Listeners, ServerError> {
        let me = cluster.server(role);
        let bind = |addr: SocketAddr| {
            std::net::TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, source })
        };
        let peer = bind(me.peer_addr)?;
        let client = match (role.is_primary(), me.client_addr) {
            (true, Some(addr)) => Some(bind(addr)?),
            (true, None) => {
                return Err(ServerError::Config(format!(
                    "[servers.{}] needs client_addr",
                    role.name()
                )));
            }
            _ => None,
        };
        Ok(Listeners { peer, client })
    }

    /// Sockets bound by the caller: the peer listener and, for `S1`/`S2`, the client
    /// listener. Their addresses must be the ones the configuration gives.
    pub fn from_std(
        peer: std::net::TcpListener,
        client: Option<std::net::TcpListener>,
    ) -> Listeners {
        Listeners { peer, client }
    }

    /// The peer listener's address.
    ///
    /// # Errors
    /// As [`std::net::TcpListener::local_addr`].
    pub fn peer_addr(&self) -> std::io::Result<SocketAddr> {
        self.peer.local_addr()
    }

    /// The client listener's address, on `S1`/`S2`.
    ///
    /// # Errors
    /// As [`std::net::TcpListener::local_addr`].
    pub fn client_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.client.as_ref().map(std::net::TcpListener::local_addr)
    }

    fn into_tokio(self) -> Result<(TcpListener, Option<TcpListener>), ServerError> {
        let conv = |l: std::net::TcpListener| -> Result<TcpListener, ServerError> {
            let addr = l
                .local_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            l.set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(l))
                .map_err(|source| ServerError::Bind { addr, source })
        };
        Ok((conv(self.peer)?, self.client.map(conv).transpose()?))
    }
}

/// Starts server `role` of `cluster` with `registry`'s programs on a runtime of its
/// own, binding the addresses the configuration gives.
///
/// # Errors
/// Missing certificate, key or data directory for this role; unreadable
/// certificates; a store that cannot be opened (for example, held by another
/// process); a port that cannot be bound.
pub fn start(
    role: Role,
    cluster: ClusterConfig,
    registry: Registry,
) -> Result<ServerHandle, ServerError> {
    let listeners = Listeners::bind(role, &cluster)?;
    start_with(role, cluster, registry, listeners)
}

/// [`start`] over already-bound listeners.
///
/// # Errors
/// As [`start`], but for binding.
pub fn start_with(
    role: Role,
    cluster: ClusterConfig,
    registry: Registry,
    listeners: Listeners,
) -> Result<ServerHandle, ServerError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("privpy-{}", role.name()))
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    let drain = cluster.timeout;
    let (stop, stop_rx) = watch::channel(false);
    let shared;
    {
        let _in_runtime = rt.enter();
        shared = prepare(role, cluster, registry)?;
        let (peer, client) = listeners.into_tokio()?;
        serve(&shared, peer, client, stop_rx);
    }
    Ok(ServerHandle {
        role,
        rt: Some(rt),
        stop,
        shared,
        drain,
    })
}

/// Serves `role` on the current tokio runtime (multi-threaded, with I/O and time
/// enabled) over already-bound `listeners`, until `shutdown` completes. Then it stops
/// accepting connections and waits up to `drain` for the jobs running on this server
/// to finish, and returns.
///
/// # Errors
/// As [`start_with`].
pub async fn run(
    role: Role,
    cluster: ClusterConfig,
    registry: Registry,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) -> Result<(), ServerError> {
    let shared = prepare(role, cluster, registry)?;
    let (peer, client) = listeners.into_tokio()?;
    let (stop, stop_rx) = watch::channel(false);
    serve(&shared, peer, client, stop_rx);
    shutdown.await;
    info!(role = %role, "shutting down: no new connections");
    let _ = stop.send(true);
    shared.drain(drain).await;
    Ok(())
}

/// Checks the role's configuration, loads its TLS identity and opens its store.
fn prepare(
    role: Role,
    cluster: ClusterConfig,
    registry: Registry,
) -> Result<Arc<Shared>, ServerError> {
    privpy_core::set_kernel_threads(cluster.kernel_threads);
    check_models(&cluster, &registry)?;
    let me = cluster.server(role).clone();
    let (cert, key) = match (&me.cert, &me.key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => {
            return Err(ServerError::Config(format!(
                "[servers.{}] needs cert and key on this host",
                role.name()
            )));
        }
    };
    let tls = ServerTls::new(&cert, &key, &cluster.server_ca, &cluster.client_ca)?;
    let store = match (&me.data_dir, role.is_primary()) {
        (Some(dir), true) => {
            let store = Store::open(dir)?;
            let swept = store.sweep(cluster.output_ttl)?;
            if swept > 0 {
                info!(role = %role, swept, "expired outputs deleted");
            }
            Some(store)
        }
        _ => None,
    };
    let cluster_jobs = cluster.max_jobs;
    Ok(Arc::new(Shared {
        role,
        cluster,
        registry,
        tls,
        store,
        pending: Mutex::new(HashMap::new()),
        links: Default::default(),
        accepted: Mutex::new(Default::default()),
        stopping: AtomicBool::new(false),
        rt: tokio::runtime::Handle::current(),
        jobs: Arc::new(tokio::sync::Semaphore::new(cluster_jobs)),
        queued: std::sync::atomic::AtomicUsize::new(0),
        active: std::sync::atomic::AtomicUsize::new(0),
        calls: calls::Calls::default(),
        metrics: Arc::new(Metrics::new()),
        prepared: Arc::new(PreparedCache::default()),
        confirmed: Mutex::new(std::collections::HashSet::new()),
    }))
}

/// Checks every `[[models]]` deployment against the registry: its program exists
/// and is row-wise in the deployment's input, and the weights bind every other
/// parameter exactly once.
fn check_models(cluster: &ClusterConfig, registry: &Registry) -> Result<(), ServerError> {
    for m in &cluster.models {
        let bad = |why: String| ServerError::Config(format!("model {:?}: {why}", m.name));
        let p = registry
            .get(&m.program)
            .ok_or_else(|| bad(format!("no program {:?} is registered", m.program)))?;
        if p.row_wise_param() != Some(m.input.as_str()) {
            return Err(bad(format!(
                "program {:?} is not declared row-wise in {:?} (Program::row_wise), so its requests cannot be batched",
                m.program, m.input
            )));
        }
        let others: Vec<&str> = p
            .params()
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != m.input)
            .collect();
        for (w, _) in &m.weights {
            if !others.contains(&w.as_str()) {
                return Err(bad(format!(
                    "program {:?} has no weight parameter {w:?}",
                    m.program
                )));
            }
        }
        for o in others {
            if !m.weights.iter().any(|(w, _)| w == o) {
                return Err(bad(format!("parameter {o:?} is bound to no weight")));
            }
        }
    }
    Ok(())
}

/// Spawns the accept loops and the sweeper on the current runtime.
fn serve(
    shared: &Arc<Shared>,
    peer: TcpListener,
    client: Option<TcpListener>,
    stop_rx: watch::Receiver<bool>,
) {
    let addrs = (
        peer.local_addr().ok(),
        client.as_ref().and_then(|c| c.local_addr().ok()),
    );
    tokio::spawn(accept_loop(shared.clone(), peer, stop_rx.clone(), false));
    if let Some(l) = client {
        tokio::spawn(accept_loop(shared.clone(), l, stop_rx.clone(), true));
    }
    if let Some(addr) = shared.cluster.server(shared.role).metrics_addr {
        match std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .and_then(TcpListener::from_std)
        {
            Ok(l) => {
                tokio::spawn(metrics::serve(shared.metrics.clone(), l, stop_rx.clone()));
            }
            Err(e) => warn!(%addr, error = %e, "metrics not served: cannot listen"),
        }
    }
    if shared.store.is_some() {
        tokio::spawn(sweeper(shared.clone(), stop_rx));
    }
    info!(role = %shared.role, peer_addr = ?addrs.0, client_addr = ?addrs.1, "server started");
}

/// Counts a running job while it lives ([`Shared::drain`] waits for none).
struct ActiveJob(Arc<Shared>);

impl ActiveJob {
    fn new(shared: &Arc<Shared>) -> ActiveJob {
        shared.active.fetch_add(1, Ordering::SeqCst);
        ActiveJob(shared.clone())
    }
}

impl Drop for ActiveJob {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    /// Refuses new jobs, waits until no job runs here (or `within` has passed),
    /// then closes the server links.
    async fn drain(&self, within: Duration) {
        self.stopping.store(true, Ordering::SeqCst);
        self.wait_idle(within).await;
        for l in &self.links {
            if let Some(l) = l.lock().await.take() {
                l.close();
            }
        }
        for l in lock(&self.accepted).iter_mut() {
            if let Some(l) = l.take() {
                l.close();
            }
        }
    }

    async fn wait_idle(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let n = self.active.load(Ordering::SeqCst);
            if n == 0 {
                return;
            }
            if tokio::time::Instant::now() >= deadline {
                warn!(role = %self.role, running = n, "jobs still running at the drain deadline");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn sweeper(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every =
        (shared.cluster.output_ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let s = shared.clone();
        let swept = tokio::task::spawn_blocking(move || {
            s.store.as_ref().map(|st| st.sweep(s.cluster.output_ttl))
        })
        .await;
        match swept {
            Ok(Some(Ok(n))) if n > 0 => info!(swept = n, "expired outputs deleted"),
            Ok(Some(Err(e))) => warn!(error = %e, "sweeping expired outputs failed"),
            _ => {}
        }
    }
}

async fn accept_loop(
    shared: Arc<Shared>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    clients: bool,
) {
    // At most max_connections open connections on this listener: one more is
    // closed at once (it costs a file descriptor for a moment, nothing more).
    let slots = Arc::new(tokio::sync::Semaphore::new(shared.cluster.max_connections));
    let mut refused = 0u64;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        match accepted {
            Ok((tcp, addr)) => {
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    refused += 1;
                    if refused.is_power_of_two() {
                        warn!(%addr, refused, "connection refused: at max_connections");
                    }
                    drop(tcp);
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                let s = shared.clone();
                if clients {
                    tokio::spawn(async move {
                        serve_client(s, tcp, addr).await;
                        drop(permit);
                    });
                } else {
                    tokio::spawn(async move {
                        accept_peer(s, tcp, addr).await;
                        drop(permit);
                    });
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The TLS handshake of an accepted connection, within `handshake_timeout`; `None`
/// (logged with `what`, the kind of connection) when it fails or takes too long.
async fn accept_tls(
    shared: &Shared,
    acceptor: Arc<rustls::ServerConfig>,
    tcp: TcpStream,
    addr: SocketAddr,
    what: &str,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let t = shared.cluster.handshake_timeout;
    match tokio::time::timeout(t, TlsAcceptor::from(acceptor).accept(tcp)).await {
        Ok(Ok(s)) => Some(s),
        // A connection closed before its first byte (a port probe, such as `dev`'s
        // readiness check) is not worth a warning.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            debug!(%addr, error = %e, "{what} closed before its TLS handshake");
            None
        }
        Ok(Err(e)) => {
            warn!(%addr, error = %e, "{what} refused: TLS handshake failed");
            None
        }
        Err(_) => {
            warn!(%addr, "{what} refused: no TLS handshake within the timeout");
            None
        }
    }
}

/// Runs `f` on this server's share store on a blocking thread.
async fn with_store<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    let s = shared.clone();
    tokio::task::spawn_blocking(move || match &s.store {
        Some(st) => f(st).map_err(storage),
        None => Err(Refusal::invalid(format!("{} stores no shares", s.role))),
    })
    .await
    .unwrap_or_else(|e| Err(Refusal::failed(e.to_string())))
}

/// Locks a mutex, recovering from poisoning (the data stays consistent: every
/// critical section here is a single map or slot update).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// A job id as 16 hex digits.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

mod calls;
mod clients;
mod jobs;
mod metrics;
mod peers;

use clients::serve_client;
use jobs::storage;
use metrics::{Metrics, ProgramLabel};
use peers::{JobDone, accept_peer, run_job};
