//! [`LocalCluster`]: four servers as threads of this process, plus the clients that
//! feed them; and the same API over the cleartext engine.
//!
//! ```
//! use privpy_core::{Config, LocalCluster, Session};
//! use ndarray::array;
//!
//! let mut cluster = LocalCluster::new(Config::default());
//! let alice = cluster.client("alice");
//! cluster.upload(&alice, "x", &array![1.5, -2.0, 3.25])?;
//! let run = cluster.run(|s: &Session| {
//!     let x = s.input::<ndarray::Array1<f64>>("x")?;
//!     s.output("alice", "y", &(&x * &x + 1.0))
//! })?;
//! let y: ndarray::Array1<f64> = run.open(&alice, "y")?;
//! assert!((y[1] - 5.0).abs() < 1e-8);
//! # Ok::<(), privpy_core::Error>(())
//! ```

use crate::config::Config;
use crate::data::Data;
use crate::engine::{Cleartext, Engine};
use crate::error::{Error, Result};
use crate::large::{Input, LargeEnv, Scratch, ScratchFile, ScratchWriter};
use crate::protocol::{Party, SeedSource};
use crate::ring::{RingKind, Z64, Z128, Z256};
use crate::session::Session;
use crate::share::{Share, reconstruct, share_with};
use crate::transport::{ClusterStats, CommStats, LinkProfile, Role, Transport, channel_mesh_with};
use crate::types::{PrivType, Public};
use ndarray::ArrayD;
use rand_chacha::ChaCha12Rng;
use rand_core::SeedableRng;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A client's identity in a [`LocalCluster`]. Only the client an output was
/// written for can open it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Client {
    name: String,
}

impl Client {
    /// The client's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Clear,
    FourParty(Config),
}

struct StoredInput {
    owner: String,
    held: Held,
}

enum Held {
    /// `[S1's share, S2's share]`, or the value itself (cleartext mode) twice.
    Memory(Box<[Data; 2]>),
    /// A matrix uploaded by rows ([`LocalCluster::upload_rows`]): `S1`'s and `S2`'s
    /// shares (or the cleartext value twice) in encrypted files.
    Files {
        shape: [usize; 2],
        files: [Arc<ScratchFile>; 2],
    },
}

impl Held {
    fn shape(&self) -> &[usize] {
        match self {
            Held::Memory(d) => d[0].shape(),
            Held::Files { shape, .. } => shape,
        }
    }
}

/// Four servers in one process (threads connected by channels), and their clients.
///
/// Clients register with [`LocalCluster::client`], upload secret arrays (they are
/// shared on upload: the cluster stores only the two shares), then
/// [`LocalCluster::run`] runs a program on all four servers and returns the
/// outputs, which only their clients can open.
pub struct LocalCluster {
    mode: Mode,
    clients: Vec<String>,
    inputs: BTreeMap<String, StoredInput>,
    seed: Option<u64>,
    client_rng: ChaCha12Rng,
    timeout: Duration,
    record: bool,
    unwind: bool,
    link: Option<LinkProfile>,
    budget: u64,
    scratch: Arc<Scratch>,
}

impl std::fmt::Debug for LocalCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCluster")
            .field("mode", &self.mode)
            .field("clients", &self.clients)
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl LocalCluster {
    /// Four servers computing on shares in the configured ring.
    ///
    /// # Panics
    /// When the operating system's random generator fails (there is no secure way on).
    pub fn new(cfg: Config) -> Self {
        Self::with_mode(Mode::FourParty(cfg))
    }

    /// The cleartext engine behind the same API: plain `f64`, one thread. The oracle
    /// that tests compare private results against.
    ///
    /// # Panics
    /// When the operating system's random generator fails.
    pub fn cleartext() -> Self {
        Self::with_mode(Mode::Clear)
    }

    fn with_mode(mode: Mode) -> Self {
        let mut seed = [0u8; 32];
        // Without OS randomness there is no secure sharing; refuse loudly.
        if let Err(e) = getrandom::fill(&mut seed) {
            panic!("the operating system's random generator failed: {e}");
        }
        LocalCluster {
            mode,
            clients: Vec::new(),
            inputs: BTreeMap::new(),
            seed: None,
            client_rng: ChaCha12Rng::from_seed(seed),
            timeout: Duration::from_secs(60),
            record: false,
            unwind: true,
            link: None,
            budget: crate::config::DEFAULT_MEMORY_BUDGET,
            scratch: Arc::new(Scratch::new(None)),
        }
    }

    /// Derives every random choice (client masks, server seeds) from `seed`, so runs
    /// are reproducible. **Insecure**: for tests and benchmarks only.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self.client_rng = ChaCha12Rng::seed_from_u64(seed);
        self
    }

    /// Whether a failing operator stops the program at once by unwinding (`true`, the
    /// default; only where panics unwind) or lets it run to its end on placeholder
    /// values without communicating (`false`; always the case with `panic = "abort"`).
    /// The run returns the same error either way; unwinding only stops sooner.
    pub fn with_unwinding(mut self, unwind: bool) -> Self {
        self.unwind = unwind;
        self
    }

    /// How long a server waits for a peer's message before giving up (default 60 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keeps every payload byte each server receives, for statistical audits of what
    /// servers see ([`RunOutput::transcript`]).
    pub fn record_transcripts(mut self, on: bool) -> Self {
        self.record = on;
        self
    }

    /// Runs the four servers' links through an emulated network ([`LinkProfile`]:
    /// one-way delay and bandwidth per link), for measuring programs as they would
    /// run on a LAN or a WAN. `None` (the default) connects them directly.
    ///
    /// With a profile, the configuration's [`crate::Network`] follows the link
    /// ([`crate::Network::from_delay`]), so that [`crate::Comparison::Auto`] chooses
    /// for it; `None` leaves the configured network as it is.
    pub fn with_link(mut self, profile: Option<LinkProfile>) -> Self {
        self.link = profile;
        if let (Mode::FourParty(cfg), Some(p)) = (&mut self.mode, profile) {
            *cfg = cfg.with_network(crate::config::Network::from_delay(p.delay));
        }
        self
    }

    /// Sets the memory budget per server for one array
    /// ([`Config::with_memory_budget`]; the cleartext engine keeps the same budget).
    /// Inputs over it can only be used as [`crate::LargeArray`]s.
    pub fn with_memory_budget(mut self, bytes: u64) -> Self {
        if let Mode::FourParty(cfg) = &mut self.mode {
            *cfg = cfg.with_memory_budget(bytes);
            self.budget = cfg.memory_budget();
        } else {
            self.budget = bytes.max(crate::config::MIN_MEMORY_BUDGET);
        }
        self
    }

    /// Keeps the files of large arrays (inputs uploaded with
    /// [`LocalCluster::upload_rows`], and results too large for memory) in `dir`
    /// instead of a fresh directory under the system's temporary directory. Each
    /// file is encrypted under a key that only this process holds and deleted when
    /// no longer used; `dir` itself stays.
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch = Arc::new(Scratch::new(Some(dir.into())));
        self
    }

    /// What a session's large arrays may use: the budget and the scratch directory.
    fn large_env(&self) -> LargeEnv {
        let budget = match self.mode {
            Mode::FourParty(cfg) => cfg.memory_budget(),
            Mode::Clear => self.budget,
        };
        LargeEnv {
            budget,
            dir: Some(self.scratch.clone()),
        }
    }

    /// The number format (`None` for the cleartext engine).
    pub fn config(&self) -> Option<Config> {
        match self.mode {
            Mode::Clear => None,
            Mode::FourParty(c) => Some(c),
        }
    }

    /// Registers a client (or returns the existing one of that name).
    pub fn client(&mut self, name: &str) -> Client {
        if !self.clients.iter().any(|c| c == name) {
            self.clients.push(name.to_string());
        }
        Client {
            name: name.to_string(),
        }
    }

    /// `client` secret-shares `value` to `S1` and `S2` under `name`.
    ///
    /// # Errors
    /// [`Error::Encode`] for NaN, ±inf or out-of-range elements (naming the element);
    /// [`Error::DuplicateInput`] when the name is taken; [`Error::UnknownClient`] for a
    /// client of another cluster. Nothing is stored on error.
    pub fn upload<P: Public>(&mut self, client: &Client, name: &str, value: P) -> Result<()> {
        self.check_new_input(client, name)?;
        let v = value.view_dyn();
        let encode_err = |source| Error::Encode {
            name: name.to_string(),
            source,
        };
        let held = match self.mode {
            Mode::Clear => {
                // Refuse what no preset can encode: NaN, ±inf, |x| >= 2^63 (the widest bound).
                Config::paper().encode::<Z256>(&v).map_err(encode_err)?;
                Held::Memory(Box::new([
                    Data::Clear(v.to_owned()),
                    Data::Clear(v.to_owned()),
                ]))
            }
            Mode::FourParty(cfg) => {
                let [a, b] = share_with(&cfg, &v, &mut self.client_rng).map_err(encode_err)?;
                Held::Memory(Box::new([a.data, b.data]))
            }
        };
        self.inputs.insert(
            name.to_string(),
            StoredInput {
                owner: client.name.clone(),
                held,
            },
        );
        Ok(())
    }

    /// `client` secret-shares a matrix of `cols` columns under `name`, given as
    /// blocks of rows (any number of rows each): the way to upload a data set
    /// larger than memory, for [`Session::large_input`]. Each block is shared and
    /// its shares appended to `S1`'s and `S2`'s files (encrypted, in the cluster's
    /// data directory, see [`LocalCluster::with_data_dir`]); memory holds one block
    /// at a time.
    ///
    /// ```
    /// use privpy_core::{Config, LocalCluster};
    /// use ndarray::{Array2, Axis};
    /// let mut c = LocalCluster::new(Config::fast());
    /// let alice = c.client("alice");
    /// let blocks = (0..4).map(|b| Array2::from_elem((250, 3), b as f64));
    /// c.upload_rows(&alice, "x", 3, blocks)?;
    /// let out = c.run(|s| {
    ///     let x = s.large_input("x")?;
    ///     assert_eq!(x.shape(), [1000, 3]);
    ///     s.output("alice", "colsum", &x.sum_axis(Axis(0))?)
    /// })?;
    /// let colsum: ndarray::Array1<f64> = out.open(&alice, "colsum")?;
    /// assert!((colsum[0] - 1500.0).abs() < 1e-3);
    /// # Ok::<(), privpy_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Encode`] for NaN, ±inf or out-of-range elements (the index counts
    /// rows from the first block); [`Error::InvalidArgument`] for a block of
    /// another number of columns, or `cols == 0`; [`Error::DuplicateInput`];
    /// [`Error::UnknownClient`]; [`Error::Storage`] when the files cannot be
    /// written (a full disk). Nothing is stored on error.
    pub fn upload_rows<I>(
        &mut self,
        client: &Client,
        name: &str,
        cols: usize,
        blocks: I,
    ) -> Result<()>
    where
        I: IntoIterator<Item = ndarray::Array2<f64>>,
    {
        self.check_new_input(client, name)?;
        if cols == 0 {
            return Err(Error::InvalidArgument {
                operation: "upload_rows",
                reason: "a matrix of zero columns".into(),
            });
        }
        let dir = self.scratch.dir().map_err(|e| Error::Storage {
            what: "the cluster's data directory".into(),
            reason: e.to_string(),
        })?;
        let io = |e: std::io::Error| Error::Storage {
            what: format!("the files of input {name:?}"),
            reason: e.to_string(),
        };
        let mut w = [
            ScratchWriter::create(&dir).map_err(io)?,
            ScratchWriter::create(&dir).map_err(io)?,
        ];
        let mut rows = 0usize;
        for block in blocks {
            if block.ncols() != cols {
                return Err(Error::InvalidArgument {
                    operation: "upload_rows",
                    reason: format!(
                        "a block of shape {:?} after {rows} rows: every block has {cols} columns",
                        block.shape()
                    ),
                });
            }
            let v = block.view().into_dyn();
            let at = |e: crate::EncodeError| Error::Encode {
                name: name.to_string(),
                source: e.offset_rows(rows),
            };
            match self.mode {
                Mode::Clear => {
                    Config::paper()
                        .encode::<crate::ring::Z256>(&v)
                        .map_err(at)?;
                    let mut bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    let mut copy = bytes.clone();
                    w[0].write(&mut bytes).map_err(io)?;
                    w[1].write(&mut copy).map_err(io)?;
                }
                Mode::FourParty(cfg) => {
                    let [a, b] = share_with(&cfg, &v, &mut self.client_rng).map_err(at)?;
                    w[0].write(&mut a.to_bytes()).map_err(io)?;
                    w[1].write(&mut b.to_bytes()).map_err(io)?;
                }
            }
            rows += block.nrows();
        }
        let [w0, w1] = w;
        let files = [w0.finish().map_err(io)?, w1.finish().map_err(io)?];
        self.inputs.insert(
            name.to_string(),
            StoredInput {
                owner: client.name.clone(),
                held: Held::Files {
                    shape: [rows, cols],
                    files,
                },
            },
        );
        Ok(())
    }

    /// Refuses a client of another cluster and a name already taken.
    fn check_new_input(&self, client: &Client, name: &str) -> Result<()> {
        if !self.clients.contains(&client.name) {
            return Err(Error::UnknownClient {
                name: client.name.clone(),
            });
        }
        if let Some(prev) = self.inputs.get(name) {
            return Err(Error::DuplicateInput {
                name: name.to_string(),
                owner: prev.owner.clone(),
            });
        }
        Ok(())
    }

    /// Removes an input (for example, to upload a new version under the same name).
    pub fn remove_input(&mut self, name: &str) -> bool {
        self.inputs.remove(name).is_some()
    }

    /// Runs `program` on all four servers (or on the cleartext engine).
    ///
    /// # Errors
    /// The program's own error, an operator's error (see [`crate::Priv`]), a panic in
    /// the program (as [`Error::ProgramPanic`]), or a lost peer. When servers fail
    /// differently the root cause is reported, not the disconnections it caused.
    pub fn run<F>(&self, program: F) -> Result<RunOutput>
    where
        F: Fn(&Session) -> Result<()> + Sync,
    {
        let start = Instant::now();
        let cfg = match self.mode {
            Mode::Clear => {
                let eng: Rc<dyn Engine> = Rc::new(Cleartext);
                let out = self.run_party(eng, 0, &program, None);
                let out = out.map_err(|e| e.1)?;
                return Ok(RunOutput {
                    cfg: None,
                    outputs: out
                        .outputs
                        .into_iter()
                        .map(|(k, d)| {
                            let d = held(d);
                            (k, [d.clone(), d])
                        })
                        .collect(),
                    stats: ClusterStats::default(),
                    transcripts: None,
                    elapsed: start.elapsed(),
                });
            }
            Mode::FourParty(cfg) => cfg,
        };
        let seeds = match self.seed {
            Some(s) => SeedSource::Fixed(s),
            None => SeedSource::Os,
        };
        let mesh = channel_mesh_with(self.timeout, self.link);
        let results: Vec<std::result::Result<PartyOut, (Role, Error)>> = std::thread::scope(|sc| {
            let handles: Vec<_> = mesh
                .into_iter()
                .zip(Role::ALL)
                .map(|(t, role)| {
                    let program = &program;
                    sc.spawn(move || {
                        let t: Box<dyn Transport> = Box::new(t);
                        let eng =
                            make_party(role, cfg, t, seeds, self.record).map_err(|e| (role, e))?;
                        let slot = if role.is_primary() { role.index() } else { 0 };
                        let mut out = self.run_party(eng.clone(), slot, program, Some(role))?;
                        out.transcript = eng_transcript(&eng);
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(Role::ALL)
                .map(|(h, role)| {
                    h.join().unwrap_or_else(|p| {
                        Err((
                            role,
                            Error::ProgramPanic {
                                role,
                                message: panic_message(&*p),
                            },
                        ))
                    })
                })
                .collect()
        });
        let mut parties = Vec::with_capacity(4);
        let mut errors = Vec::new();
        for r in results {
            match r {
                Ok(p) => parties.push(p),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(root_cause(errors));
        }
        let mut stats = ClusterStats::default();
        let mut transcripts: [Vec<u8>; 4] = Default::default();
        for (k, p) in parties.iter_mut().enumerate() {
            stats.servers[k] = p.stats.clone();
            transcripts[k] = p.transcript.take().unwrap_or_default();
        }
        let mut outputs = BTreeMap::new();
        let mut primaries = parties.into_iter().take(2);
        let (Some(p1), Some(p2)) = (primaries.next(), primaries.next()) else {
            unreachable!("four servers finished without error")
        };
        let mut second: BTreeMap<_, _> = p2.outputs.into_iter().collect();
        for (key, d1) in p1.outputs {
            if let Some(d2) = second.remove(&key) {
                outputs.insert(key, [held(d1), held(d2)]);
            }
        }
        Ok(RunOutput {
            cfg: Some(cfg),
            outputs,
            stats,
            transcripts: self.record.then_some(transcripts),
            elapsed: start.elapsed(),
        })
    }

    /// One server's (or the cleartext engine's) execution of the program.
    fn run_party<F>(
        &self,
        eng: Rc<dyn Engine>,
        slot: usize,
        program: &F,
        role: Option<Role>,
    ) -> std::result::Result<PartyOut, (Role, Error)>
    where
        F: Fn(&Session) -> Result<()>,
    {
        let primary = role.is_none_or(Role::is_primary);
        let inputs = self
            .inputs
            .iter()
            .map(|(name, inp)| {
                let d = match (&inp.held, primary) {
                    (h, false) => Input::Held(Data::shape_only(h.shape())),
                    (Held::Memory(d), true) => Input::Held(d[slot].clone()),
                    (Held::Files { shape, files }, true) => Input::Stored {
                        shape: *shape,
                        reader: files[slot].clone(),
                    },
                };
                (name.clone(), d)
            })
            .collect();
        let ring = eng.config().map(|c| c.ring());
        let mut out = run_session(
            eng,
            inputs,
            self.large_env(),
            self.clients.clone(),
            program,
            role,
            self.unwind,
        )?;
        // A LocalCluster's outputs live in its RunOutput: large ones are read in.
        let who = role.unwrap_or(Role::S1);
        for (_, o) in &mut out.outputs {
            if matches!(o, Input::Stored { .. }) {
                let taken = std::mem::replace(o, Input::Held(Data::shape_only(&[0])));
                *o = Input::Held(crate::large::materialize(taken, ring).map_err(|e| (who, e))?);
            }
        }
        Ok(out)
    }
}

/// Runs `program` with a fresh [`Session`] on `eng`, turning operator aborts and
/// panics into errors attributed to `role`.
pub(crate) fn run_session<F>(
    eng: Rc<dyn Engine>,
    inputs: BTreeMap<String, Input>,
    env: LargeEnv,
    clients: Vec<String>,
    program: &F,
    role: Option<Role>,
    unwind: bool,
) -> std::result::Result<PartyOut, (Role, Error)>
where
    F: Fn(&Session) -> Result<()> + ?Sized,
{
    let who = role.unwrap_or(Role::S1);
    // Operators record their error and return placeholders (nothing unwinds); the
    // guard stops all communication after the first one.
    let outer = crate::priv_array::take_failure();
    let outer_unwind = crate::priv_array::set_unwind(unwind);
    let guarded: Rc<dyn Engine> = Rc::new(crate::session::Guarded { inner: eng.clone() });
    let session = Session {
        eng: guarded,
        inputs,
        env,
        clients,
        outputs: RefCell::new(Vec::new()),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| program(&session)));
    let failure = crate::priv_array::take_failure();
    crate::priv_array::set_failure(outer);
    crate::priv_array::set_unwind(outer_unwind);
    match (failure, outcome) {
        // The first operator error explains whatever the program did after it.
        (Some(e), _) => return Err((who, e)),
        (None, Ok(Ok(()))) => {}
        (None, Ok(Err(e))) => return Err((who, e)),
        (None, Err(payload)) => {
            return Err((
                who,
                Error::ProgramPanic {
                    role: who,
                    message: panic_message(&*payload),
                },
            ));
        }
    }
    let outputs = session
        .outputs
        .into_inner()
        .into_iter()
        .map(|(c, n, d)| ((c, n), d))
        .collect();
    Ok(PartyOut {
        outputs,
        stats: eng.stats(),
        transcript: None,
    })
}

/// An output `run_party` already read into memory.
fn held(i: Input) -> Data {
    match i {
        Input::Held(d) => d,
        Input::Stored { shape, .. } => Data::shape_only(&shape),
    }
}

pub(crate) struct PartyOut {
    pub(crate) outputs: Vec<((String, String), Input)>,
    pub(crate) stats: CommStats,
    pub(crate) transcript: Option<Vec<u8>>,
}

pub(crate) fn make_party(
    role: Role,
    cfg: Config,
    t: Box<dyn Transport>,
    seeds: SeedSource,
    record: bool,
) -> Result<Rc<dyn Engine>> {
    Ok(match cfg.ring() {
        RingKind::Z64 => Rc::new(Party::<Z64>::setup(role, cfg, t, seeds, record)?),
        RingKind::Z128 => Rc::new(Party::<Z128>::setup(role, cfg, t, seeds, record)?),
        RingKind::Z256 => Rc::new(Party::<Z256>::setup(role, cfg, t, seeds, record)?),
    })
}

fn eng_transcript(eng: &Rc<dyn Engine>) -> Option<Vec<u8>> {
    eng.take_transcript()
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// Picks the error that explains the others: a lost peer is usually the consequence
/// of another server's failure, so prefer any other error.
fn root_cause(mut errors: Vec<(Role, Error)>) -> Error {
    if let Some(pos) = errors
        .iter()
        .position(|(_, e)| !matches!(e, Error::PeerLost { .. }))
    {
        return errors.swap_remove(pos).1;
    }
    // Only lost peers: blame one that did not itself fail (it stopped or went
    // silent), not a server that gave up because of it.
    let failed: Vec<Role> = errors.iter().map(|(r, _)| *r).collect();
    let pos = errors
        .iter()
        .position(|(_, e)| matches!(e, Error::PeerLost { peer, .. } if !failed.contains(peer)))
        .unwrap_or(0);
    errors.swap_remove(pos).1
}

/// The result of [`LocalCluster::run`]: output shares per client, and statistics.
pub struct RunOutput {
    cfg: Option<Config>,
    outputs: BTreeMap<(String, String), [Data; 2]>,
    stats: ClusterStats,
    transcripts: Option<[Vec<u8>; 4]>,
    elapsed: Duration,
}

impl std::fmt::Debug for RunOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOutput")
            .field("outputs", &self.outputs.keys().collect::<Vec<_>>())
            .field("stats", &self.stats)
            .field("elapsed", &self.elapsed)
            .finish_non_exhaustive()
    }
}

impl RunOutput {
    /// `client` reconstructs its output `name` from the two servers' shares.
    ///
    /// # Errors
    /// [`Error::NoSuchOutput`] when `client` has no output of that name (another
    /// client's output is refused the same way); a rank error when the output does
    /// not have `A`'s number of dimensions.
    pub fn open<A: PrivType>(&self, client: &Client, name: &str) -> Result<A> {
        let key = (client.name.clone(), name.to_string());
        let [d1, d2] = self.outputs.get(&key).ok_or_else(|| Error::NoSuchOutput {
            client: client.name.clone(),
            name: name.to_string(),
        })?;
        let value: ArrayD<f64> = match self.cfg {
            None => match d1 {
                Data::Clear(a) => a.clone(),
                _ => unreachable!("cleartext outputs are cleartext"),
            },
            Some(cfg) => reconstruct(
                &cfg,
                &Share { data: d1.clone() },
                &Share { data: d2.clone() },
            )?,
        };
        Ok(A::from_dyn(value)?)
    }

    /// The two servers' shares of an output, as a networked client would receive them.
    pub fn shares(&self, client: &Client, name: &str) -> Option<[Share; 2]> {
        let [a, b] = self.outputs.get(&(client.name.clone(), name.to_string()))?;
        Some([Share { data: a.clone() }, Share { data: b.clone() }])
    }

    /// Bytes, messages and rounds of every server during the program.
    pub fn stats(&self) -> &ClusterStats {
        &self.stats
    }

    /// Wall-clock time of the run, including thread start and seed agreement.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Every payload byte `role` received, when transcripts were recorded.
    pub fn transcript(&self, role: Role) -> Option<&[u8]> {
        self.transcripts
            .as_ref()
            .map(|t| t[role.index()].as_slice())
    }
}
