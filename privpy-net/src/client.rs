//! The client library: upload shares, run programs, fetch and open results.
//!
//! ```no_run
//! use privpy_net::client::Client;
//! use privpy_net::config::ClientConfig;
//! use ndarray::{Array1, array};
//!
//! let mut alice = Client::connect(&ClientConfig::from_file("dev-cluster/alice.toml".as_ref())?)?;
//! alice.upload("x", &array![1.0, 2.0, 3.0], &[])?;
//! let job = alice.run("square", &[("x", &["x"])])?;
//! let y: Array1<f64> = alice.fetch(&job, "y")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! One round trip, nothing stored: a call on inputs sent with the request, and an
//! inference on a deployed model (batched with other clients' requests):
//!
//! ```no_run
//! # use privpy_net::client::Client;
//! # use privpy_net::config::ClientConfig;
//! # use ndarray::{Array1, Array2, array};
//! # let mut alice = Client::connect(&ClientConfig::from_file("dev-cluster/alice.toml".as_ref())?)?;
//! let x = array![3.0, 1.0, 4.0, 1.0, 5.0];
//! let stats = alice.call("stats", &[], &[("x", x.view().into_dyn())], &[])?;
//! let mean: f64 = stats.get("mean")?;
//! let images = Array2::<f64>::zeros((2, 784));
//! let digits: Array1<f64> = alice.infer("mnist-mlp", &images)?.get("digits")?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The client splits each input into two shares on its own machine and sends one to
//! `S1`, the other to `S2`; servers never see the value. Results come back as two
//! shares, one from each, and only the client adds them up. The calls block; a
//! small tokio runtime inside the client does the I/O.

use crate::config::ClientConfig;
use crate::link::{Conn, ConnError};
use crate::tls::{TlsError, client_tls, dial_name};
use crate::wire::{Control, RefusalKind, Reply, Request};
use privpy_core::share::{Share, reconstruct, share};
use privpy_core::transport::{CommStats, Role};
use privpy_core::{Config, PrivType, Public};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, TlsStream};

/// A client operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Certificates or keys.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Connecting to a server failed (address, TLS handshake: for example, a
    /// certificate from the wrong authority).
    #[error("cannot connect to {server}: {reason}")]
    Connect {
        /// The server.
        server: Role,
        /// Why.
        reason: String,
    },
    /// The server refused the request; `kind` says what kind of refusal (for
    /// example [`RefusalKind::Stale`]: upload the input again), `reason` says why.
    #[error("{server} refused: {reason}")]
    Refused {
        /// The server.
        server: Role,
        /// The kind of refusal.
        kind: RefusalKind,
        /// Its reason.
        reason: String,
        /// The server whose loss made the job fail, when that is why
        /// ([`crate::wire::Refusal::lost`]).
        lost: Option<Role>,
    },
    /// The connection failed during a request.
    #[error("{server}: {source}")]
    Conn {
        /// The server.
        server: Role,
        /// What happened.
        source: ConnError,
    },
    /// The two servers disagree (number format), or answered out of protocol.
    #[error("protocol: {0}")]
    Protocol(String),
    /// Encoding, sharing or reconstruction failed (NaN, out of range, shapes).
    #[error(transparent)]
    Core(#[from] privpy_core::Error),
    /// The local runtime could not start.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// A finished job: its id, the outputs waiting for this client, and traffic.
#[derive(Clone, Debug)]
pub struct JobResult {
    /// The job id.
    pub id: u64,
    /// Outputs for this client: name and shape.
    pub outputs: Vec<(String, Vec<usize>)>,
    /// Each server's communication during the program, by role index.
    pub stats: [CommStats; 4],
}

/// The outcome of [`Client::call`] or [`Client::infer`]: the caller's outputs,
/// opened (this client's own rows of a batch).
#[derive(Clone, Debug)]
pub struct Called {
    /// The job that computed them.
    pub job: u64,
    /// Requests in that job: 1 for a call, the batch size for an inference.
    pub batch: u32,
    /// The outputs by name.
    pub outputs: Vec<(String, ndarray::ArrayD<f64>)>,
    /// Each server's communication during the whole job, by role index (as `S1`
    /// reports it; a batch's traffic is shared by its requests).
    pub stats: [CommStats; 4],
}

impl Called {
    /// Output `name` as an array of the rank `A` has (`f64`, `Array1<f64>` …).
    ///
    /// # Errors
    /// [`ClientError::Protocol`] when there is no such output; a rank mismatch.
    pub fn get<A: PrivType>(&self, name: &str) -> Result<A, ClientError> {
        let Some((_, v)) = self.outputs.iter().find(|(n, _)| n == name) else {
            return Err(ClientError::Protocol(format!(
                "no output {name:?} (outputs: {})",
                self.outputs
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        };
        Ok(A::from_dyn(v.clone()).map_err(privpy_core::Error::from)?)
    }
}

/// A connected client.
pub struct Client {
    name: String,
    config: Config,
    rt: tokio::runtime::Runtime,
    conns: Vec<Conn>,
    timeout: Duration,
    /// Share bytes per part of an upload in parts: 4 MiB less 4 KiB (a store piece), or half the largest
    /// message a server takes if that is less.
    part: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("name", &self.name)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const PRIMARIES: [Role; 2] = [Role::S1, Role::S2];

impl Client {
    /// Connects to `S1` and `S2` with the client certificate and asks both for the
    /// cluster's number format.
    ///
    /// # Errors
    /// Unreadable certificates; unreachable servers; a failed handshake (a server
    /// certificate not from the configured authority, or ours not accepted); a
    /// certificate naming no accepted client; servers that disagree.
    pub fn connect(cfg: &ClientConfig) -> Result<Client, ClientError> {
        let tls = client_tls(&cfg.cert, &cfg.key, &cfg.server_ca)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ClientError::Runtime)?;
        let connector = TlsConnector::from(tls);
        let timeout = cfg.timeout;
        let dial = |server: Role, addr| {
            let connector = connector.clone();
            async move {
                let connect = async {
                    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                    let _ = tcp.set_nodelay(true);
                    connector
                        .connect(dial_name(server), tcp)
                        .await
                        .map_err(|e| format!("TLS handshake failed: {e}"))
                };
                match tokio::time::timeout(timeout.min(Duration::from_secs(30)), connect).await {
                    Ok(Ok(s)) => Ok(Conn::new(TlsStream::Client(s), cfg.max_frame)),
                    Ok(Err(reason)) => Err(ClientError::Connect {
                        server,
                        reason: format!("{addr}: {reason}"),
                    }),
                    Err(_) => Err(ClientError::Connect {
                        server,
                        reason: format!("{addr}: no answer"),
                    }),
                }
            }
        };
        let c1 = rt.block_on(dial(Role::S1, cfg.s1))?;
        let c2 = rt.block_on(dial(Role::S2, cfg.s2))?;
        let mut client = Client {
            name: cfg.name.clone(),
            config: Config::default(),
            rt,
            conns: vec![c1, c2],
            timeout,
            part: (4 << 20) - crate::store::PIECE_SLACK,
        };
        let mut configs = Vec::new();
        for (k, server) in PRIMARIES.into_iter().enumerate() {
            let info = client.request(k, &Request::Info).map_err(|e| match e {
                // TLS 1.3 servers check the client certificate after the client
                // finishes its handshake: a rejection shows on the first request.
                ClientError::Conn { server, source } => ClientError::Connect {
                    server,
                    reason: format!(
                        "{source}: the server closed the connection after the handshake, so it does not accept this client's certificate (is it issued by the cluster's client authority?)"
                    ),
                },
                other => other,
            })?;
            match info {
                Reply::Info {
                    config,
                    client: who,
                    max_message,
                    ..
                } => {
                    // A part and its message's header fit the server's limit; each
                    // part is one store piece, a little under a power of two.
                    let most = usize::try_from(max_message / 2)
                        .unwrap_or(usize::MAX)
                        .saturating_sub(crate::store::PIECE_SLACK);
                    client.part = client.part.min(most.max(crate::store::MIN_PART));
                    if who != cfg.name {
                        return Err(ClientError::Protocol(format!(
                            "{server} knows this certificate as {who:?}, not {:?}",
                            cfg.name
                        )));
                    }
                    configs.push(config);
                }
                other => return Err(unexpected(server, &other)),
            }
        }
        if configs[0] != configs[1] {
            return Err(ClientError::Protocol(format!(
                "S1 computes with {:?} but S2 with {:?}",
                configs[0], configs[1]
            )));
        }
        client.config = configs[0];
        Ok(client)
    }

    /// The cluster's number format (what inputs are encoded with).
    pub fn config(&self) -> Config {
        self.config
    }

    /// This client's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn request(&mut self, k: usize, req: &Request) -> Result<Reply, ClientError> {
        let server = PRIMARIES[k];
        let timeout = self.timeout;
        let Some(conn) = self.conns.get_mut(k) else {
            return Err(ClientError::Protocol(format!("no connection to {server}")));
        };
        let res = self.rt.block_on(async {
            if let Err(e) = conn.send(&Control::Request(req.clone())).await {
                // The server may have said why it closed (a TLS alert, for example
                // about our certificate): that beats "broken pipe".
                return match conn.recv(Duration::from_secs(1)).await {
                    Err(ConnError::Io(why)) => Err(ConnError::Io(why)),
                    _ => Err(ConnError::Io(e)),
                };
            }
            conn.recv(timeout).await
        });
        reply_of(server, res)
    }

    /// Sends `reqs[0]` to `S1` and `reqs[1]` to `S2` at once and waits for both replies.
    fn request_both(&mut self, reqs: [Request; 2]) -> Result<[Reply; 2], ClientError> {
        let timeout = self.timeout;
        let [c1, c2] = self.conns.as_mut_slice() else {
            return Err(ClientError::Protocol("not connected to S1 and S2".into()));
        };
        let [r1, r2] = reqs;
        let (a, b) = self
            .rt
            .block_on(async { tokio::join!(exchange(c1, r1, timeout), exchange(c2, r2, timeout)) });
        let mut out = Vec::new();
        for (server, res) in PRIMARIES.into_iter().zip([a, b]) {
            out.push(reply_of(server, res));
        }
        let b = out.pop();
        let a = out.pop();
        match (a, b) {
            (Some(Ok(a)), Some(Ok(b))) => Ok([a, b]),
            (Some(Err(e)), _) | (_, Some(Err(e))) => Err(e),
            _ => Err(ClientError::Protocol("missing reply".into())),
        }
    }

    /// Opens the outputs of a call from the two servers' replies.
    fn open_called(&self, replies: [Reply; 2]) -> Result<Called, ClientError> {
        let [
            Reply::Called {
                job,
                batch,
                outputs: o1,
                stats,
            },
            Reply::Called {
                job: job2,
                outputs: o2,
                ..
            },
        ] = replies
        else {
            return Err(ClientError::Protocol(
                "expected the outputs of a call from S1 and S2".into(),
            ));
        };
        if job != job2 || o1.len() != o2.len() {
            return Err(ClientError::Protocol(format!(
                "S1 and S2 answered from different jobs ({job:016x}, {job2:016x})"
            )));
        }
        let mut outputs = Vec::new();
        for (a, b) in o1.iter().zip(&o2) {
            if a.name != b.name {
                return Err(ClientError::Protocol(format!(
                    "S1 sent output {:?} where S2 sent {:?}",
                    a.name, b.name
                )));
            }
            let s1 = Share::from_bytes(a.ring, &a.shape, &a.bytes)?;
            let s2 = Share::from_bytes(b.ring, &b.shape, &b.bytes)?;
            outputs.push((a.name.clone(), reconstruct(&self.config, &s1, &s2)?));
        }
        Ok(Called {
            job,
            batch,
            outputs,
            stats,
        })
    }

    /// Draws a random request id.
    fn request_id() -> Result<u64, ClientError> {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).map_err(|e| {
            ClientError::Protocol(format!(
                "the operating system's random generator failed: {e}"
            ))
        })?;
        Ok(u64::from_le_bytes(id))
    }

    /// Shares `inputs` and returns their `S1` and `S2` halves as inline inputs.
    fn share_inline(
        &self,
        inputs: &[(&str, ndarray::ArrayViewD<'_, f64>)],
    ) -> Result<[Vec<crate::wire::Inline>; 2], ClientError> {
        let mut halves = [Vec::new(), Vec::new()];
        for (name, v) in inputs {
            let shares = share(&self.config, v).map_err(|source| privpy_core::Error::Encode {
                name: name.to_string(),
                source,
            })?;
            for (k, s) in shares.iter().enumerate() {
                let Some(ring) = s.ring() else {
                    return Err(privpy_core::Error::ShareMismatch(
                        "a share without ring elements".into(),
                    )
                    .into());
                };
                halves[k].push(crate::wire::Inline {
                    name: name.to_string(),
                    ring,
                    shape: s.shape().to_vec(),
                    bytes: s.to_bytes(),
                });
            }
        }
        Ok(halves)
    }

    /// Runs `program` in one round trip on inputs sent with the request: `inputs`
    /// are secret-shared to `S1` and `S2` and never stored; the other parameters
    /// are bound to stored inputs as in [`Client::run`]. Returns the outputs for
    /// this client, opened. Nothing is stored on the servers (outputs for other
    /// clients, if the program writes any, are stored for them as a run's).
    ///
    /// A job is still a job: the four servers run the program over their
    /// long-lived links, with no TLS handshake and no disk write.
    ///
    /// # Errors
    /// NaN, ±inf or out-of-range inputs (nothing is sent); a refusal (unknown
    /// program, wrong shape, busy cluster); a failure during the job.
    pub fn call(
        &mut self,
        program: &str,
        bindings: &[(&str, &[&str])],
        inputs: &[(&str, ndarray::ArrayViewD<'_, f64>)],
        args: &[(&str, f64)],
    ) -> Result<Called, ClientError> {
        let [h1, h2] = self.share_inline(inputs)?;
        let request = Self::request_id()?;
        let bindings: Vec<(String, Vec<String>)> = bindings
            .iter()
            .map(|(p, srcs)| (p.to_string(), srcs.iter().map(|s| s.to_string()).collect()))
            .collect();
        let args: Vec<(String, f64)> = args.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let make = |inputs| Request::Call {
            request,
            program: program.to_string(),
            bindings: bindings.clone(),
            inputs,
            args: args.clone(),
        };
        let replies = self.request_both([make(h1), make(h2)])?;
        self.open_called(replies)
    }

    /// Runs deployed model `model` on `input` (rows: one image per row for the
    /// stock models) and returns this client's outputs, opened. The cluster may
    /// batch the request with other clients' requests that arrive close to it;
    /// each client receives only its own rows, and nothing is stored.
    ///
    /// # Errors
    /// NaN, ±inf or out-of-range inputs (nothing is sent); an unknown model
    /// ([`RefusalKind::NotFound`]); a wrong shape; weights the model's owner has
    /// not granted to this client; a busy cluster; a failure during the job.
    pub fn infer<P: Public>(&mut self, model: &str, input: P) -> Result<Called, ClientError> {
        let v = input.view_dyn();
        let [mut h1, mut h2] = self.share_inline(&[("input", v)])?;
        let (Some(i1), Some(i2)) = (h1.pop(), h2.pop()) else {
            return Err(ClientError::Protocol("sharing produced no input".into()));
        };
        let request = Self::request_id()?;
        let make = |input| Request::Infer {
            request,
            model: model.to_string(),
            input,
        };
        let replies = self.request_both([make(i1), make(i2)])?;
        self.open_called(replies)
    }

    /// Secret-shares `value` and stores the shares on `S1` and `S2` under `name`.
    /// `readers` are grants to other clients: `"bob@stats"` lets bob use it in
    /// program `stats` only, `"bob@stats:2"` in version 2 of it only, and `"bob"` in
    /// every program (see [`crate::store::Grant`] for what a grant gives away).
    /// Uploading an existing name of your own replaces it; another client's name is
    /// refused.
    ///
    /// A share larger than 4 MiB (or than half the servers' message limit) travels
    /// in parts, each stored as it arrives, so the servers hold one part at a time;
    /// the input is replaced only when its last part is stored.
    ///
    /// Both shares carry one random upload tag, and every job checks that `S1`'s
    /// and `S2`'s tags agree. If this call fails after `S1` stored its share (for
    /// example, `S2` is down), no job runs on the mixed shares: it is refused with
    /// [`RefusalKind::Stale`] until the input is uploaded again.
    ///
    /// # Errors
    /// NaN, ±inf or out-of-range elements (nothing is sent); a refusal; a lost server.
    pub fn upload<P: Public>(
        &mut self,
        name: &str,
        value: P,
        readers: &[&str],
    ) -> Result<(), ClientError> {
        let v = value.view_dyn();
        let shares = share(&self.config, &v).map_err(|source| privpy_core::Error::Encode {
            name: name.to_string(),
            source,
        })?;
        self.upload_shares(name, &shares, readers)
    }

    /// Stores shares the caller made itself (with [`privpy_core::share::share_with`]
    /// and its own generator): `shares[0]` goes to `S1`, `shares[1]` to `S2`.
    ///
    /// # Errors
    /// Shares of another ring than the cluster's, or of different shapes; a refusal.
    pub fn upload_shares(
        &mut self,
        name: &str,
        shares: &[Share; 2],
        readers: &[&str],
    ) -> Result<(), ClientError> {
        if shares[0].shape() != shares[1].shape() {
            return Err(privpy_core::Error::ShareMismatch(format!(
                "shapes {:?} and {:?}",
                shares[0].shape(),
                shares[1].shape()
            ))
            .into());
        }
        let tag = random_tag()?;
        for (k, s) in shares.iter().enumerate() {
            let Some(ring) = s.ring() else {
                return Err(privpy_core::Error::ShareMismatch(
                    "a share without ring elements".into(),
                )
                .into());
            };
            let bytes = s.to_bytes();
            // Larger shares travel in parts, so that a server holds one part at a
            // time: the first in the Upload, the rest in UploadParts.
            let mut sent = bytes.len().min(self.part);
            let req = Request::Upload {
                name: name.to_string(),
                tag,
                readers: readers.iter().map(|r| r.to_string()).collect(),
                ring,
                shape: s.shape().to_vec(),
                bytes: bytes[..sent].to_vec(),
            };
            let mut reply = self.request(k, &req)?;
            loop {
                match reply {
                    Reply::Uploaded if sent == bytes.len() => break,
                    Reply::PartReceived { received }
                        if received == sent as u64 && sent < bytes.len() =>
                    {
                        let end = (sent + self.part).min(bytes.len());
                        let part = Request::UploadPart {
                            tag,
                            bytes: bytes[sent..end].to_vec(),
                        };
                        sent = end;
                        reply = self.request(k, &part)?;
                    }
                    other => return Err(unexpected(PRIMARIES[k], &other)),
                }
            }
        }
        Ok(())
    }

    /// Uploads a matrix of `shape` given as blocks of rows (any number each, in
    /// order), for data sets larger than the client's memory: each block is shared
    /// as it comes and its shares sent to `S1` and `S2` in parts, so the client
    /// holds one block and one part per server at a time, and each server one
    /// part. Programs read such an input in chunks with
    /// [`privpy_core::Session::large_input`] (a [`privpy_core::LargeArray`]).
    ///
    /// As with [`Client::upload`], the input is replaced only when its last part is
    /// stored on both servers; an upload that fails midway leaves the earlier
    /// input (the servers drop the partial one).
    ///
    /// # Errors
    /// NaN, ±inf or out-of-range elements (the index counts rows from the first
    /// block); a block of another number of columns, or rows that do not add up to
    /// `shape[0]` ([`privpy_core::Error::InvalidArgument`]); a refusal; a lost server.
    pub fn upload_rows<I>(
        &mut self,
        name: &str,
        shape: [usize; 2],
        blocks: I,
        readers: &[&str],
    ) -> Result<(), ClientError>
    where
        I: IntoIterator<Item = ndarray::Array2<f64>>,
    {
        let invalid = |reason: String| -> ClientError {
            privpy_core::Error::InvalidArgument {
                operation: "upload_rows",
                reason,
            }
            .into()
        };
        let ring = self.config.ring();
        let total = (shape[0] as u64)
            .checked_mul(shape[1] as u64)
            .and_then(|n| n.checked_mul(ring.bytes() as u64))
            .ok_or_else(|| invalid(format!("shape {shape:?} is too large")))?;
        let tag = random_tag()?;
        let mut up = RowUpload {
            name: name.to_string(),
            tag,
            readers: readers.iter().map(|r| r.to_string()).collect(),
            shape: shape.to_vec(),
            ring,
            total,
            pending: [Vec::new(), Vec::new()],
            sent: [0, 0],
            started: [false, false],
        };
        let mut rows = 0usize;
        for block in blocks {
            if block.ncols() != shape[1] {
                return Err(invalid(format!(
                    "a block of shape {:?} after {rows} rows: every block has {} columns",
                    block.shape(),
                    shape[1]
                )));
            }
            if rows + block.nrows() > shape[0] {
                return Err(invalid(format!(
                    "the blocks hold more than the {} rows of the shape",
                    shape[0]
                )));
            }
            let shares = share(&self.config, &block.view().into_dyn()).map_err(|source| {
                privpy_core::Error::Encode {
                    name: name.to_string(),
                    source: source.offset_rows(rows),
                }
            })?;
            rows += block.nrows();
            for (k, sh) in shares.iter().enumerate() {
                up.pending[k].extend_from_slice(&sh.to_bytes());
                while up.pending[k].len() >= self.part {
                    let part: Vec<u8> = up.pending[k].drain(..self.part).collect();
                    self.send_part(&mut up, k, part)?;
                }
            }
        }
        if rows != shape[0] {
            return Err(invalid(format!(
                "the blocks hold {rows} rows, the shape {}",
                shape[0]
            )));
        }
        for k in 0..2 {
            let rest = std::mem::take(&mut up.pending[k]);
            if !rest.is_empty() || !up.started[k] {
                self.send_part(&mut up, k, rest)?;
            }
        }
        Ok(())
    }

    /// Sends the next part of a row upload to primary `k` (the first as the
    /// `Upload` itself) and checks the answer.
    fn send_part(
        &mut self,
        up: &mut RowUpload,
        k: usize,
        bytes: Vec<u8>,
    ) -> Result<(), ClientError> {
        up.sent[k] += bytes.len() as u64;
        let done = up.sent[k] == up.total;
        let req = if !up.started[k] {
            up.started[k] = true;
            Request::Upload {
                name: up.name.clone(),
                tag: up.tag,
                readers: up.readers.clone(),
                ring: up.ring,
                shape: up.shape.clone(),
                bytes,
            }
        } else {
            Request::UploadPart { tag: up.tag, bytes }
        };
        match self.request(k, &req)? {
            Reply::Uploaded if done => Ok(()),
            Reply::PartReceived { received } if !done && received == up.sent[k] => Ok(()),
            other => Err(unexpected(PRIMARIES[k], &other)),
        }
    }

    /// Runs `program` on the cluster, binding each parameter to one or more stored
    /// inputs (several are stacked by rows, in order). Blocks until the job ends.
    ///
    /// # Errors
    /// A refusal (unknown program, missing or foreign input, wrong shape, another
    /// program version on some server) or a failure during the job (a lost server:
    /// the message names it).
    pub fn run(
        &mut self,
        program: &str,
        bindings: &[(&str, &[&str])],
    ) -> Result<JobResult, ClientError> {
        self.run_with(program, bindings, &[])
    }

    /// [`Client::run`] with public arguments (hyperparameters the program declares,
    /// such as `("iterations", 200.0)`); undeclared arguments are refused.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub fn run_with(
        &mut self,
        program: &str,
        bindings: &[(&str, &[&str])],
        args: &[(&str, f64)],
    ) -> Result<JobResult, ClientError> {
        let req = Request::Run {
            program: program.to_string(),
            bindings: bindings
                .iter()
                .map(|(p, srcs)| (p.to_string(), srcs.iter().map(|s| s.to_string()).collect()))
                .collect(),
            args: args.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        };
        match self.request(0, &req)? {
            Reply::RunDone {
                job,
                outputs,
                stats,
            } => Ok(JobResult {
                id: job,
                outputs,
                stats,
            }),
            other => Err(unexpected(Role::S1, &other)),
        }
    }

    /// Fetches both shares of output `name` of `job`, opens it, and then asks both
    /// servers to delete their shares. A fetch interrupted by a failure (a server
    /// down after the other answered) loses nothing: the shares stay stored until
    /// both were received, and the fetch can be repeated.
    ///
    /// # Errors
    /// A refusal (no such output for this client), shares that do not fit together,
    /// or an output of another rank than `A`.
    pub fn fetch<A: PrivType>(&mut self, job: &JobResult, name: &str) -> Result<A, ClientError> {
        self.fetch_id(job.id, name)
    }

    /// [`Client::fetch`] by job id (for example, from [`Client::outputs`]).
    ///
    /// # Errors
    /// As [`Client::fetch`].
    pub fn fetch_id<A: PrivType>(&mut self, id: u64, name: &str) -> Result<A, ClientError> {
        let [s1, s2] = self.fetch_shares(id, name)?;
        let value = reconstruct(&self.config, &s1, &s2)?;
        Ok(A::from_dyn(value).map_err(privpy_core::Error::from)?)
    }

    /// Deletes this client's input `name` on `S1` and `S2`. Jobs that name it are
    /// refused afterwards (as not found); the name can be uploaded again.
    ///
    /// # Errors
    /// [`RefusalKind::NotFound`] when neither server holds it; a lost server (then
    /// delete again: a half-deleted input is refused by every job as stale or
    /// missing, never computed on).
    pub fn delete(&mut self, name: &str) -> Result<(), ClientError> {
        let mut found = false;
        for (k, server) in PRIMARIES.into_iter().enumerate() {
            let req = Request::DeleteInput {
                name: name.to_string(),
            };
            match self.request(k, &req) {
                Ok(Reply::Released) => found = true,
                Err(ClientError::Refused {
                    kind: RefusalKind::NotFound,
                    ..
                }) => {}
                Ok(other) => return Err(unexpected(server, &other)),
                Err(e) => return Err(e),
            }
        }
        if found {
            Ok(())
        } else {
            Err(ClientError::Refused {
                server: Role::S1,
                kind: RefusalKind::NotFound,
                reason: format!("no input named {name:?}"),
                lost: None,
            })
        }
    }

    /// The outputs waiting for this client: job id, output name and shape (as `S1`
    /// lists them; `S2` holds the same unless a job failed half-way).
    ///
    /// # Errors
    /// A refusal or a lost server.
    pub fn outputs(&mut self) -> Result<Vec<(u64, String, Vec<usize>)>, ClientError> {
        match self.request(0, &Request::ListOutputs)? {
            Reply::Outputs(list) => Ok(list),
            other => Err(unexpected(Role::S1, &other)),
        }
    }

    /// The two shares of output `name` of job `id`, as the servers sent them. Once
    /// both arrived, both servers delete them.
    ///
    /// # Errors
    /// As [`Client::fetch`].
    pub fn fetch_shares(&mut self, id: u64, name: &str) -> Result<[Share; 2], ClientError> {
        let mut shares = Vec::new();
        for k in 0..2 {
            // In parts: each reply carries at most what the server chooses.
            let mut bytes: Vec<u8> = Vec::new();
            let share = loop {
                let part = self.fetch_part(k, id, name, bytes.len() as u64)?;
                bytes.extend_from_slice(&part.bytes);
                if bytes.len() as u64 >= part.total {
                    break Share::from_bytes(part.ring, &part.shape, &bytes)?;
                }
            };
            shares.push(share);
        }
        let s2 = shares.pop();
        let s1 = shares.pop();
        let (Some(a), Some(b)) = (s1, s2) else {
            return Err(ClientError::Protocol("missing share".into()));
        };
        self.release(id, name)?;
        Ok([a, b])
    }

    /// Fetches a 2-D output a block of rows at a time, for results larger than the
    /// client's memory (a [`privpy_core::LargeArray`] output,
    /// [`privpy_core::Session::output_large`]): `f` gets each block, opened, in
    /// order (a block holds the rows of one part from each server, about 4 MiB).
    /// The output is released once every block was handed over.
    ///
    /// # Errors
    /// As [`Client::fetch`]; [`privpy_core::Error::InvalidArgument`] for an output
    /// that is not 2-D; `f`'s error (the output stays stored: fetch again).
    pub fn fetch_rows<F>(
        &mut self,
        job: &JobResult,
        name: &str,
        mut f: F,
    ) -> Result<(), ClientError>
    where
        F: FnMut(ndarray::Array2<f64>) -> Result<(), ClientError>,
    {
        let id = job.id;
        let mut buf: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut got = [0u64; 2];
        let mut rows_done = 0usize;
        let mut head: Option<(privpy_core::RingKind, Vec<usize>, u64)> = None;
        loop {
            for k in 0..2 {
                if head.as_ref().is_some_and(|h| got[k] >= h.2) {
                    continue;
                }
                let part = self.fetch_part(k, id, name, got[k])?;
                got[k] += part.bytes.len() as u64;
                buf[k].extend_from_slice(&part.bytes);
                match &head {
                    None => head = Some((part.ring, part.shape, part.total)),
                    Some((ring, shape, total)) => {
                        if (*ring, shape, *total) != (part.ring, &part.shape, part.total) {
                            return Err(ClientError::Protocol(format!(
                                "S1 and S2 describe output {name:?} differently: {shape:?} and {:?}",
                                part.shape
                            )));
                        }
                    }
                }
            }
            let Some((ring, shape, total)) = head.clone() else {
                return Err(ClientError::Protocol("no part arrived".into()));
            };
            let &[rows, cols] = shape.as_slice() else {
                return Err(privpy_core::Error::InvalidArgument {
                    operation: "fetch_rows",
                    reason: format!("output {name:?} has shape {shape:?}, not two dimensions"),
                }
                .into());
            };
            let row_bytes = (cols * ring.bytes()).max(1);
            let ready = buf[0].len().min(buf[1].len()) / row_bytes;
            if ready > 0 {
                let take = ready * row_bytes;
                let s: Vec<Share> = buf
                    .iter_mut()
                    .map(|b| {
                        Share::from_bytes(
                            ring,
                            &[ready, cols],
                            &b.drain(..take).collect::<Vec<u8>>(),
                        )
                    })
                    .collect::<Result<_, _>>()?;
                let block = reconstruct(&self.config, &s[0], &s[1])?;
                let block = block
                    .into_dimensionality::<ndarray::Ix2>()
                    .map_err(|e| ClientError::Protocol(e.to_string()))?;
                rows_done += ready;
                f(block)?;
            }
            if got[0] >= total && got[1] >= total {
                if rows_done != rows {
                    return Err(ClientError::Protocol(format!(
                        "output {name:?}: {rows_done} of {rows} rows arrived"
                    )));
                }
                break;
            }
        }
        self.release(id, name)
    }

    /// One part of this client's output `name` of job `id` from primary `k`, checked.
    fn fetch_part(
        &mut self,
        k: usize,
        id: u64,
        name: &str,
        offset: u64,
    ) -> Result<FetchedPart, ClientError> {
        let server = PRIMARIES[k];
        let req = Request::FetchPart {
            job: id,
            name: name.to_string(),
            offset,
        };
        match self.request(k, &req)? {
            Reply::SharePart {
                ring,
                shape,
                total,
                bytes,
            } => {
                let expected = shape
                    .iter()
                    .try_fold(ring.bytes() as u64, |a, &d| a.checked_mul(d as u64));
                if expected != Some(total)
                    || (bytes.is_empty() && offset < total)
                    || offset + bytes.len() as u64 > total
                {
                    return Err(ClientError::Protocol(format!(
                        "{server} sent a part of a share of shape {shape:?} claiming {total} bytes in all, {} of them in this part",
                        bytes.len()
                    )));
                }
                Ok(FetchedPart {
                    ring,
                    shape,
                    total,
                    bytes,
                })
            }
            other => Err(unexpected(server, &other)),
        }
    }

    /// Releases output `name` of job `id` on both primaries.
    fn release(&mut self, id: u64, name: &str) -> Result<(), ClientError> {
        for (k, server) in PRIMARIES.into_iter().enumerate() {
            let req = Request::Release {
                job: id,
                name: name.to_string(),
            };
            match self.request(k, &req)? {
                Reply::Released => {}
                other => return Err(unexpected(server, &other)),
            }
        }
        Ok(())
    }
}

/// A part of an output's share, as a primary sent it.
struct FetchedPart {
    ring: privpy_core::RingKind,
    shape: Vec<usize>,
    total: u64,
    bytes: Vec<u8>,
}

impl Drop for Client {
    /// Closes both connections politely (TLS close_notify).
    fn drop(&mut self) {
        let conns = std::mem::take(&mut self.conns);
        self.rt.block_on(async {
            for c in conns {
                let _ = tokio::time::timeout(Duration::from_secs(1), c.close()).await;
            }
        });
    }
}

/// A server's answer as the client sees it: a reply, or the refusal or failure.
fn reply_of(server: Role, res: Result<Control, ConnError>) -> Result<Reply, ClientError> {
    match res {
        Ok(Control::Reply(Reply::Refused(r))) => Err(ClientError::Refused {
            server,
            kind: r.kind,
            reason: r.reason,
            lost: r.lost,
        }),
        Ok(Control::Reply(r)) => Ok(r),
        Ok(_) => Err(ClientError::Protocol(format!(
            "{server} sent something that is not a reply"
        ))),
        Err(source) => Err(ClientError::Conn { server, source }),
    }
}

/// Sends one request and waits for its reply.
/// A fresh random upload tag.
fn random_tag() -> Result<u128, ClientError> {
    let mut tag = [0u8; 16];
    getrandom::fill(&mut tag).map_err(|e| {
        ClientError::Protocol(format!(
            "the operating system's random generator failed: {e}"
        ))
    })?;
    Ok(u128::from_le_bytes(tag))
}

/// A row upload in progress ([`Client::upload_rows`]).
struct RowUpload {
    name: String,
    tag: u128,
    readers: Vec<String>,
    shape: Vec<usize>,
    ring: privpy_core::RingKind,
    total: u64,
    /// Share bytes not yet sent, per primary.
    pending: [Vec<u8>; 2],
    /// Share bytes sent to each primary.
    sent: [u64; 2],
    /// Whether each primary got the `Upload` that starts it.
    started: [bool; 2],
}

async fn exchange(conn: &mut Conn, req: Request, timeout: Duration) -> Result<Control, ConnError> {
    conn.send(&Control::Request(req)).await?;
    conn.recv(timeout).await
}

fn unexpected(server: Role, r: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply from {server}: {r:?}"))
}
