//! One server of a networked deployment: runs a program over any [`Transport`].
//!
//! [`LocalCluster`](crate::LocalCluster) runs the four servers as threads of one
//! process; a networked server (`privpy-net`) runs one of them, connected to the
//! other three by TLS. Both call the same engine: [`run_node`] sets up the server's
//! side of the session over the transport it is given (seed agreement included),
//! runs the program and hands back this server's output shares.
//!
//! ```
//! use privpy_core::node::{NodeInput, run_node};
//! use privpy_core::transport::{Role, channel_mesh};
//! use privpy_core::{Config, Session, share::share};
//! use std::collections::BTreeMap;
//! use std::time::Duration;
//!
//! let cfg = Config::default();
//! let x = ndarray::array![1.0, 2.0, -3.5].into_dyn();
//! let [a, b] = share(&cfg, &x.view())?;
//! let program = |s: &Session| {
//!     let x = s.input::<ndarray::Array1<f64>>("x")?;
//!     s.output("alice", "y", &(&x * 2.0))
//! };
//! let clients = vec!["alice".to_string()];
//! let outs = std::thread::scope(|sc| {
//!     let hs: Vec<_> = channel_mesh(Duration::from_secs(10))
//!         .into_iter()
//!         .zip(Role::ALL)
//!         .map(|(t, role)| {
//!             let input = match role {
//!                 Role::S1 => NodeInput::Share(a.clone()),
//!                 Role::S2 => NodeInput::Share(b.clone()),
//!                 _ => NodeInput::Shape(vec![3]),
//!             };
//!             let inputs = BTreeMap::from([("x".to_string(), input)]);
//!             let clients = clients.clone();
//!             sc.spawn(move || run_node(role, cfg, Box::new(t), inputs, clients, &program))
//!         })
//!         .collect();
//!     hs.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
//! });
//! let s1 = &outs[0].as_ref().unwrap().outputs[0].share;
//! let s2 = &outs[1].as_ref().unwrap().outputs[0].share;
//! let y = privpy_core::share::reconstruct(&cfg, s1, s2)?;
//! assert!((y[2] + 7.0).abs() < 1e-6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::cluster::{make_party, run_session};
use crate::config::Config;
use crate::data::Data;
use crate::error::{Error, Result};
use crate::large::{Input, LargeEnv, Scratch, ShareReader};
use crate::protocol::SeedSource;
use crate::session::Session;
use crate::share::Share;
use crate::transport::{CommStats, Role, Transport};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// What a server holds of one input.
#[derive(Clone)]
pub enum NodeInput {
    /// `S1`'s or `S2`'s share.
    Share(Share),
    /// The shape only: what the assistants `Sa` and `Sb` know of an input.
    Shape(Vec<usize>),
    /// `S1`'s or `S2`'s share of a matrix kept in storage and read on demand (for
    /// [`Session::large_input`]; [`Session::input`] loads it when it fits the
    /// memory budget). Its bytes are elements of the configuration's ring.
    Stored {
        /// `[rows, columns]`.
        shape: [usize; 2],
        /// Reads the share's bytes.
        reader: Arc<dyn ShareReader>,
    },
}

impl std::fmt::Debug for NodeInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NodeInput::Share(s) => f.debug_tuple("Share").field(s).finish(),
            NodeInput::Shape(s) => f.debug_tuple("Shape").field(s).finish(),
            NodeInput::Stored { shape, .. } => f
                .debug_struct("Stored")
                .field("shape", shape)
                .finish_non_exhaustive(),
        }
    }
}

impl NodeInput {
    /// The input's shape.
    pub fn shape(&self) -> &[usize] {
        match self {
            NodeInput::Share(s) => s.shape(),
            NodeInput::Shape(s) => s,
            NodeInput::Stored { shape, .. } => shape,
        }
    }
}

/// One output the program wrote, as this server holds it.
#[derive(Clone)]
pub struct NodeOutput {
    /// The client entitled to open it.
    pub client: String,
    /// The output's name.
    pub name: String,
    /// This server's share (shape only on `Sa` and `Sb`, and for a large output).
    pub share: Share,
    /// A large output ([`Session::output_large`]) on `S1` or `S2`: its share's
    /// bytes (elements of the configuration's ring), read on demand from the job's
    /// scratch files; `share` then holds only the shape.
    pub stored: Option<Arc<dyn ShareReader>>,
}

impl std::fmt::Debug for NodeOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOutput")
            .field("client", &self.client)
            .field("name", &self.name)
            .field("share", &self.share)
            .field("stored", &self.stored.is_some())
            .finish()
    }
}

/// The result of [`run_node`] on one server.
#[derive(Clone, Debug)]
pub struct NodeResult {
    /// The outputs in the order the program wrote them.
    pub outputs: Vec<NodeOutput>,
    /// This server's communication during the program.
    pub stats: CommStats,
}

/// Runs `program` as server `role` over `transport`, with seeds from the operating
/// system's generator.
///
/// The other three servers must call it at the same time with the same program,
/// configuration, input names and shapes, and client list. `S1` and `S2` pass their
/// shares, `Sa` and `Sb` the shapes ([`NodeInput::Shape`]).
///
/// # Errors
/// [`Error::MissingShare`] when a primary server is given a shape instead of a share,
/// [`Error::RingMismatch`] for a share of another ring; the program's own error; a
/// panic in the program ([`Error::ProgramPanic`]); a lost peer ([`Error::PeerLost`]).
pub fn run_node(
    role: Role,
    cfg: Config,
    transport: Box<dyn Transport>,
    inputs: BTreeMap<String, NodeInput>,
    clients: Vec<String>,
    program: &(dyn Fn(&Session) -> Result<()> + Sync),
) -> Result<NodeResult> {
    run_node_in(role, cfg, transport, inputs, clients, None, program)
}

/// [`run_node`] with a directory for the scratch files of large arrays
/// ([`crate::LargeArray`] results larger than a quarter of the memory budget).
/// Without one, such results are refused with [`Error::OverBudget`]. Each file is
/// encrypted under a key only this process holds, and deleted when no longer
/// used; the caller should empty the directory at start-up (files a crash left
/// behind are unreadable).
///
/// # Errors
/// As [`run_node`]; [`Error::Storage`] when a scratch file cannot be written
/// (`scratch` is created when the first one is).
pub fn run_node_in(
    role: Role,
    cfg: Config,
    transport: Box<dyn Transport>,
    inputs: BTreeMap<String, NodeInput>,
    clients: Vec<String>,
    scratch: Option<&Path>,
    program: &(dyn Fn(&Session) -> Result<()> + Sync),
) -> Result<NodeResult> {
    let env = LargeEnv {
        budget: cfg.memory_budget(),
        dir: scratch.map(|p| Arc::new(Scratch::new(Some(p.to_path_buf())))),
    };
    let mut held = BTreeMap::new();
    for (name, input) in inputs {
        let d = match (input, role.is_primary()) {
            (NodeInput::Share(s), true) => {
                if s.ring() != Some(cfg.ring()) {
                    return Err(Error::RingMismatch {
                        name: name.clone(),
                        share: s.ring(),
                        config: cfg.ring(),
                    });
                }
                Input::Held(s.data)
            }
            (NodeInput::Stored { shape, reader }, true) => Input::Stored { shape, reader },
            (NodeInput::Shape(shape), false) => Input::Held(Data::shape_only(&shape)),
            (NodeInput::Share(s), false) => Input::Held(Data::shape_only(s.shape())),
            (NodeInput::Stored { shape, .. }, false) => Input::Held(Data::shape_only(&shape)),
            (NodeInput::Shape(_), true) => {
                return Err(Error::MissingShare {
                    role,
                    name: name.clone(),
                });
            }
        };
        held.insert(name, d);
    }
    let eng = make_party(role, cfg, transport, SeedSource::Os, false)?;
    let out =
        run_session(eng, held, env, clients, program, Some(role), true).map_err(|(_, e)| e)?;
    Ok(NodeResult {
        outputs: out
            .outputs
            .into_iter()
            .map(|((client, name), out)| match out {
                Input::Held(data) => NodeOutput {
                    client,
                    name,
                    share: Share { data },
                    stored: None,
                },
                Input::Stored { shape, reader } => NodeOutput {
                    client,
                    name,
                    share: Share {
                        data: Data::shape_only(&shape),
                    },
                    stored: Some(reader),
                },
            })
            .collect(),
        stats: out.stats,
    })
}
