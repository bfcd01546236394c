//! One server of a networked cluster.
//!
//! [`start`] binds the server's peer port (and, on `S1`/`S2`, its client port) and
//! serves on its own tokio runtime until the returned [`ServerHandle`] stops it.
//!
//! A job goes like this:
//! 1. A client sends `Run` to `S1`. `S1` checks the program, the bindings of its
//!    parameters to stored inputs, the client's right to read them, and their shapes;
//!    a refusal names the problem and nothing starts.
//! 2. `S1` dials `S2`, `Sa` and `Sb`; `S2` dials `Sa` and `Sb`; `Sa` dials `Sb` (one
//!    TLS 1.3 connection per server pair, the lower role dials). Every connection
//!    opens with `Hello` (the job: program, version, number format, parameters and
//!    their shapes); the accepting server checks the dialer's certificate names the
//!    role it claims and that it has the same program version (and, on `S2`, the same
//!    inputs), then acknowledges or refuses with the reason.
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
use crate::registry::{Job, Program, Registry};
use crate::store::{Store, StoredInput};
use crate::tls::{ServerTls, TlsError, cert_names, client_identity, dial_name, server_name};
use crate::wire::{Control, JobSpec, Param, Refusal, RefusalKind, Reply, Request};
use privpy_core::node::{NodeInput, run_node};
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
type Arrivals = mpsc::UnboundedSender<(Role, JobSpec, Conn)>;

struct Shared {
    role: Role,
    cluster: ClusterConfig,
    registry: Registry,
    tls: ServerTls,
    store: Option<Store>,
    pending: Mutex<HashMap<u64, Arrivals>>,
    rt: tokio::runtime::Handle,
    /// Job slots (`max_jobs`) and the number of run requests waiting for one.
    jobs: Arc<tokio::sync::Semaphore>,
    queued: std::sync::atomic::AtomicUsize,
}

/// A running server. Dropping it stops the server abruptly (as [`ServerHandle::kill`]).
pub struct ServerHandle {
    role: Role,
    rt: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
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

    /// Stops accepting connections and gives running work a second to finish.
    pub fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
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

/// Starts server `role` of `cluster` with `registry`'s programs.
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
    privpy_core::set_kernel_threads(cluster.kernel_threads);
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
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(format!("privpy-{}", role.name()))
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    let peer_listener = rt
        .block_on(TcpListener::bind(me.peer_addr))
        .map_err(|source| ServerError::Bind {
            addr: me.peer_addr,
            source,
        })?;
    let client_listener = match (role.is_primary(), me.client_addr) {
        (true, Some(addr)) => Some(
            rt.block_on(TcpListener::bind(addr))
                .map_err(|source| ServerError::Bind { addr, source })?,
        ),
        _ => None,
    };
    let (stop, stop_rx) = watch::channel(false);
    let cluster_jobs = cluster.max_jobs;
    let shared = Arc::new(Shared {
        role,
        cluster,
        registry,
        tls,
        store,
        pending: Mutex::new(HashMap::new()),
        rt: rt.handle().clone(),
        jobs: Arc::new(tokio::sync::Semaphore::new(cluster_jobs)),
        queued: std::sync::atomic::AtomicUsize::new(0),
    });
    rt.spawn(accept_loop(
        shared.clone(),
        peer_listener,
        stop_rx.clone(),
        false,
    ));
    if let Some(l) = client_listener {
        rt.spawn(accept_loop(shared.clone(), l, stop_rx.clone(), true));
    }
    if shared.store.is_some() {
        rt.spawn(sweeper(shared.clone(), stop_rx));
    }
    info!(role = %role, peer_addr = %me.peer_addr, client_addr = ?me.client_addr, "server started");
    Ok(ServerHandle {
        role,
        rt: Some(rt),
        stop,
    })
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

// ---------------------------------------------------------------- peers

async fn accept_peer(shared: Arc<Shared>, tcp: TcpStream, addr: SocketAddr) {
    let t = shared.cluster.handshake_timeout;
    let acceptor = TlsAcceptor::from(shared.tls.peer_acceptor.clone());
    let tls = match tokio::time::timeout(t, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(%addr, error = %e, "server link refused: TLS handshake failed");
            return;
        }
        Err(_) => {
            warn!(%addr, "server link refused: no TLS handshake within the timeout");
            return;
        }
    };
    let mut conn = Conn::new(TlsStream::Server(tls), shared.cluster.max_frame);
    let (from, job) = match conn.recv(t).await {
        Ok(Control::Hello { from, job }) => (from, job),
        Ok(_) => {
            warn!(%addr, "server link refused: first message is not Hello");
            refuse_peer(
                conn,
                Refusal::invalid("the first message on a server link must be Hello"),
            )
            .await;
            return;
        }
        Err(e) => {
            warn!(%addr, error = %e, "server link refused: bad Hello");
            return;
        }
    };
    let me = shared.role;
    let named = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .is_some_and(|c| cert_names(c, &server_name(from)));
    if !named {
        warn!(%addr, claimed = %from, "server link refused: certificate does not name the claimed role");
        refuse_peer(
            conn,
            Refusal::new(
                RefusalKind::Denied,
                format!(
                    "your certificate is not issued to {from} ({})",
                    server_name(from)
                ),
            ),
        )
        .await;
        return;
    }
    if from >= me {
        warn!(%addr, %from, "server link refused: only lower roles dial");
        refuse_peer(
            conn,
            Refusal::invalid(format!("{from} must not dial {me}; the lower role dials")),
        )
        .await;
        return;
    }
    let s = shared.clone();
    let job2 = job.clone();
    let check = tokio::task::spawn_blocking(move || s.check_job(&job2)).await;
    let check = check.unwrap_or_else(|_| Err(Refusal::failed("the check panicked")));
    if let Err(reason) = check {
        warn!(job = %hex(job.id), program = %job.program, %from, %reason, "job refused");
        refuse_peer(conn, reason).await;
        return;
    }
    if conn.send(&Control::HelloAck(Ok(()))).await.is_err() {
        return;
    }
    debug!(job = %hex(job.id), %from, "server link accepted");
    let tx = {
        let mut pending = match shared.pending.lock() {
            Ok(p) => p,
            Err(p) => p.into_inner(),
        };
        match pending.get(&job.id) {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                pending.insert(job.id, tx.clone());
                let s = shared.clone();
                let j = job.clone();
                tokio::spawn(async move {
                    let id = j.id;
                    match run_job(s, j, rx, None).await {
                        Ok(_) => info!(job = %hex(id), "job finished"),
                        Err(reason) => warn!(job = %hex(id), %reason, "job failed"),
                    }
                });
                tx
            }
        }
    };
    let _ = tx.send((from, job, conn));
}

async fn refuse_peer(mut conn: Conn, reason: Refusal) {
    let _ = conn.send(&Control::HelloAck(Err(reason))).await;
    conn.close().await;
}

async fn dial(shared: Arc<Shared>, peer: Role, job: JobSpec) -> Result<Conn, Refusal> {
    let t = shared.cluster.timeout;
    let addr = shared.cluster.server(peer).peer_addr;
    let connector = TlsConnector::from(shared.tls.peer_connector.clone());
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| Refusal::failed(format!("cannot connect to {peer} at {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = connector.connect(dial_name(peer), tcp).await.map_err(|e| {
            Refusal::failed(format!("TLS handshake with {peer} at {addr} failed: {e}"))
                .lost(Some(peer))
        })?;
        let mut conn = Conn::new(TlsStream::Client(tls), shared.cluster.max_frame);
        conn.send(&Control::Hello {
            from: shared.role,
            job,
        })
        .await
        .map_err(|e| Refusal::failed(format!("{peer}: {e}")))?;
        match conn.recv(t).await {
            Ok(Control::HelloAck(Ok(()))) => Ok(conn),
            Ok(Control::HelloAck(Err(r))) => Err(Refusal::new(
                r.kind,
                format!("{peer} refused the job: {}", r.reason),
            )),
            Ok(_) => Err(Refusal::failed(format!(
                "{peer} answered Hello with something else"
            ))),
            Err(e) => Err(Refusal::failed(format!(
                "{peer} did not acknowledge the job: {e}"
            ))),
        }
    };
    tokio::time::timeout(t, attempt)
        .await
        .map_err(|_| Refusal::failed(format!("{peer} at {addr} did not answer within {t:?}")))?
}

struct JobDone {
    outputs: Vec<(String, String, Vec<usize>)>,
    stats: [CommStats; 4],
}

/// Connects the job's links, runs the program, stores outputs, reports.
async fn run_job(
    shared: Arc<Shared>,
    job: JobSpec,
    mut incoming: mpsc::UnboundedReceiver<(Role, JobSpec, Conn)>,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<JobDone, Refusal> {
    let started = std::time::Instant::now();
    let me = shared.role;
    let t = shared.cluster.timeout;
    info!(job = %hex(job.id), program = %job.program, client = %job.client, "job starting");
    let mut dials = tokio::task::JoinSet::new();
    for peer in Role::ALL.into_iter().filter(|&p| p > me) {
        let s = shared.clone();
        let j = job.clone();
        dials.spawn(async move { (peer, dial(s, peer, j).await) });
    }
    let mut conns: [Option<Conn>; 4] = Default::default();
    let deadline = tokio::time::Instant::now() + t;
    let mut failure = None;
    let missing = |conns: &[Option<Conn>; 4]| -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|&p| p < me && conns[p.index()].is_none())
            .collect()
    };
    while failure.is_none() && !missing(&conns).is_empty() {
        match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some((from, spec, conn))) => {
                if spec != job {
                    failure = Some(Refusal::failed(format!(
                        "{from} describes job {} differently from the first server that connected",
                        hex(job.id)
                    )));
                }
                conns[from.index()] = Some(conn);
            }
            Ok(None) | Err(_) => {
                failure = Some(Refusal::failed(format!(
                    "no connection from {:?} within {t:?}",
                    missing(&conns)
                )));
            }
        }
    }
    if let Ok(mut p) = shared.pending.lock() {
        p.remove(&job.id);
    }
    while let Some(r) = dials.join_next().await {
        match r {
            Ok((peer, Ok(conn))) => conns[peer.index()] = Some(conn),
            Ok((_, Err(e))) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(Refusal::failed(format!("dialing failed: {e}")));
            }
        }
    }
    if let Some(reason) = failure {
        for c in conns.into_iter().flatten() {
            c.close().await;
        }
        return Err(reason);
    }
    let transport = NetTransport::new(me, conns, t, &shared.rt)
        .with_limits(started + shared.cluster.max_job, cancel);
    let s = shared.clone();
    tokio::task::spawn_blocking(move || s.execute(job, transport))
        .await
        .map_err(|e| Refusal::failed(format!("the job's thread failed: {e}")))?
}

impl Shared {
    /// Whether this server can take part in `job` (run by the accepting side of a link).
    fn check_job(&self, job: &JobSpec) -> Result<(), Refusal> {
        let me = self.role;
        let program = self
            .registry
            .get(&job.program)
            .ok_or_else(|| Refusal::invalid(format!("{me} has no program {:?}", job.program)))?;
        if program.version() != job.version {
            return Err(Refusal::invalid(format!(
                "program {:?}: {me} runs version {:?}, the job asks for version {:?}; all four servers must run the same version",
                job.program,
                program.version(),
                job.version
            )));
        }
        if job.config != self.cluster.config {
            return Err(Refusal::invalid(format!(
                "{me} computes with preset {:?} ({:?}), the job with {:?}",
                self.cluster.preset, self.cluster.config, job.config
            )));
        }
        if !self.cluster.clients.contains(&job.client) {
            return Err(Refusal::new(
                RefusalKind::Denied,
                format!("{me} does not accept client {:?}", job.client),
            ));
        }
        if job.params.len() != program.params().len() {
            return Err(Refusal::invalid(format!(
                "program {:?} takes {} inputs, the job binds {}",
                job.program,
                program.params().len(),
                job.params.len()
            )));
        }
        for p in &job.params {
            program
                .check_shape(&p.name, &p.shape)
                .map_err(Refusal::invalid)?;
            if p.tags.len() != p.sources.len() {
                return Err(Refusal::invalid(format!(
                    "parameter {:?}: {} sources but {} upload tags",
                    p.name,
                    p.sources.len(),
                    p.tags.len()
                )));
            }
        }
        if program.resolve_args(&job.args).map_err(Refusal::invalid)? != job.args {
            return Err(Refusal::invalid(format!(
                "the job's arguments do not match {me}'s program declaration"
            )));
        }
        Self::admit(program, &job.params, &job.args)?;
        if me.is_primary() {
            let bindings: Vec<(String, Vec<String>)> = job
                .params
                .iter()
                .map(|p| (p.name.clone(), p.sources.clone()))
                .collect();
            let mine = self.resolve(program, &job.client, &bindings)?;
            for (theirs, mine) in job.params.iter().zip(&mine) {
                for ((src, t), m) in theirs.sources.iter().zip(&theirs.tags).zip(&mine.tags) {
                    if t != m {
                        return Err(stale(src));
                    }
                }
                if theirs.shape != mine.shape {
                    return Err(stale(&theirs.sources.join(", ")));
                }
            }
        }
        Ok(())
    }

    /// Checks a run request against the program and the store; the job's parameters.
    fn resolve(
        &self,
        program: &Program,
        client: &str,
        bindings: &[(String, Vec<String>)],
    ) -> Result<Vec<Param>, Refusal> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| Refusal::invalid(format!("{} has no share store", self.role)))?;
        for (name, _) in bindings {
            if !program.params().iter().any(|(p, _)| p == name) {
                return Err(Refusal::invalid(format!(
                    "program {:?} has no input {name:?} (its inputs: {})",
                    program.name(),
                    program
                        .params()
                        .iter()
                        .map(|(p, _)| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let mut params = Vec::new();
        for (pname, _) in program.params() {
            let mut found = bindings.iter().filter(|(n, _)| n == pname);
            let (Some((_, sources)), None) = (found.next(), found.next()) else {
                return Err(Refusal::invalid(format!(
                    "bind input {pname:?} of program {:?} exactly once",
                    program.name()
                )));
            };
            if sources.is_empty() {
                return Err(Refusal::invalid(format!(
                    "input {pname:?} is bound to no stored input"
                )));
            }
            let mut shapes = Vec::new();
            let mut tags = Vec::new();
            let mut qualified = Vec::new();
            for asked in sources {
                let src = qualify(client, asked)?;
                let inp = store.input(&src).map_err(storage)?;
                // A missing input and another client's input get the same answer:
                // a refusal reveals nothing about other clients' data.
                let inp = match inp {
                    Some(i) if i.usable_by(client, program.name(), program.version()) => i,
                    _ => {
                        return Err(Refusal::new(
                            RefusalKind::NotFound,
                            format!("no input named {asked:?} that {client} may use"),
                        ));
                    }
                };
                shapes.push(inp.share.shape().to_vec());
                tags.push(inp.tag);
                qualified.push(src);
            }
            let shape = if shapes.len() == 1 {
                shapes.remove(0)
            } else {
                let trailing = shapes[0].get(1..).map(<[usize]>::to_vec);
                let ok = shapes
                    .iter()
                    .all(|s| !s.is_empty() && s.get(1..).map(<[usize]>::to_vec) == trailing);
                if !ok {
                    return Err(Refusal::invalid(format!(
                        "the inputs bound to {pname:?} cannot be stacked by rows: shapes {shapes:?}"
                    )));
                }
                let mut s = shapes[0].clone();
                s[0] = shapes.iter().map(|s| s[0]).sum();
                s
            };
            program
                .check_shape(pname, &shape)
                .map_err(Refusal::invalid)?;
            params.push(Param {
                name: pname.clone(),
                sources: qualified,
                shape,
                tags,
            });
        }
        Ok(params)
    }

    /// The program's admission checks on a job's shapes and arguments.
    fn admit(program: &Program, params: &[Param], args: &[(String, f64)]) -> Result<(), Refusal> {
        let shapes: Vec<(String, Vec<usize>)> = params
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        program
            .admit(&shapes, args)
            .map_err(|reason| Refusal::invalid(format!("program {:?}: {reason}", program.name())))
    }

    /// Runs this server's part of the job (on a blocking thread).
    fn execute(&self, job: JobSpec, transport: NetTransport) -> Result<JobDone, Refusal> {
        let me = self.role;
        let t = self.cluster.timeout;
        let keep = transport.clone();
        let fail = |reason: Refusal| {
            keep.abort_all(&reason.reason, reason.lost);
            Err(reason)
        };
        let program = match self.registry.get(&job.program) {
            Some(p) => p.body(),
            None => {
                return fail(Refusal::invalid(format!(
                    "{me} has no program {:?}",
                    job.program
                )));
            }
        };
        let inputs = match self.load_inputs(&job) {
            Ok(i) => i,
            Err(e) => return fail(e),
        };
        let ctx = Job {
            id: job.id,
            client: job.client.clone(),
            args: job.args.clone(),
        };
        let body = |s: &privpy_core::Session| program(s, &ctx);
        let result = run_node(
            me,
            job.config,
            Box::new(transport),
            inputs,
            self.cluster.clients.clone(),
            &body,
        );
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let lost = match &e {
                    privpy_core::Error::PeerLost { peer, .. } if *peer != me => Some(*peer),
                    _ => None,
                };
                return fail(Refusal::failed(e.to_string()).lost(lost));
            }
        };
        if let Some(store) = &self.store {
            let outs: Vec<(String, String, Share)> = result
                .outputs
                .iter()
                .map(|o| (o.client.clone(), o.name.clone(), o.share.clone()))
                .collect();
            if let Err(e) = store.put_outputs(job.id, &outs) {
                let reason = format!("{me} could not store the outputs: {e}");
                if me != Role::S1 {
                    let _ = keep.send_control(Role::S1, &Control::Finished(Err(reason.clone())));
                }
                return Err(Refusal::new(RefusalKind::Storage, reason));
            }
        }
        let outputs = result
            .outputs
            .iter()
            .map(|o| (o.client.clone(), o.name.clone(), o.share.shape().to_vec()))
            .collect();
        let mut stats: [CommStats; 4] = Default::default();
        stats[me.index()] = result.stats.clone();
        if me != Role::S1 {
            let _ = keep.send_control(Role::S1, &Control::Finished(Ok(result.stats)));
            return Ok(JobDone { outputs, stats });
        }
        for peer in [Role::S2, Role::Sa, Role::Sb] {
            match keep.recv_control(peer, t) {
                Ok(Control::Finished(Ok(s))) => stats[peer.index()] = s,
                Ok(Control::Finished(Err(r))) => {
                    return Err(Refusal::failed(format!("{peer}: {r}")));
                }
                Ok(Control::Abort { reason, culprit }) => {
                    return Err(Refusal::failed(format!("{peer}: {reason}")).lost(culprit));
                }
                Ok(_) => {
                    return Err(Refusal::failed(format!(
                        "{peer} sent an unexpected message at the end of the job"
                    )));
                }
                Err(e) => {
                    return Err(
                        Refusal::failed(format!("{peer} did not finish: {e}")).lost(Some(e.peer()))
                    );
                }
            }
        }
        Ok(JobDone { outputs, stats })
    }

    /// This server's inputs for `job`: its stored shares (on `S1`, `S2`), checked
    /// against the upload tags the job was admitted with, or the shapes.
    fn load_inputs(&self, job: &JobSpec) -> Result<BTreeMap<String, NodeInput>, Refusal> {
        let mut inputs = BTreeMap::new();
        for p in &job.params {
            let input = match &self.store {
                Some(store) => {
                    let mut parts = Vec::new();
                    for (src, &tag) in p.sources.iter().zip(&p.tags) {
                        let inp = store.input(src).map_err(storage)?;
                        match inp {
                            // Replaced since admission, or lost: never mix uploads.
                            Some(i) if i.tag == tag => parts.push(i.share),
                            _ => return Err(stale(src)),
                        }
                    }
                    let share = if parts.len() == 1 {
                        parts.remove(0)
                    } else {
                        Share::concat_rows(&parts).map_err(|e| Refusal::invalid(e.to_string()))?
                    };
                    if share.shape() != p.shape.as_slice() {
                        return Err(stale(&p.sources.join(", ")));
                    }
                    NodeInput::Share(share)
                }
                None => NodeInput::Shape(p.shape.clone()),
            };
            inputs.insert(p.name.clone(), input);
        }
        Ok(inputs)
    }
}

/// A binding's input name in its owner's namespace: `x` is the client's own
/// (`client/x`), `owner/x` another client's.
fn qualify(client: &str, src: &str) -> Result<String, Refusal> {
    let bad = |m: String| Refusal::invalid(format!("input name {src:?}: {m}"));
    match src.split_once('/') {
        None => {
            check_name(src).map_err(bad)?;
            Ok(format!("{client}/{src}"))
        }
        Some((owner, name)) => {
            check_name(owner).map_err(bad)?;
            check_name(name).map_err(bad)?;
            Ok(src.to_string())
        }
    }
}

/// The refusal for shares of one input that come from different uploads.
fn stale(input: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Stale,
        format!(
            "S1 and S2 hold shares of input {input:?} from different uploads (an upload reached only one of them): re-upload it"
        ),
    )
}

fn storage(e: crate::store::StoreError) -> Refusal {
    Refusal::new(RefusalKind::Storage, e.to_string())
}

// ---------------------------------------------------------------- clients

async fn serve_client(shared: Arc<Shared>, tcp: TcpStream, addr: SocketAddr) {
    let t = shared.cluster.handshake_timeout;
    let acceptor = TlsAcceptor::from(shared.tls.client_acceptor.clone());
    let tls = match tokio::time::timeout(t, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            warn!(%addr, error = %e, "client refused: TLS handshake failed");
            return;
        }
        Err(_) => {
            warn!(%addr, "client refused: no TLS handshake within the timeout");
            return;
        }
    };
    let mut conn = Conn::new(TlsStream::Server(tls), shared.cluster.max_frame);
    let client = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| client_identity(c, &shared.cluster.clients))
        .map(str::to_string);
    let Some(client) = client else {
        warn!(%addr, "client refused: the certificate names no accepted client");
        // Answer its first request (an unsolicited reply could be lost when the
        // client writes into the closed connection).
        let _ = conn.recv(t).await;
        let _ = conn
            .send(&Control::Reply(Reply::Refused(Refusal::new(
                RefusalKind::Denied,
                "unknown client: the certificate names none of the clients this cluster accepts",
            ))))
            .await;
        conn.close().await;
        return;
    };
    info!(%client, %addr, "client connected");
    let idle = shared.cluster.idle_timeout;
    loop {
        let req = match conn.recv(idle).await {
            Ok(Control::Request(r)) => r,
            Ok(_) => {
                warn!(%client, "client sent a message that is not a request");
                let _ = conn
                    .send(&Control::Reply(Reply::Refused(Refusal::invalid(
                        "expected a request",
                    ))))
                    .await;
                break;
            }
            Err(ConnError::Closed) => break,
            // Idle for idle_timeout: close quietly (the client reconnects).
            Err(ConnError::Timeout(_)) => {
                debug!(%client, "idle client connection closed");
                break;
            }
            Err(ConnError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                debug!(%client, "client left without closing TLS");
                break;
            }
            Err(e) => {
                warn!(%client, error = %e, "client connection dropped");
                let _ = conn
                    .send(&Control::Reply(Reply::Refused(Refusal::invalid(format!(
                        "bad request: {e}"
                    )))))
                    .await;
                break;
            }
        };
        debug!(%client, request = ?req, "request");
        // A client sends nothing while its request runs: anything it does on the
        // connection (normally closing it) cancels a running job.
        let cancel = Arc::new(AtomicBool::new(false));
        let reply = {
            let work = handle_request(&shared, &client, req, cancel.clone());
            tokio::pin!(work);
            let mut probe = [0u8; 1];
            tokio::select! {
                reply = &mut work => reply,
                _ = tokio::io::AsyncReadExt::read(conn.stream_mut(), &mut probe) => {
                    cancel.store(true, Ordering::Relaxed);
                    info!(%client, "client disconnected during a request; its job is cancelled");
                    // Let the job stop (it releases its slot when it does).
                    let _ = work.await;
                    break;
                }
            }
        };
        if let Reply::Refused(reason) = &reply {
            warn!(%client, %reason, "request refused");
        }
        if conn.send(&Control::Reply(reply)).await.is_err() {
            break;
        }
    }
    conn.close().await;
}

async fn handle_request(
    shared: &Arc<Shared>,
    client: &str,
    req: Request,
    cancel: Arc<AtomicBool>,
) -> Reply {
    let me = shared.role;
    match req {
        Request::Info => Reply::Info {
            role: me,
            config: shared.cluster.config,
            client: client.to_string(),
            programs: shared
                .registry
                .iter()
                .map(|p| (p.name().to_string(), p.version().to_string()))
                .collect(),
        },
        Request::Upload {
            name,
            tag,
            readers,
            ring,
            shape,
            bytes,
        } => {
            if let Err(m) = check_name(&name) {
                return Reply::Refused(Refusal::invalid(format!("input name {name:?}: {m}")));
            }
            for r in &readers {
                let grant = match crate::store::Grant::parse(r) {
                    Ok(g) => g,
                    Err(m) => return Reply::Refused(Refusal::invalid(m)),
                };
                if !shared.cluster.clients.iter().any(|c| c == grant.client) {
                    return Reply::Refused(Refusal::invalid(format!(
                        "reader {:?} is not a client of this cluster",
                        grant.client
                    )));
                }
                if let Some(p) = grant.program
                    && shared.registry.get(p).is_none()
                {
                    return Reply::Refused(Refusal::invalid(format!(
                        "grant {r:?}: this cluster has no program {p:?}"
                    )));
                }
            }
            if ring != shared.cluster.config.ring() {
                return Reply::Refused(Refusal::invalid(format!(
                    "a share of {ring:?}, but the cluster computes in {:?} (preset {:?})",
                    shared.cluster.config.ring(),
                    shared.cluster.preset
                )));
            }
            let share = match Share::from_bytes(ring, &shape, &bytes) {
                Ok(s) => s,
                Err(e) => return Reply::Refused(Refusal::invalid(format!("input {name:?}: {e}"))),
            };
            let s = shared.clone();
            let owner = client.to_string();
            // Inputs live in their owner's namespace: "alice/x".
            let n = format!("{client}/{name}");
            let stored = tokio::task::spawn_blocking(move || match &s.store {
                Some(st) => st
                    .put_input(
                        &n,
                        &StoredInput {
                            owner,
                            tag,
                            readers,
                            share,
                        },
                    )
                    .map_err(|e| match e {
                        // The same answer as for any name this client may not use.
                        crate::store::StoreError::NotOwner { name, .. } => Refusal::new(
                            RefusalKind::Denied,
                            format!("the name {name:?} is taken: choose another"),
                        ),
                        e => storage(e),
                    }),
                None => Err(Refusal::invalid(format!("{} stores no shares", s.role))),
            })
            .await
            .unwrap_or_else(|e| Err(Refusal::failed(e.to_string())));
            match stored {
                Ok(()) => {
                    info!(%client, input = %name, ?shape, "input stored");
                    Reply::Uploaded
                }
                Err(e) => Reply::Refused(e),
            }
        }
        Request::Run {
            program,
            bindings,
            args,
        } => {
            if me != Role::S1 {
                return Reply::Refused(Refusal::invalid(format!("send Run to S1, not {me}")));
            }
            let Some(p) = shared.registry.get(&program).cloned() else {
                return Reply::Refused(Refusal::invalid(format!("S1 has no program {program:?}")));
            };
            let args = match p.resolve_args(&args) {
                Ok(a) => a,
                Err(e) => return Reply::Refused(Refusal::invalid(e)),
            };
            let s = shared.clone();
            let c = client.to_string();
            let a = args.clone();
            let params = tokio::task::spawn_blocking(move || {
                let params = s.resolve(&p, &c, &bindings)?;
                Shared::admit(&p, &params, &a)?;
                Ok(params)
            })
            .await
            .unwrap_or_else(|e| Err(Refusal::failed(e.to_string())));
            let params = match params {
                Ok(p) => p,
                Err(e) => return Reply::Refused(e),
            };
            let mut id = [0u8; 8];
            if getrandom::fill(&mut id).is_err() {
                return Reply::Refused(Refusal::failed("S1 could not draw a job id"));
            }
            let version = shared
                .registry
                .get(&program)
                .map(|p| p.version().to_string())
                .unwrap_or_default();
            let job = JobSpec {
                id: u64::from_le_bytes(id),
                program,
                version,
                config: shared.cluster.config,
                client: client.to_string(),
                params,
                args,
            };
            let id = job.id;
            // A slot among max_jobs, or a place among max_queued_jobs waiting ones.
            use std::sync::atomic::Ordering::SeqCst;
            let permit = match shared.jobs.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if shared.queued.fetch_add(1, SeqCst) >= shared.cluster.max_queued_jobs {
                        shared.queued.fetch_sub(1, SeqCst);
                        return Reply::Refused(Refusal::new(
                            RefusalKind::Busy,
                            format!(
                                "S1 is busy: {} jobs running and {} waiting; try again later",
                                shared.cluster.max_jobs, shared.cluster.max_queued_jobs
                            ),
                        ));
                    }
                    let p = shared.jobs.clone().acquire_owned().await;
                    shared.queued.fetch_sub(1, SeqCst);
                    match p {
                        Ok(p) => p,
                        Err(_) => return Reply::Refused(Refusal::failed("S1 is shutting down")),
                    }
                }
            };
            let (_tx, rx) = mpsc::unbounded_channel();
            let finished = run_job(shared.clone(), job, rx, Some(cancel)).await;
            drop(permit);
            match finished {
                Ok(done) => {
                    info!(job = %hex(id), %client, "job finished");
                    Reply::RunDone {
                        job: id,
                        outputs: done
                            .outputs
                            .into_iter()
                            .filter(|(c, _, _)| c == client)
                            .map(|(_, n, s)| (n, s))
                            .collect(),
                        stats: done.stats,
                    }
                }
                Err(r) => {
                    warn!(job = %hex(id), reason = %r.reason, "job failed");
                    Reply::Refused(
                        Refusal::new(r.kind, format!("job {} failed: {}", hex(id), r.reason))
                            .lost(r.lost),
                    )
                }
            }
        }
        Request::Fetch { job, name } => {
            let (c, n) = (client.to_string(), name.clone());
            let got = with_store(shared, move |st| st.output(job, &c, &n)).await;
            match got {
                Ok(Some(share)) => Reply::Share {
                    ring: share.ring().unwrap_or(shared.cluster.config.ring()),
                    shape: share.shape().to_vec(),
                    bytes: share.to_bytes(),
                },
                Ok(None) => Reply::Refused(Refusal::new(
                    RefusalKind::NotFound,
                    format!(
                        "{me} has no output {name:?} of job {} for {client} (already fetched, expired, or not yours)",
                        hex(job)
                    ),
                )),
                Err(e) => Reply::Refused(e),
            }
        }
        Request::Release { job, name } => {
            let c = client.to_string();
            let done = with_store(shared, move |st| st.release_output(job, &c, &name)).await;
            match done {
                Ok(_) => Reply::Released,
                Err(e) => Reply::Refused(e),
            }
        }
        Request::DeleteInput { name } => {
            if let Err(m) = check_name(&name) {
                return Reply::Refused(Refusal::invalid(format!("input name {name:?}: {m}")));
            }
            // Only in the client's own namespace: nobody deletes another's input.
            let key = format!("{client}/{name}");
            match with_store(shared, move |st| st.delete_input(&key)).await {
                Ok(true) => {
                    info!(%client, input = %name, "input deleted");
                    Reply::Released
                }
                Ok(false) => Reply::Refused(Refusal::new(
                    RefusalKind::NotFound,
                    format!("{client} has no input named {name:?}"),
                )),
                Err(e) => Reply::Refused(e),
            }
        }
        Request::ListOutputs => {
            let c = client.to_string();
            let list = with_store(shared, move |st| st.outputs_for(&c)).await;
            match list {
                Ok(l) => Reply::Outputs(l),
                Err(e) => Reply::Refused(e),
            }
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

/// A job id as 16 hex digits.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}
