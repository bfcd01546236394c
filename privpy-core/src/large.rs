//! [`LargeArray`]: secret matrices larger than memory (the paper's `LargeArray`,
//! PrivPy §5: data sets that do not fit in a server's memory are kept on disk and
//! processed in batches).
//!
//! A `LargeArray` is a 2-D secret whose shares stay in files: on `S1` and `S2` its
//! share is read from disk a chunk of rows at a time, on `Sa` and `Sb` it is only a
//! shape, as every secret is. Its operations are the ordinary ones of
//! [`crate::Priv`], applied chunk by chunk: the protocols, and so each server's
//! view, are exactly those of the same operations on the chunks as in-memory
//! secrets (the chunk boundaries depend only on the public shape and the
//! configuration's [`crate::Config::memory_budget`]). Results that are themselves
//! large go to scratch files in the server's data directory.
//!
//! **At rest.** Scratch files (intermediate results, and in a [`crate::LocalCluster`]
//! the uploaded shares) hold one server's share, encrypted with AES-256-CTR under a
//! key drawn at random when the file is created and kept only in memory: a file
//! left behind by a crash can never be read, and each is deleted when its last
//! `LargeArray` is dropped. A networked server reads stored inputs from its share
//! store, which encrypts them the same way ([`ShareReader`]).

use crate::broadcast::broadcast_shape;
use crate::data::{Data, map_data};
use crate::engine::{BinOp, Engine};
use crate::error::{Error, Result, ShapeError};
use crate::priv_array::{DotOperand, Operand, Priv};
use crate::share::Share;
use ndarray::{Array1, Array2, ArrayD, ArrayViewD, Axis, Slice};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};

/// Random access to one primary server's share of a large input: its elements in
/// row-major order, little-endian, [`crate::RingKind::bytes`] bytes each (on the
/// cleartext engine, `f64`s).
///
/// A networked server implements it over its share store; a [`crate::LocalCluster`]
/// over encrypted files. Implementations decrypt what they read.
pub trait ShareReader: Send + Sync {
    /// Fills `buf` with the share's bytes starting at byte `offset`.
    ///
    /// # Errors
    /// An I/O error, or bytes past the end of the share.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()>;
}

/// XORs AES-256-CTR's stream under `key` at byte `offset` of the stream into
/// `data` (counter block `offset / 16`, little-endian): pieces of one record
/// encrypted apart decrypt as one stream.
pub fn ctr_xor_at(key: &[u8; 32], offset: u64, data: &mut [u8]) {
    use aes::cipher::{Array, BlockCipherEncrypt, KeyInit};
    let cipher = aes::Aes256::new(&Array::from(*key));
    let mut counter = u128::from(offset / 16);
    let mut skip = (offset % 16) as usize;
    let mut pos = 0;
    while pos < data.len() {
        let want = (data.len() - pos + skip).min(16 * 64);
        let n = want.div_ceil(16);
        let mut blocks = [[0u8; 16]; 64];
        for b in blocks.iter_mut().take(n) {
            *b = counter.to_le_bytes();
            counter += 1;
        }
        cipher.encrypt_blocks(aes::Block::cast_slice_from_core_mut(&mut blocks[..n]));
        let stream = blocks[..n].iter().flatten().skip(skip);
        let end = (pos + want - skip).min(data.len());
        for (d, k) in data[pos..end].iter_mut().zip(stream) {
            *d ^= k;
        }
        pos = end;
        skip = 0;
    }
}

/// A directory for scratch files. Removed with everything in it when dropped if
/// this process created it.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
    owned: bool,
}

impl ScratchDir {
    /// Uses (and creates) `path`; files in it are this process's to delete.
    pub(crate) fn at(path: &Path) -> std::io::Result<ScratchDir> {
        std::fs::create_dir_all(path)?;
        Ok(ScratchDir {
            path: path.to_path_buf(),
            owned: false,
        })
    }

    /// A fresh directory under the system's temporary directory, removed on drop.
    pub(crate) fn temporary() -> std::io::Result<ScratchDir> {
        let path = std::env::temp_dir().join(format!(
            "privpy-{}-{:016x}",
            std::process::id(),
            random_u64()?
        ));
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDir { path, owned: true })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Where scratch files go: a directory made on first use (so that programs that
/// never need one create nothing).
#[derive(Debug)]
pub(crate) struct Scratch {
    /// `None`: a fresh directory under the system's temporary directory.
    path: Option<PathBuf>,
    dir: std::sync::OnceLock<Arc<ScratchDir>>,
}

impl Scratch {
    pub(crate) fn new(path: Option<PathBuf>) -> Scratch {
        Scratch {
            path,
            dir: std::sync::OnceLock::new(),
        }
    }

    /// The directory, created now if it was not yet.
    pub(crate) fn dir(&self) -> std::io::Result<Arc<ScratchDir>> {
        if let Some(d) = self.dir.get() {
            return Ok(d.clone());
        }
        let made = match &self.path {
            Some(p) => ScratchDir::at(p)?,
            None => ScratchDir::temporary()?,
        };
        // Another thread may have made one meanwhile: theirs is kept (a temporary
        // one of ours is removed as it drops).
        Ok(self.dir.get_or_init(|| Arc::new(made)).clone())
    }
}

fn random_u64() -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(u64::from_le_bytes(b))
}

/// An encrypted scratch file, deleted when dropped.
pub(crate) struct ScratchFile {
    path: PathBuf,
    file: Mutex<File>,
    key: [u8; 32],
    len: u64,
    /// Keeps the directory alive while the file is.
    _dir: Arc<ScratchDir>,
}

impl std::fmt::Debug for ScratchFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScratchFile")
            .field("path", &self.path)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl Drop for ScratchFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ShareReader for ScratchFile {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset.saturating_add(buf.len() as u64) > self.len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "bytes {offset}..{} of a {}-byte share",
                    offset + buf.len() as u64,
                    self.len
                ),
            ));
        }
        {
            let mut f = match self.file.lock() {
                Ok(f) => f,
                Err(p) => p.into_inner(),
            };
            f.seek(SeekFrom::Start(offset))?;
            f.read_exact(buf)?;
        }
        ctr_xor_at(&self.key, offset, buf);
        Ok(())
    }
}

/// Writes a scratch file sequentially.
pub(crate) struct ScratchWriter {
    file: ScratchFile,
}

impl ScratchWriter {
    pub(crate) fn create(dir: &Arc<ScratchDir>) -> std::io::Result<ScratchWriter> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| std::io::Error::other(e.to_string()))?;
        let path = dir.path().join(format!("{:016x}.share", random_u64()?));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(ScratchWriter {
            file: ScratchFile {
                path,
                file: Mutex::new(file),
                key,
                len: 0,
                _dir: dir.clone(),
            },
        })
    }

    /// Appends `bytes` (encrypted in place).
    pub(crate) fn write(&mut self, bytes: &mut [u8]) -> std::io::Result<()> {
        ctr_xor_at(&self.file.key, self.file.len, bytes);
        let f =
            self.file.file.get_mut().map_err(|_| {
                std::io::Error::other("a scratch file's lock was poisoned by a panic")
            })?;
        f.write_all(bytes)?;
        self.file.len += bytes.len() as u64;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> std::io::Result<Arc<ScratchFile>> {
        if let Ok(f) = self.file.file.get_mut() {
            f.flush()?;
        }
        Ok(Arc::new(self.file))
    }
}

/// Where a session's large arrays live: the memory budget, and the directory for
/// scratch files (none: results larger than the budget's quarter are refused).
#[derive(Clone, Debug)]
pub(crate) struct LargeEnv {
    pub(crate) budget: u64,
    pub(crate) dir: Option<Arc<Scratch>>,
}

/// What a server holds of one input of a session.
#[derive(Clone)]
pub(crate) enum Input {
    /// In memory (a share, a cleartext value, or a shape).
    Held(Data),
    /// A primary server's share of a matrix, read on demand.
    Stored {
        shape: [usize; 2],
        reader: Arc<dyn ShareReader>,
    },
}

impl Input {
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            Input::Held(d) => d.shape(),
            Input::Stored { shape, .. } => shape,
        }
    }
}

fn storage_err(what: &str, e: std::io::Error) -> Error {
    Error::Storage {
        what: what.to_string(),
        reason: e.to_string(),
    }
}

/// The bytes one element takes in this engine's shares (8 for cleartext `f64`).
pub(crate) fn element_bytes(eng: &dyn Engine) -> u64 {
    eng.config().map_or(8, |c| c.ring().bytes() as u64)
}

/// The share bytes of an array of `shape` (saturating).
pub(crate) fn share_bytes(eng: &dyn Engine, shape: &[usize]) -> u64 {
    shape
        .iter()
        .fold(element_bytes(eng), |a, &d| a.saturating_mul(d as u64))
}

/// Refuses to hold `shape` in memory when it is over the budget.
pub(crate) fn check_budget(
    eng: &dyn Engine,
    budget: u64,
    what: impl FnOnce() -> String,
    shape: &[usize],
) -> Result<()> {
    let bytes = share_bytes(eng, shape);
    if bytes > budget {
        return Err(Error::OverBudget {
            what: what(),
            bytes,
            budget,
        });
    }
    Ok(())
}

/// What a primary server (`ring`) or the cleartext engine (`None`) holds of
/// `input`, read whole into memory.
pub(crate) fn materialize(input: Input, ring: Option<crate::RingKind>) -> Result<Data> {
    match input {
        Input::Held(d) => Ok(d),
        Input::Stored { shape, reader } => {
            let elem = ring.map_or(8, |r| r.bytes() as u64);
            let len = (shape[0] as u64) * (shape[1] as u64) * elem;
            let mut buf = vec![
                0u8;
                usize::try_from(len).map_err(|_| Error::OverBudget {
                    what: "an output".into(),
                    bytes: len,
                    budget: usize::MAX as u64,
                })?
            ];
            reader
                .read_at(0, &mut buf)
                .map_err(|e| storage_err("an output's file", e))?;
            match ring {
                Some(r) => Ok(Share::from_bytes(r, &shape, &buf)?.data),
                None => decode_clear(&shape, &buf),
            }
        }
    }
}

fn decode_clear(shape: &[usize], bytes: &[u8]) -> Result<Data> {
    let v: Vec<f64> = bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    ArrayD::from_shape_vec(ndarray::IxDyn(shape), v)
        .map(Data::Clear)
        .map_err(|_| Error::ShareMismatch(format!("{} bytes for shape {shape:?}", bytes.len())))
}

/// Parses `bytes` as what this engine holds of an array of `shape`.
fn decode(eng: &dyn Engine, shape: &[usize], bytes: &[u8]) -> Result<Data> {
    match eng.config() {
        None => decode_clear(shape, bytes),
        Some(c) => Ok(Share::from_bytes(c.ring(), shape, bytes)?.data),
    }
}

/// Appends what a primary server (or the cleartext engine) holds of `d` as bytes.
fn encode(d: &Data) -> Vec<u8> {
    match d {
        Data::Clear(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
        other => Share {
            data: other.clone(),
        }
        .to_bytes(),
    }
}

fn slice_rows(d: &Data, r: Range<usize>) -> Data {
    map_data!(d, a => a.slice_axis(Axis(0), Slice::from(r.clone())).to_owned())
}

#[derive(Clone)]
enum Source {
    /// In memory: small results, in-memory inputs, and everything on `Sa`, `Sb`.
    Memory(Data),
    /// A primary server's (or the cleartext engine's) share on disk.
    Reader(Arc<dyn ShareReader>),
}

/// A secret matrix whose shares live on disk, read in chunks of rows (PrivPy's
/// `LargeArray`). Get one from [`crate::Session::large_input`].
///
/// It supports what training on a large data set needs, each operation streaming
/// over the rows in chunks of at most an eighth of the configuration's
/// [`crate::Config::memory_budget`]:
/// - row slices ([`LargeArray::rows`]) and mini-batches ([`LargeArray::batches`])
///   as ordinary in-memory secrets;
/// - element-wise `+ - *` with broadcasting against public values, in-memory
///   secrets and other `LargeArray`s ([`LargeArray::add`], [`LargeArray::sub`],
///   [`LargeArray::mul`]), and any row-wise function ([`LargeArray::map`]);
/// - products with in-memory secrets and public matrices ([`LargeArray::dot`],
///   `X·W`, and [`LargeArray::t_dot`], `Xᵀ·G`);
/// - per-axis reductions ([`LargeArray::sum_axis`], [`LargeArray::mean_axis`],
///   [`LargeArray::sum`], [`LargeArray::mean`]).
///
/// The operators `&x + rhs`, `&x - rhs` and `&x * rhs` work as `Priv`'s do (errors
/// stop the program and the run returns them); the methods return a `Result`.
///
/// Operations that would hold the whole array in memory are not offered, or are
/// refused with [`Error::OverBudget`] when the array is over the budget:
/// [`LargeArray::load`], [`crate::Session::input`] on a large input, a row slice
/// larger than the budget. Every method returns a `Result` (they read files);
/// secrets they return are ordinary [`Priv`] values of the same session.
///
/// Each result is the same as the in-memory computation's: the same protocols run
/// on the chunks. The one difference is [`LargeArray::t_dot`], whose products are
/// truncated once per chunk (an error of at most one unit in the last place per
/// chunk, instead of one in all).
///
/// ```
/// use privpy_core::{Config, LocalCluster};
/// use ndarray::{Array2, Axis, array};
///
/// let mut c = LocalCluster::new(Config::fast().with_memory_budget(1 << 20)).with_seed(1);
/// let alice = c.client("alice");
/// // 10,000 × 16 rows, uploaded 1,000 rows at a time: the shares go to files.
/// let blocks = (0..10).map(|b| Array2::from_shape_fn((1000, 16), |(i, j)| ((b * 1000 + i + j) % 7) as f64));
/// c.upload_rows(&alice, "x", 16, blocks).unwrap();
/// let out = c.run(|s| {
///     let x = s.large_input("x")?;
///     assert!(s.input::<Array2<f64>>("x").is_err()); // 1.25 MiB: over the budget
///     let centred = x.sub(&x.mean_axis(Axis(0))?)?;      // a LargeArray again
///     let w = s.constant(Array2::<f64>::ones((16, 1)))?;
///     let g = centred.dot(&w)?;                            // 10,000 × 1, on disk
///     s.output("alice", "norm", &g.t_dot(&g.load()?)?)?;  // Σ g², 1 × 1
///     Ok(())
/// }).unwrap();
/// let norm: Array2<f64> = out.open(&alice, "norm").unwrap();
/// assert!(norm[[0, 0]] > 0.0);
/// ```
pub struct LargeArray {
    shape: [usize; 2],
    source: Source,
    env: LargeEnv,
    eng: Rc<dyn Engine>,
}

impl std::fmt::Debug for LargeArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LargeArray")
            .field("shape", &self.shape)
            .field("on_disk", &matches!(self.source, Source::Reader(_)))
            .finish_non_exhaustive()
    }
}

impl Clone for LargeArray {
    /// Another handle on the same files (no copy of a share on disk).
    fn clone(&self) -> Self {
        LargeArray {
            shape: self.shape,
            source: self.source.clone(),
            env: self.env.clone(),
            eng: self.eng.clone(),
        }
    }
}

/// The right operand of [`LargeArray`]'s element-wise operations and of
/// [`LargeArray::t_dot`]: a public `f64` or array, a secret ([`Priv`]), or another
/// `LargeArray`. Sealed.
pub trait LargeOperand {
    /// The operand as the large array sees it.
    #[doc(hidden)]
    fn large_operand(&self) -> LargeRhs<'_>;
}

/// An operand of [`LargeArray`] operations (see [`LargeOperand`]).
#[doc(hidden)]
pub struct LargeRhs<'a>(Rhs<'a>);

enum Rhs<'a> {
    Public(ArrayViewD<'a, f64>),
    Secret(&'a Data, &'a Rc<dyn Engine>),
    Large(&'a LargeArray),
}

impl Rhs<'_> {
    fn shape(&self) -> Vec<usize> {
        match self {
            Rhs::Public(v) => v.shape().to_vec(),
            Rhs::Secret(d, _) => d.shape().to_vec(),
            Rhs::Large(l) => l.shape.to_vec(),
        }
    }
}

impl LargeOperand for f64 {
    fn large_operand(&self) -> LargeRhs<'_> {
        LargeRhs(Rhs::Public(crate::types::Public::view_dyn(self)))
    }
}

impl<D: ndarray::Dimension> LargeOperand for ndarray::Array<f64, D> {
    fn large_operand(&self) -> LargeRhs<'_> {
        LargeRhs(Rhs::Public(self.view().into_dyn()))
    }
}

impl<A: crate::types::PrivType> LargeOperand for Priv<A> {
    fn large_operand(&self) -> LargeRhs<'_> {
        LargeRhs(Rhs::Secret(&self.data, &self.eng))
    }
}

impl LargeOperand for LargeArray {
    fn large_operand(&self) -> LargeRhs<'_> {
        LargeRhs(Rhs::Large(self))
    }
}

impl<T: LargeOperand + ?Sized> LargeOperand for &T {
    fn large_operand(&self) -> LargeRhs<'_> {
        (**self).large_operand()
    }
}

/// Mini-batches of a [`LargeArray`]: see [`LargeArray::batches`].
pub struct Batches<'a> {
    arr: &'a LargeArray,
    size: usize,
    next: usize,
}

impl std::fmt::Debug for Batches<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batches")
            .field("shape", &self.arr.shape)
            .field("size", &self.size)
            .field("next", &self.next)
            .finish()
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<(Range<usize>, Priv<Array2<f64>>)>;

    fn next(&mut self) -> Option<Self::Item> {
        let n = self.arr.shape[0];
        if self.next >= n {
            return None;
        }
        let r = self.next..(self.next + self.size).min(n);
        self.next = r.end;
        Some(self.arr.rows(r.clone()).map(|p| (r, p)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.arr.shape[0] - self.next.min(self.arr.shape[0])).div_ceil(self.size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Builds a `LargeArray` from chunks of rows: in memory while small, else in a
/// scratch file.
struct Collector {
    eng: Rc<dyn Engine>,
    env: LargeEnv,
    cols: Option<usize>,
    rows: usize,
    parts: Vec<Data>,
    held: u64,
    file: Option<ScratchWriter>,
    what: &'static str,
}

impl Collector {
    fn new(like: &LargeArray, what: &'static str) -> Collector {
        Collector {
            eng: like.eng.clone(),
            env: like.env.clone(),
            cols: None,
            rows: 0,
            parts: Vec::new(),
            held: 0,
            file: None,
            what,
        }
    }

    /// Whether this party holds values (not only shapes).
    fn holds_values(&self) -> bool {
        self.eng
            .role()
            .is_none_or(crate::transport::Role::is_primary)
    }

    fn push(&mut self, d: Data) -> Result<()> {
        let shape = d.shape().to_vec();
        let cols = match shape.as_slice() {
            [_, c] => *c,
            _ => {
                return Err(Error::InvalidArgument {
                    operation: self.what,
                    reason: format!("a chunk's result has shape {shape:?}, not two dimensions"),
                });
            }
        };
        if *self.cols.get_or_insert(cols) != cols {
            return Err(Error::InvalidArgument {
                operation: self.what,
                reason: format!(
                    "chunks' results have {} and {cols} columns",
                    self.cols.unwrap_or(0)
                ),
            });
        }
        self.rows += shape[0];
        if !self.holds_values() {
            return Ok(());
        }
        let bytes = share_bytes(&*self.eng, &shape);
        if self.file.is_none() && self.held + bytes <= self.env.budget / 4 {
            self.held += bytes;
            self.parts.push(d);
            return Ok(());
        }
        if self.file.is_none() {
            let Some(scratch) = &self.env.dir else {
                return Err(Error::OverBudget {
                    what: format!("{}'s result (no scratch directory for it)", self.what),
                    bytes: self.held + bytes,
                    budget: self.env.budget / 4,
                });
            };
            let dir = scratch
                .dir()
                .map_err(|e| storage_err("the scratch directory", e))?;
            let mut w =
                ScratchWriter::create(&dir).map_err(|e| storage_err("a scratch file", e))?;
            for p in self.parts.drain(..) {
                w.write(&mut encode(&p))
                    .map_err(|e| storage_err("a scratch file", e))?;
            }
            self.held = 0;
            self.file = Some(w);
        }
        if let Some(w) = &mut self.file {
            w.write(&mut encode(&d))
                .map_err(|e| storage_err("a scratch file", e))?;
        }
        Ok(())
    }

    fn finish(self, cols_if_empty: usize) -> Result<LargeArray> {
        let cols = self.cols.unwrap_or(cols_if_empty);
        let shape = [self.rows, cols];
        let source = if let Some(w) = self.file {
            Source::Reader(w.finish().map_err(|e| storage_err("a scratch file", e))?)
        } else if !self.holds_values() {
            Source::Memory(Data::shape_only(&shape))
        } else if self.parts.is_empty() {
            Source::Memory(crate::priv_array::placeholder(&*self.eng, &shape))
        } else {
            let refs: Vec<&Data> = self.parts.iter().collect();
            Source::Memory(Data::concat_flat(&refs).into_shape(&shape)?)
        };
        Ok(LargeArray {
            shape,
            source,
            env: self.env,
            eng: self.eng,
        })
    }
}

impl LargeArray {
    pub(crate) fn new(
        shape: [usize; 2],
        input: Input,
        env: LargeEnv,
        eng: Rc<dyn Engine>,
    ) -> LargeArray {
        let source = match input {
            Input::Held(d) => Source::Memory(d),
            Input::Stored { reader, .. } => Source::Reader(reader),
        };
        LargeArray {
            shape,
            source,
            env,
            eng,
        }
    }

    /// What this server holds, as an input or output of a session.
    pub(crate) fn as_input(&self) -> Input {
        match &self.source {
            Source::Memory(d) => Input::Held(d.clone()),
            Source::Reader(r) => Input::Stored {
                shape: self.shape,
                reader: r.clone(),
            },
        }
    }

    /// `[rows, columns]`.
    pub fn shape(&self) -> [usize; 2] {
        self.shape
    }

    /// The number of rows.
    pub fn nrows(&self) -> usize {
        self.shape[0]
    }

    /// The number of columns.
    pub fn ncols(&self) -> usize {
        self.shape[1]
    }

    /// The number of dimensions: 2.
    pub fn ndim(&self) -> usize {
        2
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape[0] * self.shape[1]
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The memory budget per server, in bytes ([`crate::Config::memory_budget`]).
    pub fn budget(&self) -> u64 {
        self.env.budget
    }

    /// The rows each chunk of a streaming operation holds: an eighth of the budget
    /// (at least one row). The same on all four servers.
    pub fn chunk_rows(&self) -> usize {
        let row = share_bytes(&*self.eng, &[self.shape[1]]).max(1);
        usize::try_from((self.env.budget / 8) / row)
            .unwrap_or(usize::MAX)
            .clamp(1, self.shape[0].max(1))
    }

    /// Whether this server keeps the array on disk (`false` for arrays small enough
    /// to stay in memory, and always on `Sa` and `Sb`, which hold only shapes).
    pub fn is_on_disk(&self) -> bool {
        matches!(self.source, Source::Reader(_))
    }

    fn chunks(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let (n, step) = (self.shape[0], self.chunk_rows());
        (0..n).step_by(step).map(move |s| s..(s + step).min(n))
    }

    /// This server's part of rows `r` (no checks).
    fn read(&self, r: Range<usize>) -> Result<Data> {
        let shape = [r.end - r.start, self.shape[1]];
        match &self.source {
            Source::Memory(d) => Ok(slice_rows(d, r)),
            Source::Reader(rd) => {
                let row = share_bytes(&*self.eng, &[self.shape[1]]);
                let len =
                    usize::try_from(row * shape[0] as u64).map_err(|_| Error::OverBudget {
                        what: "a chunk".into(),
                        bytes: row * shape[0] as u64,
                        budget: self.env.budget,
                    })?;
                let mut buf = vec![0u8; len];
                rd.read_at(row * r.start as u64, &mut buf).map_err(|e| {
                    storage_err(&format!("rows {}..{} of a large array", r.start, r.end), e)
                })?;
                decode(&*self.eng, &shape, &buf)
            }
        }
    }

    fn priv_of<A: crate::types::PrivType>(&self, d: Data) -> Priv<A> {
        Priv::new(d, self.eng.clone())
    }

    fn check_rows(&self, operation: &'static str, r: &Range<usize>) -> Result<()> {
        if r.start > r.end || r.end > self.shape[0] {
            return Err(Error::IndexOutOfBounds {
                operation,
                index: vec![r.start, r.end],
                shape: self.shape.to_vec(),
            });
        }
        Ok(())
    }

    /// Rows `r` as an in-memory secret (for example a mini-batch).
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] for rows outside the array; [`Error::OverBudget`]
    /// when the rows' share is larger than the memory budget; [`Error::Storage`]
    /// when the share cannot be read.
    pub fn rows(&self, r: Range<usize>) -> Result<Priv<Array2<f64>>> {
        self.check_rows("rows", &r)?;
        check_budget(
            &*self.eng,
            self.env.budget,
            || {
                format!(
                    "rows {}..{} of a {:?} large array",
                    r.start, r.end, self.shape
                )
            },
            &[r.end - r.start, self.shape[1]],
        )?;
        Ok(self.priv_of(self.read(r)?))
    }

    /// The rows in mini-batches of `size` rows (the last one may be shorter), each
    /// with its row range: `for b in x.batches(1000)? { let (rows, xb) = b?; … }`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `size == 0`; [`Error::OverBudget`] when one
    /// batch is larger than the memory budget. Each batch is an `Err` when its
    /// rows cannot be read.
    pub fn batches(&self, size: usize) -> Result<Batches<'_>> {
        if size == 0 {
            return Err(Error::InvalidArgument {
                operation: "batches",
                reason: "a batch of zero rows".into(),
            });
        }
        check_budget(
            &*self.eng,
            self.env.budget,
            || format!("a batch of {size} rows of a {:?} large array", self.shape),
            &[size.min(self.shape[0]), self.shape[1]],
        )?;
        Ok(Batches {
            arr: self,
            size,
            next: 0,
        })
    }

    /// The whole array in memory.
    ///
    /// # Errors
    /// [`Error::OverBudget`] when its share is larger than the memory budget;
    /// [`Error::Storage`].
    pub fn load(&self) -> Result<Priv<Array2<f64>>> {
        self.rows(0..self.shape[0])
    }

    /// Applies the row-wise function `f` to every chunk of rows (an in-memory
    /// secret of [`LargeArray::chunk_rows`] rows or fewer) and collects the results,
    /// which must have as many rows as the chunk and the same number of columns
    /// every time, as a new `LargeArray`.
    ///
    /// `f` must treat each row on its own (as element-wise operations, products by
    /// a matrix on the right, comparisons and activations do): the chunk boundaries
    /// are an implementation detail.
    ///
    /// # Errors
    /// `f`'s error; [`Error::InvalidArgument`] when a result's rows or columns do
    /// not match; [`Error::Storage`].
    pub fn map<F>(&self, mut f: F) -> Result<LargeArray>
    where
        F: FnMut(&Priv<Array2<f64>>) -> Result<Priv<Array2<f64>>>,
    {
        let mut out = Collector::new(self, "map");
        for r in self.chunks() {
            let len = r.end - r.start;
            let chunk = self.priv_of::<Array2<f64>>(self.read(r)?);
            let y = f(&chunk)?;
            if y.shape()[0] != len {
                return Err(Error::InvalidArgument {
                    operation: "map",
                    reason: format!(
                        "the function returned {} rows for a chunk of {len}: it must be row-wise",
                        y.shape()[0]
                    ),
                });
            }
            out.push(y.data)?;
        }
        out.finish(self.shape[1])
    }

    /// The part of `rhs` that meets rows `r` of this array under broadcasting.
    fn rhs_rows<'a>(&self, rhs: &'a Rhs<'_>, r: &Range<usize>) -> Result<RhsPart<'a>> {
        let n = self.shape[0];
        let per_row = |s: &[usize]| s.len() == 2 && s[0] == n && n != 1;
        Ok(match rhs {
            Rhs::Public(v) if per_row(v.shape()) => {
                RhsPart::Public(v.slice_axis(Axis(0), Slice::from(r.clone())))
            }
            Rhs::Public(v) => RhsPart::Public(v.view()),
            Rhs::Secret(d, eng) => {
                if !Rc::ptr_eq(eng, &self.eng) {
                    return Err(Error::MixedSessions);
                }
                if per_row(d.shape()) {
                    RhsPart::Secret(slice_rows(d, r.clone()))
                } else {
                    RhsPart::Secret((*d).clone())
                }
            }
            Rhs::Large(l) => {
                if !Rc::ptr_eq(&l.eng, &self.eng) {
                    return Err(Error::MixedSessions);
                }
                if l.shape[0] == n {
                    RhsPart::Secret(l.read(r.clone())?)
                } else {
                    RhsPart::Secret(l.read(0..l.shape[0])?)
                }
            }
        })
    }

    fn elementwise(
        &self,
        op: BinOp,
        name: &'static str,
        rhs: &dyn LargeOperand,
    ) -> Result<LargeArray> {
        let rhs = rhs.large_operand().0;
        let rs = rhs.shape();
        let out = broadcast_shape(&self.shape, &rs)?;
        if out != self.shape {
            return Err(ShapeError::Broadcast {
                left: self.shape.to_vec(),
                right: rs,
            }
            .into());
        }
        if let Rhs::Large(l) = &rhs
            && l.shape[0] != self.shape[0]
        {
            // A one-row LargeArray broadcast over the rows: read once.
            check_budget(
                &*self.eng,
                self.env.budget,
                || format!("{name}'s right operand"),
                &l.shape,
            )?;
        }
        let mut out = Collector::new(self, name);
        for r in self.chunks() {
            let chunk = self.priv_of::<ArrayD<f64>>(self.read(r.clone())?);
            let part = self.rhs_rows(&rhs, &r)?;
            let d = match &part {
                RhsPart::Public(v) => chunk.binop(op, Operand::Public(v.view()), false)?,
                RhsPart::Secret(d) => chunk.binop(op, Operand::Secret(d, &self.eng), false)?,
            };
            out.push(d)?;
        }
        out.finish(self.shape[1])
    }

    /// `self + rhs` element-wise, with NumPy broadcasting of `rhs` (a public value,
    /// an in-memory secret, or a `LargeArray`) to this array's shape: a row
    /// vector, a column of `nrows` rows, a scalar, or a full array.
    ///
    /// # Errors
    /// [`ShapeError::Broadcast`] when `rhs` does not broadcast to this array's
    /// shape (the result must keep it); [`Error::MixedSessions`]; [`Error::Storage`];
    /// a lost peer.
    pub fn add(&self, rhs: impl LargeOperand) -> Result<LargeArray> {
        self.elementwise(BinOp::Add, "add", &rhs)
    }

    /// `self - rhs` element-wise, as [`LargeArray::add`].
    ///
    /// # Errors
    /// As [`LargeArray::add`].
    pub fn sub(&self, rhs: impl LargeOperand) -> Result<LargeArray> {
        self.elementwise(BinOp::Sub, "sub", &rhs)
    }

    /// `self * rhs` element-wise (Protocol 1 for a secret `rhs`; local for a public
    /// one), as [`LargeArray::add`].
    ///
    /// # Errors
    /// As [`LargeArray::add`]; a public `rhs` out of the configured range.
    pub fn mul(&self, rhs: impl LargeOperand) -> Result<LargeArray> {
        self.elementwise(BinOp::Mul, "mul", &rhs)
    }

    /// `self · w` for an in-memory right operand (a secret `&Priv`, a public
    /// `&Array2<f64>` or `&Array1<f64>`, or a [`crate::Prepared`] matrix), chunk by
    /// chunk: an `nrows × k` `LargeArray` (`nrows × 1` for a vector `w`).
    ///
    /// # Errors
    /// [`ShapeError::Dot`] when `w` has other than `ncols` rows; [`Error::Storage`];
    /// a lost peer.
    pub fn dot<R: DotOperand>(&self, w: R) -> Result<LargeArray> {
        let mut out = Collector::new(self, "dot");
        let mut cols = 1;
        for r in self.chunks() {
            let len = r.end - r.start;
            let chunk = self.priv_of::<Array2<f64>>(self.read(r)?);
            let d = crate::priv_array::dot_data(chunk.operand(), w.operand())?;
            let d = if d.shape().len() == 1 {
                d.into_shape(&[len, 1])?
            } else {
                d
            };
            cols = d.shape()[1];
            out.push(d)?;
        }
        if self.shape[0] == 0 {
            // No chunk ran: check the shapes all the same.
            let probe = self.priv_of::<Array2<f64>>(self.read(0..0)?);
            let d = crate::priv_array::dot_data(probe.operand(), w.operand())?;
            cols = d.shape().get(1).copied().unwrap_or(1);
        }
        out.finish(cols)
    }

    /// `selfᵀ · g` for a `g` with one row per row of this array (an in-memory
    /// secret, a public matrix, or a `LargeArray`): the `ncols × k` product every
    /// gradient of a linear model needs, summed chunk by chunk, in memory.
    ///
    /// Each chunk's product is truncated on its own: the result is within one unit
    /// in the last place per chunk of the exact one.
    ///
    /// # Errors
    /// [`ShapeError::Dot`] when `g` is not a 2-D array of `nrows` rows;
    /// [`Error::OverBudget`] when the result is larger than the budget;
    /// [`Error::MixedSessions`]; [`Error::Storage`]; a lost peer.
    pub fn t_dot(&self, g: impl LargeOperand) -> Result<Priv<Array2<f64>>> {
        let g = g.large_operand().0;
        let gs = g.shape();
        if gs.len() != 2 || gs[0] != self.shape[0] {
            return Err(ShapeError::Dot {
                left: vec![self.shape[1], self.shape[0]],
                right: gs.clone(),
                left_inner: self.shape[0],
                right_inner: gs.first().copied().unwrap_or(0),
            }
            .into());
        }
        check_budget(
            &*self.eng,
            self.env.budget,
            || "t_dot's result".into(),
            &[self.shape[1], gs[1]],
        )?;
        let mut acc: Option<Data> = None;
        for r in self.chunks() {
            let chunk = self.read(r.clone())?.reversed_axes();
            let part = self.rhs_rows(&g, &r)?;
            let p = match &part {
                RhsPart::Public(v) => crate::priv_array::dot_data(
                    Operand::Secret(&chunk, &self.eng),
                    Operand::Public(v.view()),
                )?,
                RhsPart::Secret(d) => crate::priv_array::dot_data(
                    Operand::Secret(&chunk, &self.eng),
                    Operand::Secret(d, &self.eng),
                )?,
            };
            acc = Some(self.accumulate(acc, p)?);
        }
        self.total(acc, &[self.shape[1], gs[1]])
    }

    /// `acc + part` (local), or `part` first.
    fn accumulate(&self, acc: Option<Data>, part: Data) -> Result<Data> {
        match acc {
            None => Ok(part),
            Some(a) => {
                let shape = a.shape().to_vec();
                self.eng.binary(BinOp::Add, &a, &part, &shape)
            }
        }
    }

    /// A sum over chunks as a secret: zeros of `shape` when there were none.
    fn total<A: crate::types::PrivType>(
        &self,
        acc: Option<Data>,
        shape: &[usize],
    ) -> Result<Priv<A>> {
        let d = match acc {
            Some(d) => d,
            None => self
                .eng
                .constant(&ArrayD::zeros(ndarray::IxDyn(shape)).view())?,
        };
        Ok(self.priv_of(d))
    }

    /// The sum along `axis`: `Axis(0)` sums the rows (a vector of `ncols`),
    /// `Axis(1)` each row (a vector of `nrows`, in memory). Local: no
    /// communication.
    ///
    /// # Errors
    /// [`ShapeError::Axis`] for an axis other than 0 and 1; [`Error::OverBudget`]
    /// when an `Axis(1)` result is larger than the budget; [`Error::Storage`].
    pub fn sum_axis(&self, axis: Axis) -> Result<Priv<Array1<f64>>> {
        match axis.index() {
            0 => {
                let mut acc: Option<Data> = None;
                for r in self.chunks() {
                    let s = self.read(r)?.sum_axis(0)?;
                    acc = Some(self.accumulate(acc, s)?);
                }
                self.total(acc, &[self.shape[1]])
            }
            1 => {
                check_budget(
                    &*self.eng,
                    self.env.budget,
                    || "sum_axis(Axis(1))'s result".into(),
                    &[self.shape[0]],
                )?;
                let mut parts = Vec::new();
                for r in self.chunks() {
                    parts.push(self.read(r)?.sum_axis(1)?);
                }
                let d = if parts.is_empty() {
                    self.eng
                        .constant(&ArrayD::zeros(ndarray::IxDyn(&[0])).view())?
                } else {
                    let refs: Vec<&Data> = parts.iter().collect();
                    Data::concat_flat(&refs)
                };
                Ok(self.priv_of(d))
            }
            a => Err(ShapeError::Axis { axis: a, ndim: 2 }.into()),
        }
    }

    /// The mean along `axis` (a sum, then a local product by `1/n`).
    ///
    /// # Errors
    /// As [`LargeArray::sum_axis`]; [`Error::EmptyInput`] when the axis is empty.
    pub fn mean_axis(&self, axis: Axis) -> Result<Priv<Array1<f64>>> {
        let s = self.sum_axis(axis)?;
        let n = self.shape[axis.index()];
        if n == 0 {
            return Err(Error::EmptyInput {
                operation: "mean_axis",
            });
        }
        s.try_mul_public(1.0 / n as f64)
    }

    /// The sum of all elements.
    ///
    /// # Errors
    /// As [`LargeArray::sum_axis`].
    pub fn sum(&self) -> Result<Priv<f64>> {
        Ok(self.sum_axis(Axis(0))?.sum())
    }

    /// The mean of all elements (a sum, then a local product by `1/n`).
    ///
    /// # Errors
    /// As [`LargeArray::sum_axis`]; [`Error::EmptyInput`] for an empty array.
    pub fn mean(&self) -> Result<Priv<f64>> {
        if self.is_empty() {
            return Err(Error::EmptyInput { operation: "mean" });
        }
        self.sum()?.try_mul_public(1.0 / self.len() as f64)
    }
}

macro_rules! large_operator {
    ($trait:ident, $method:ident, $op:expr, $name:literal) => {
        impl<R: LargeOperand> std::ops::$trait<R> for &LargeArray {
            type Output = LargeArray;
            /// As the method of the same name, with errors handled as `Priv`'s
            /// operators handle them: the program stops and the run returns the
            /// error (see [`Priv`]'s `# Panics`).
            #[track_caller]
            fn $method(self, rhs: R) -> LargeArray {
                match self.elementwise($op, $name, &rhs) {
                    Ok(v) => v,
                    Err(e) => {
                        crate::priv_array::fail(e);
                        self.placeholder()
                    }
                }
            }
        }
    };
}
large_operator!(Add, add, BinOp::Add, "add");
large_operator!(Sub, sub, BinOp::Sub, "sub");
large_operator!(Mul, mul, BinOp::Mul, "mul");

impl LargeArray {
    /// What an operator returns after a failure: no rows.
    fn placeholder(&self) -> LargeArray {
        let shape = [0, self.shape[1]];
        LargeArray {
            shape,
            source: Source::Memory(crate::priv_array::placeholder(&*self.eng, &shape)),
            env: self.env.clone(),
            eng: self.eng.clone(),
        }
    }
}

enum RhsPart<'a> {
    Public(ArrayViewD<'a, f64>),
    Secret(Data),
}
