//! Programs a server can run, registered under names and versions.
//!
//! ```
//! use privpy_net::registry::{Program, Registry};
//! use privpy_core::Session;
//! use ndarray::Array1;
//!
//! let mut programs = Registry::new();
//! programs.register(
//!     Program::new("square", "1", |s: &Session, job| {
//!         let x = s.input::<Array1<f64>>("x")?;
//!         s.output(job.client(), "y", &(&x * &x))
//!     })
//!     .input("x", [None]),
//! );
//! assert!(programs.get("square").is_some());
//! ```
//!
//! Every server of a cluster must carry the same name with the same version; a job
//! whose program is missing or has another version on any server is refused at
//! session start, before any share moves.

use privpy_core::{Result, Session};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// What a running program knows about its job.
#[derive(Clone, Debug)]
pub struct Job {
    pub(crate) id: u64,
    pub(crate) client: String,
    pub(crate) args: Vec<(String, f64)>,
    /// How each declared prepared parameter is obtained in this job.
    pub(crate) prepared: Vec<crate::wire::PreparedUse>,
    /// The server's kept prepared matrices (none when run locally).
    pub(crate) cache: Option<Arc<PreparedCache>>,
}

/// Prepared weight matrices a server keeps across jobs, by key (at most
/// [`PreparedCache::CAPACITY`]; the oldest goes first).
#[derive(Debug, Default)]
pub struct PreparedCache {
    kept: std::sync::Mutex<std::collections::VecDeque<(String, privpy_core::PreparedShare)>>,
}

impl PreparedCache {
    /// How many prepared matrices a server keeps.
    pub const CAPACITY: usize = 32;

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::VecDeque<(String, privpy_core::PreparedShare)>>
    {
        match self.kept.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The matrix kept under `key`.
    pub fn get(&self, key: &str) -> Option<privpy_core::PreparedShare> {
        self.lock()
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
    }

    /// Whether `key` is kept.
    pub fn contains(&self, key: &str) -> bool {
        self.lock().iter().any(|(k, _)| k == key)
    }

    /// Keeps `share` under `key`.
    pub fn put(&self, key: &str, share: privpy_core::PreparedShare) {
        let mut kept = self.lock();
        kept.retain(|(k, _)| k != key);
        if kept.len() >= Self::CAPACITY {
            kept.pop_front();
        }
        kept.push_back((key.to_string(), share));
    }
}

impl Job {
    /// The job's identifier.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client that asked for the run (the usual recipient of the outputs).
    pub fn client(&self) -> &str {
        &self.client
    }

    /// Public argument `name` of this run (the program declared it with
    /// [`Program::arg`]; the client's value, or the declared default).
    pub fn arg(&self, name: &str) -> f64 {
        self.args
            .iter()
            .find(|(n, _)| n == name)
            .map_or(f64::NAN, |(_, v)| *v)
    }

    /// Matrix parameter `name` prepared as the right operand of products
    /// ([`privpy_core::Prepared`]). On a server, for a parameter the program declares
    /// with [`Program::prepared`] and bound to stored inputs, the first job prepares
    /// it and every server keeps its part; later jobs on the same uploads reuse it
    /// with no communication, and each product then sends only its left operand's
    /// masked shares (why that is secure: [`privpy_core::Session::attach`]). Run
    /// locally ([`Program::call`]) it is prepared in the session.
    ///
    /// # Errors
    /// No such input, not a matrix, a lost peer; a kept matrix that is gone (the
    /// job fails, and the next one prepares again).
    pub fn prepared(&self, s: &Session, name: &str) -> Result<privpy_core::Prepared> {
        let plan = self.prepared.iter().find(|u| u.param == name);
        match (plan, &self.cache) {
            (Some(u), Some(cache)) if u.reuse => match cache.get(&u.key) {
                Some(share) => s.attach(&share),
                None => Err(privpy_core::Error::InvalidArgument {
                    operation: "prepared",
                    reason: format!("the prepared {name:?} is no longer kept here"),
                }),
            },
            (Some(u), Some(cache)) => {
                let p = s.input::<ndarray::Array2<f64>>(name)?.prepare()?;
                cache.put(&u.key, p.share());
                Ok(p)
            }
            _ => s.input::<ndarray::Array2<f64>>(name)?.prepare(),
        }
    }

    /// [`Job::arg`] as a count (rounded, at least 0).
    pub fn count(&self, name: &str) -> usize {
        let v = self.arg(name);
        if v.is_finite() && v > 0.0 {
            v.round() as usize
        } else {
            0
        }
    }
}

type Body = dyn Fn(&Session, &Job) -> Result<()> + Send + Sync;

/// An admission check: the parameters' shapes (by name) and the resolved arguments.
type Check = dyn Fn(&[(String, Vec<usize>)], &[(String, f64)]) -> std::result::Result<(), String>
    + Send
    + Sync;

/// A named, versioned program with its declared inputs.
#[derive(Clone)]
pub struct Program {
    name: String,
    version: String,
    params: Vec<(String, Vec<Option<usize>>)>,
    args: Vec<(String, f64)>,
    body: Arc<Body>,
    checks: Vec<Arc<Check>>,
    row_wise: Option<String>,
    prepared: Vec<String>,
}

impl fmt::Debug for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Program")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("params", &self.params)
            .field("args", &self.args)
            .finish_non_exhaustive()
    }
}

impl Program {
    /// A program: `body` runs on all four servers with a [`Session`] whose inputs are
    /// the declared parameters.
    pub fn new(
        name: &str,
        version: &str,
        body: impl Fn(&Session, &Job) -> Result<()> + Send + Sync + 'static,
    ) -> Program {
        Program {
            name: name.to_string(),
            version: version.to_string(),
            params: Vec::new(),
            args: Vec::new(),
            body: Arc::new(body),
            checks: Vec::new(),
            row_wise: None,
            prepared: Vec::new(),
        }
    }

    /// Adds an admission check on the inputs' shapes and the arguments, run by `S1`
    /// and `S2` before any share moves; an `Err` refuses the job with its message.
    /// Stock programs use it to refuse arguments that would copy an input to an
    /// output (zero iterations, a statistic of one row, as many centroids as points).
    pub fn check(
        mut self,
        f: impl Fn(&[(String, Vec<usize>)], &[(String, f64)]) -> std::result::Result<(), String>
        + Send
        + Sync
        + 'static,
    ) -> Program {
        self.checks.push(Arc::new(f));
        self
    }

    /// Caps the job's inputs at `n` elements in all (every parameter, after its
    /// uploads are stacked): a larger job is refused ([`crate::wire::RefusalKind::Invalid`])
    /// by `S1` and `S2` before any share moves. Stock programs declare one each, which
    /// bounds a job's memory and time by its inputs.
    pub fn max_elements(self, n: usize) -> Program {
        let name = self.name.clone();
        self.check(move |shapes, _| {
            let total: usize = shapes
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .fold(0, usize::saturating_add);
            if total > n {
                Err(format!(
                    "program {name:?} accepts at most {n} input elements in all; this job binds {total}"
                ))
            } else {
                Ok(())
            }
        })
    }

    /// Runs the admission checks.
    ///
    /// # Errors
    /// The first failing check's message.
    pub fn admit(
        &self,
        shapes: &[(String, Vec<usize>)],
        args: &[(String, f64)],
    ) -> std::result::Result<(), String> {
        self.checks.iter().try_for_each(|c| c(shapes, args))
    }

    /// Declares an input parameter and its shape: `Some(n)` fixes a dimension,
    /// `None` accepts any size. Jobs whose inputs do not match are refused before
    /// they start, with a message naming the parameter.
    pub fn input<const N: usize>(mut self, name: &str, shape: [Option<usize>; N]) -> Program {
        self.params.push((name.to_string(), shape.to_vec()));
        self
    }

    /// Declares the program **row-wise** in `param`: each row of every output for the
    /// caller depends only on the same row of `param` (and on the other parameters),
    /// and every such output has one row per row of `param`. Inference is: a batch
    /// of images in, one prediction per image out. Only a row-wise program can be
    /// deployed as a model (`[[models]]`), because only then may `S1` batch several
    /// clients' requests into one job and hand each client its own rows: no row of
    /// one client's result depends on another client's input. A program that
    /// aggregates over rows (statistics, training) must not declare it.
    pub fn row_wise(mut self, param: &str) -> Program {
        self.row_wise = Some(param.to_string());
        self
    }

    /// Declares that the program takes matrix parameter `param` through
    /// [`Job::prepared`]: servers keep its prepared form across jobs on the same
    /// uploads, so that a model served to many jobs sends its weights once.
    pub fn prepared(mut self, param: &str) -> Program {
        self.prepared.push(param.to_string());
        self
    }

    /// The parameters declared with [`Program::prepared`].
    pub fn prepared_params(&self) -> &[String] {
        &self.prepared
    }

    /// The parameter the program is row-wise in ([`Program::row_wise`]), if any.
    pub fn row_wise_param(&self) -> Option<&str> {
        self.row_wise.as_deref()
    }

    /// Declares a public argument (a hyperparameter: iterations, learning rate …)
    /// with its default. Clients may set it per run; it is public to all servers.
    pub fn arg(mut self, name: &str, default: f64) -> Program {
        self.args.push((name.to_string(), default));
        self
    }

    /// The declared arguments and defaults.
    pub fn args(&self) -> &[(String, f64)] {
        &self.args
    }

    /// The full argument list of a run: the declared defaults overridden by `given`.
    ///
    /// # Errors
    /// An argument the program does not declare, or a non-finite value.
    pub fn resolve_args(
        &self,
        given: &[(String, f64)],
    ) -> std::result::Result<Vec<(String, f64)>, String> {
        let mut out = self.args.clone();
        for (n, v) in given {
            if !v.is_finite() {
                return Err(format!("argument {n:?} must be a finite number"));
            }
            match out.iter_mut().find(|(m, _)| m == n) {
                Some(slot) => slot.1 = *v,
                None => {
                    return Err(format!(
                        "program {:?} has no argument {n:?} (its arguments: {})",
                        self.name,
                        self.args
                            .iter()
                            .map(|(a, _)| a.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The program's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The declared parameters and shapes.
    pub fn params(&self) -> &[(String, Vec<Option<usize>>)] {
        &self.params
    }

    /// Checks a parameter's shape against the declaration.
    ///
    /// # Errors
    /// A message naming the parameter, the shape and the expectation.
    pub fn check_shape(&self, param: &str, shape: &[usize]) -> std::result::Result<(), String> {
        let Some((_, want)) = self.params.iter().find(|(n, _)| n == param) else {
            return Err(format!(
                "program {:?} has no input {param:?} (its inputs: {})",
                self.name,
                self.param_names()
            ));
        };
        let ok = want.len() == shape.len()
            && want
                .iter()
                .zip(shape)
                .all(|(w, &d)| w.is_none_or(|w| w == d));
        if ok {
            Ok(())
        } else {
            let pattern: Vec<String> = want
                .iter()
                .map(|w| w.map_or("_".to_string(), |d| d.to_string()))
                .collect();
            Err(format!(
                "input {param:?} of program {:?} must have shape [{}], got {shape:?}",
                self.name,
                pattern.join(", ")
            ))
        }
    }

    fn param_names(&self) -> String {
        let names: Vec<&str> = self.params.iter().map(|(n, _)| n.as_str()).collect();
        names.join(", ")
    }

    /// Runs the program's body on `s` as if `client` had asked with `args`: a
    /// registered program on a `LocalCluster` or the cleartext engine (tests, local
    /// development).
    ///
    /// # Errors
    /// An undeclared or non-finite argument ([`privpy_core::Error::InvalidArgument`]), or the
    /// program's own error.
    pub fn call(&self, s: &Session, client: &str, args: &[(String, f64)]) -> Result<()> {
        let args =
            self.resolve_args(args)
                .map_err(|reason| privpy_core::Error::InvalidArgument {
                    operation: "program argument",
                    reason,
                })?;
        (self.body)(
            s,
            &Job {
                id: 0,
                client: client.to_string(),
                args,
                prepared: Vec::new(),
                cache: None,
            },
        )
    }

    pub(crate) fn body(&self) -> Arc<Body> {
        self.body.clone()
    }
}

/// The programs a server carries.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    programs: BTreeMap<String, Program>,
}

impl Registry {
    /// No programs.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds (or replaces) a program.
    pub fn register(&mut self, program: Program) -> &mut Registry {
        self.programs.insert(program.name.clone(), program);
        self
    }

    /// The program registered under `name`.
    pub fn get(&self, name: &str) -> Option<&Program> {
        self.programs.get(name)
    }

    /// Every program, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Program> {
        self.programs.values()
    }
}
