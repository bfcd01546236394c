//! The SS store of `S1` and `S2`: uploaded input shares and unrevealed output shares.
//!
//! An embedded, crash-safe database (redb: copy-on-write B-trees) in the server's
//! data directory. A server that restarts finds every upload it acknowledged and
//! every output not yet fetched: an upload is acknowledged only after the commit
//! that holds it is durable (concurrent uploads share one commit and one sync; the
//! parts of an upload in parts become durable with the commit of its last part). Outputs are deleted
//! when their client fetches them, or by [`Store::sweep`] after the configured time.
//! Each record keeps its owner; the server checks the requesting client against it.

use crate::wire::{R, W, WireError};
use privpy_core::RingKind;
use privpy_core::share::Share;
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle,
};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Version 2 of the record layout: inputs carry their upload tag; outputs are keyed
// by (job, recipient, name).
const INPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("inputs.v3");
const OUTPUTS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("outputs.v3");
/// The pieces of inputs uploaded in parts ([`Store::stage_input`]): (input, upload
/// tag, piece number) → the piece, encrypted under the input's key at its offset.
const CHUNKS: TableDefinition<(&str, u128, u32), &[u8]> = TableDefinition::new("chunks.v3");

/// The pieces of large outputs: (job, recipient, output, piece number) → bytes
/// `piece · PIECE ..` of the encrypted share.
const OUT_CHUNKS: TableDefinition<(u64, &str, &str, u32), &[u8]> =
    TableDefinition::new("output-chunks.v3");

/// What a piece or an upload part leaves for redb's page header: redb keeps a
/// value in a region of a power-of-two number of 4 KiB pages, so a piece of
/// exactly 4 MiB (plus its header) would take 8 MiB of the file.
pub const PIECE_SLACK: usize = 4 << 10;

/// Outputs larger than this are stored in pieces of this size, so that a fetch in
/// parts reads one piece at a time.
/// (4 KiB in the unit tests, which check pieces on small shares.)
const PIECE: usize = if cfg!(test) {
    4096
} else {
    (4 << 20) - PIECE_SLACK
};

/// The smallest part of an upload in parts, but for its last (1 byte in the unit
/// tests, which cut parts at odd places).
pub const MIN_PART: usize = if cfg!(test) { 1 } else { 64 << 10 };

/// The store's page cache: a bound on what redb keeps in memory for reads and
/// writes (its default is 1 GiB).
const CACHE_BYTES: usize = 64 << 20;
/// The tables of stores written before shares were encrypted at rest.
const OLD_TABLES: [&str; 2] = ["inputs.v2", "outputs.v2"];

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (I/O, corruption, lock held by another process).
    #[error("share store: {0}")]
    Db(String),
    /// A stored record could not be decoded (corruption).
    #[error("share store record {key:?} is corrupt: {source}")]
    Corrupt {
        /// The record.
        key: String,
        /// Why it does not decode.
        source: WireError,
    },
    /// The store file is damaged or missing: the server must not start on it.
    #[error("share store {path}: {problem}")]
    Damaged {
        /// The store file.
        path: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The name belongs to another client.
    #[error("input {name:?} belongs to {owner}")]
    NotOwner {
        /// The input.
        name: String,
        /// Its owner.
        owner: String,
    },
    /// A part of a staged upload does not fit (too many bytes, or the upload is
    /// already complete), or its tag is in use.
    #[error("upload of {name:?}: {problem}")]
    Staging {
        /// The input.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// Storing the input would take its owner past the quota.
    #[error(
        "{owner} stores {used} bytes here; this upload needs {needed} more and the quota is {quota}"
    )]
    Quota {
        /// The client.
        owner: String,
        /// Bytes its other inputs take.
        used: u64,
        /// Bytes the new record takes.
        needed: u64,
        /// The quota in bytes.
        quota: u64,
    },
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// Creates `dir` (and parents) and makes it accessible to its owner only.
fn private_dir(dir: &Path) -> Result<(), StoreError> {
    let err = |e: std::io::Error| db(format!("{}: {e}", dir.display()));
    std::fs::create_dir_all(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// Creates an empty file readable by its owner only (mode 0600 from the start).
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)
        .map(drop)
        .map_err(|e| db(format!("{}: {e}", path.display())))
}

/// Writes a new file readable by its owner only, durably (synced).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    use std::io::Write;
    create_private(path)?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .map_err(|e| db(format!("{}: {e}", path.display())))
}

/// An uploaded input share.
#[derive(Clone, Debug)]
pub struct StoredInput {
    /// The client that uploaded it.
    pub owner: String,
    /// The upload's tag: the same on `S1` and `S2` when both hold shares from the
    /// same upload.
    pub tag: u128,
    /// Grants: other clients that may use it in their jobs, each as `name` (in
    /// every registered program), `name@program` (in that program only) or
    /// `name@program:version` (in that version of it only). See [`Grant`].
    pub readers: Vec<String>,
    /// This server's share.
    pub share: Share,
}

/// A large output's pieces, written by [`Store::stream_output`] and not yet
/// recorded ([`Store::put_outputs_with`]).
pub struct StreamedOutput {
    ring: RingKind,
    shape: Vec<usize>,
    key: (u128, [u8; 32]),
    pieces: u32,
    total: u64,
}

// The key stays out of logs.
impl std::fmt::Debug for StreamedOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamedOutput")
            .field("shape", &self.shape)
            .field("pieces", &self.pieces)
            .finish_non_exhaustive()
    }
}

/// A piece of an output share ([`Store::output_part`]).
#[derive(Clone)]
pub struct OutputPart {
    /// The share's ring.
    pub ring: RingKind,
    /// The share's shape.
    pub shape: Vec<usize>,
    /// The share's length in bytes.
    pub total: u64,
    /// The requested bytes.
    pub bytes: Vec<u8>,
}

// Share bytes stay out of logs.
impl std::fmt::Debug for OutputPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputPart")
            .field("shape", &self.shape)
            .field("total", &self.total)
            .field("bytes_len", &self.bytes.len())
            .finish()
    }
}

/// What describes an input uploaded in parts ([`Store::stage_input`]).
#[derive(Clone, Debug)]
pub struct StagedInput {
    /// The client that uploads it.
    pub owner: String,
    /// The upload's tag (as [`StoredInput::tag`]).
    pub tag: u128,
    /// Grants (as [`StoredInput::readers`]).
    pub readers: Vec<String>,
    /// The share's ring.
    pub ring: RingKind,
    /// The share's shape.
    pub shape: Vec<usize>,
}

/// An upload in parts in progress ([`Store::stage_input`]).
pub struct Staged {
    name: String,
    input: StagedInput,
    total: u64,
    written: u64,
    pieces: u32,
    /// Each piece's length, in order (kept in the record for random access).
    lens: Vec<u32>,
    key: (u128, [u8; 32]),
}

impl Staged {
    /// The input's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The upload's tag.
    pub fn tag(&self) -> u128 {
        self.input.tag
    }

    /// Bytes of the share received so far.
    pub fn received(&self) -> u64 {
        self.written
    }

    /// Whether every byte of the share arrived.
    pub fn complete(&self) -> bool {
        self.written == self.total
    }
}

// The key stays out of logs.
impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("name", &self.name)
            .field("written", &self.written)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
}

impl StoredInput {
    /// Whether `client` may use this input in `program` at `version`: it owns it,
    /// or one of its grants names `client` for that program (or for every program).
    pub fn usable_by(&self, client: &str, program: &str, version: &str) -> bool {
        usable(&self.owner, &self.readers, client, program, version)
    }
}

fn usable(owner: &str, readers: &[String], client: &str, program: &str, version: &str) -> bool {
    owner == client
        || readers
            .iter()
            .filter_map(|g| Grant::parse(g).ok())
            .any(|g| g.allows(client, program, version))
}

/// What a stored input is, without its share ([`Store::input_info`]).
#[derive(Clone, Debug)]
pub struct InputInfo {
    /// The client that uploaded it.
    pub owner: String,
    /// The upload's tag.
    pub tag: u128,
    /// Grants (as [`StoredInput::readers`]).
    pub readers: Vec<String>,
    /// The share's ring.
    pub ring: RingKind,
    /// The share's shape.
    pub shape: Vec<usize>,
}

impl InputInfo {
    /// As [`StoredInput::usable_by`].
    pub fn usable_by(&self, client: &str, program: &str, version: &str) -> bool {
        usable(&self.owner, &self.readers, client, program, version)
    }
}

/// Random access to a stored input's share, read piece by piece from a snapshot
/// of the store taken when it was opened ([`Store::input_reader`]): an upload
/// that replaces the input meanwhile does not change what it reads.
pub struct InputReader {
    tx: Mutex<redb::ReadTransaction>,
    name: String,
    tag: u128,
    key: [u8; 32],
    /// Byte offset of each piece, and the total at the end.
    starts: Vec<u64>,
}

impl std::fmt::Debug for InputReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputReader")
            .field("name", &self.name)
            .field("bytes", &self.starts.last())
            .finish_non_exhaustive()
    }
}

impl InputReader {
    /// The share's size in bytes.
    pub fn len(&self) -> u64 {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Whether the share has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl privpy_core::ShareReader for InputReader {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset.saturating_add(buf.len() as u64);
        if end > self.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("bytes {offset}..{end} of a {}-byte share", self.len()),
            ));
        }
        let io = |e: redb::Error| std::io::Error::other(e.to_string());
        let tx = match self.tx.lock() {
            Ok(t) => t,
            Err(p) => p.into_inner(),
        };
        let t = tx.open_table(CHUNKS).map_err(|e| io(e.into()))?;
        // The first piece holding `offset`.
        let mut seq = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        let mut at = offset;
        while at < end {
            let start = self.starts[seq];
            let piece = t
                .get((self.name.as_str(), self.tag, seq as u32))
                .map_err(|e| io(e.into()))?
                .ok_or_else(|| {
                    std::io::Error::other(format!("piece {seq} of {} is missing", self.name))
                })?;
            let bytes = piece.value();
            let from = (at - start) as usize;
            let take = (bytes.len() - from.min(bytes.len())).min((end - at) as usize);
            if take == 0 {
                return Err(std::io::Error::other(format!(
                    "piece {seq} of {} is short",
                    self.name
                )));
            }
            let dst = (at - offset) as usize;
            buf[dst..dst + take].copy_from_slice(&bytes[from..from + take]);
            at += take as u64;
            seq += 1;
        }
        drop(t);
        ctr_xor_at(&self.key, offset, buf);
        Ok(())
    }
}

/// One grant of an input to another client, as written in an upload's readers:
/// `bob` (every program), `bob@stats` (program `stats`, any version) or
/// `bob@stats:2` (version `2` of it).
///
/// What a grant gives away: the grantee learns whatever the granted programs
/// output about the input (for the stock programs: aggregates such as sums,
/// means, a trained model, centroids; admission checks refuse arguments that
/// would copy the input out), never the input itself. A grant without a program
/// extends that to every program registered now or later; name the program to
/// keep control.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant<'a> {
    /// The grantee.
    pub client: &'a str,
    /// The program, or `None` for every program.
    pub program: Option<&'a str>,
    /// The program's version, or `None` for any version.
    pub version: Option<&'a str>,
}

impl<'a> Grant<'a> {
    /// Parses `client`, `client@program` or `client@program:version`.
    ///
    /// # Errors
    /// An empty client, program or version.
    pub fn parse(text: &'a str) -> Result<Grant<'a>, String> {
        let (client, rest) = match text.split_once('@') {
            None => (text, None),
            Some((c, r)) => (c, Some(r)),
        };
        let (program, version) = match rest.map(|r| r.split_once(':')) {
            None => (None, None),
            Some(None) => (rest, None),
            Some(Some((p, v))) => (Some(p), Some(v)),
        };
        if client.is_empty() || program == Some("") || version == Some("") {
            return Err(format!(
                "grant {text:?}: use client, client@program or client@program:version"
            ));
        }
        Ok(Grant {
            client,
            program,
            version,
        })
    }

    /// Whether this grant lets `client` use the input in `program` at `version`.
    pub fn allows(&self, client: &str, program: &str, version: &str) -> bool {
        self.client == client
            && self.program.is_none_or(|p| p == program)
            && self.version.is_none_or(|v| v == version)
    }
}

/// An output share waiting for its client.
#[derive(Clone, Debug)]
pub struct StoredOutput {
    /// The client entitled to it.
    pub client: String,
    /// Seconds since the Unix epoch when it was stored.
    pub created: u64,
    /// This server's share.
    pub share: Share,
}

/// Shares at rest are encrypted, each record under a key of its own. The keys
/// live in `keys.bin`, a file of fixed 48-byte slots (key id, key) overwritten in
/// place, never copied: deleting a record zeroes its key's slot (synced). redb is
/// copy-on-write, so a deleted record's pages stay in `shares.redb` until reused,
/// but without its key they are noise (crypto-shredding). A key id is its slot
/// (high 64 bits) and a random tag (low 64 bits), so a reused slot never serves a
/// record of the key it replaced.
struct Keys {
    ring: std::sync::Mutex<KeyRing>,
    /// Group commit: writes are numbered; a sync covers every write before it, so
    /// concurrent uploads share one.
    written: std::sync::atomic::AtomicU64,
    synced: std::sync::Mutex<u64>,
    sync_file: std::fs::File,
}

struct KeyRing {
    file: std::fs::File,
    slots: u64,
    free: Vec<u64>,
}

const SLOT: usize = 48;

impl Keys {
    fn open(path: &Path) -> Result<Keys, StoreError> {
        use std::io::Read;
        if !path.exists() {
            create_private(path)?;
        }
        let err = |e: std::io::Error| db(format!("{}: {e}", path.display()));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(err)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(err)?;
        if bytes.len() % SLOT != 0 {
            return Err(StoreError::Damaged {
                path: path.display().to_string(),
                problem: format!(
                    "{} bytes is not a whole number of key slots (truncated?)",
                    bytes.len()
                ),
            });
        }
        let free = bytes
            .chunks_exact(SLOT)
            .enumerate()
            .filter(|(_, s)| s.iter().all(|&b| b == 0))
            .map(|(k, _)| k as u64)
            .collect();
        let sync_file = file.try_clone().map_err(err)?;
        Ok(Keys {
            ring: std::sync::Mutex::new(KeyRing {
                file,
                slots: (bytes.len() / SLOT) as u64,
                free,
            }),
            written: std::sync::atomic::AtomicU64::new(0),
            synced: std::sync::Mutex::new(0),
            sync_file,
        })
    }

    /// Numbers a write just made (under the ring's lock).
    fn wrote(&self) -> u64 {
        self.written
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
    }

    /// Makes write `n` (and every earlier one) durable: one sync serves every
    /// writer waiting meanwhile.
    fn sync_through(&self, n: u64) -> Result<(), StoreError> {
        let mut synced = match self.synced.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if *synced >= n {
            return Ok(());
        }
        let upto = self.written.load(std::sync::atomic::Ordering::SeqCst);
        self.sync_file
            .sync_data()
            .map_err(|e| db(format!("key file: {e}")))?;
        *synced = upto;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KeyRing> {
        match self.ring.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A new key, written (synced) before the record that uses it.
    fn create(&self) -> Result<(u128, [u8; 32]), StoreError> {
        let mut keys = self.create_many(1)?;
        keys.pop().ok_or_else(|| db("no key was made"))
    }

    /// `n` new keys, written with one sync.
    fn create_many(&self, n: usize) -> Result<Vec<(u128, [u8; 32])>, StoreError> {
        let mut ring = self.lock();
        let mut made: Vec<(u64, u128, [u8; 32])> = Vec::with_capacity(n);
        let fail = |ring: &mut KeyRing, made: &[(u64, u128, [u8; 32])], e: StoreError| {
            for (slot, _, _) in made {
                let _ = ring.put_slot(*slot, &[0u8; SLOT]);
                ring.free.push(*slot);
            }
            e
        };
        for _ in 0..n {
            let mut tag = [0u8; 8];
            let mut key = [0u8; 32];
            if let Err(e) = getrandom::fill(&mut tag).and_then(|()| getrandom::fill(&mut key)) {
                let e = db(format!(
                    "the operating system's random generator failed: {e}"
                ));
                return Err(fail(&mut ring, &made, e));
            }
            if ring.free.is_empty()
                && let Err(e) = ring.grow()
            {
                return Err(fail(&mut ring, &made, e));
            }
            let Some(slot) = ring.free.pop() else {
                return Err(fail(&mut ring, &made, db("no free key slot")));
            };
            let id = (u128::from(slot) << 64) | u128::from(u64::from_le_bytes(tag) | 1);
            let mut bytes = [0u8; SLOT];
            bytes[..16].copy_from_slice(&id.to_le_bytes());
            bytes[16..].copy_from_slice(&key);
            made.push((slot, id, key));
            if let Err(e) = ring.put_slot(slot, &bytes) {
                return Err(fail(&mut ring, &made, e));
            }
        }
        let n = self.wrote();
        drop(ring);
        if let Err(e) = self.sync_through(n) {
            let mut ring = self.lock();
            return Err(fail(&mut ring, &made, e));
        }
        Ok(made.into_iter().map(|(_, id, key)| (id, key)).collect())
    }

    fn load(&self, id: u128) -> Option<[u8; 32]> {
        let slot = u64::try_from(id >> 64).ok()?;
        let bytes = self.lock().read_slot(slot)?;
        if bytes[..16] != id.to_le_bytes() {
            return None;
        }
        bytes[16..].try_into().ok()
    }

    /// Zeroes a key's slot (and so, for good, the record it encrypted).
    fn shred(&self, id: u128) {
        self.shred_many(&[id]);
    }

    /// Zeroes the slots of `ids`, with one sync.
    fn shred_many(&self, ids: &[u128]) {
        let mut ring = self.lock();
        let mut zeroed = Vec::new();
        for &id in ids {
            let Ok(slot) = u64::try_from(id >> 64) else {
                continue;
            };
            if ring
                .read_slot(slot)
                .is_some_and(|b| b[..16] == id.to_le_bytes())
                && ring.put_slot(slot, &[0u8; SLOT]).is_ok()
            {
                zeroed.push(slot);
            }
        }
        if zeroed.is_empty() {
            return;
        }
        let n = self.wrote();
        drop(ring);
        if self.sync_through(n).is_ok() {
            self.lock().free.extend(zeroed);
        }
    }

    /// Ids of every key kept.
    fn all(&self) -> Vec<u128> {
        let mut ring = self.lock();
        (0..ring.slots)
            .filter_map(|k| ring.read_slot(k))
            .filter(|b| b.iter().any(|&x| x != 0))
            .filter_map(|b| b[..16].try_into().ok().map(u128::from_le_bytes))
            .collect()
    }
}

impl KeyRing {
    fn read_slot(&mut self, slot: u64) -> Option<[u8; SLOT]> {
        use std::io::{Read, Seek, SeekFrom};
        if slot >= self.slots {
            return None;
        }
        let mut b = [0u8; SLOT];
        self.file.seek(SeekFrom::Start(slot * SLOT as u64)).ok()?;
        self.file.read_exact(&mut b).ok()?;
        Some(b)
    }

    /// Adds `GROW` zeroed slots, synced with the file's new size, so that writing
    /// a key later changes no metadata and its sync is a data sync only.
    fn grow(&mut self) -> Result<(), StoreError> {
        const GROW: u64 = 1024;
        let err = |e: std::io::Error| db(format!("key file: {e}"));
        let len = (self.slots + GROW) * SLOT as u64;
        self.file.set_len(len).map_err(err)?;
        self.file.sync_all().map_err(err)?;
        self.free.extend((self.slots..self.slots + GROW).rev());
        self.slots += GROW;
        Ok(())
    }

    fn put_slot(&mut self, slot: u64, bytes: &[u8; SLOT]) -> Result<(), StoreError> {
        use std::io::{Seek, SeekFrom, Write};
        let err = |e: std::io::Error| db(format!("key file: {e}"));
        self.file
            .seek(SeekFrom::Start(slot * SLOT as u64))
            .map_err(err)?;
        self.file.write_all(bytes).map_err(err)
    }
}

/// XORs AES-256-CTR's stream under `key` (counter from 0: every key encrypts one
/// record) into `data`.
fn ctr_xor(key: &[u8; 32], data: &mut [u8]) {
    ctr_xor_at(key, 0, data);
}

// AES-256-CTR at byte `offset` of the stream: `data` is bytes `offset..` of a
// record, so pieces encrypted apart decrypt as one stream.
use privpy_core::__private::ctr_xor_at;

fn put_share(w: &mut W, s: &Share, (id, key): (u128, [u8; 32])) {
    w.ring(s.ring().unwrap_or(RingKind::Z64));
    w.shape(s.shape());
    w.u128(id);
    let mut bytes = s.to_bytes();
    ctr_xor(&key, &mut bytes);
    w.bytes(&bytes);
}

fn get_share(r: &mut R<'_>, keys: &Keys, pieces: Option<Vec<u8>>) -> Result<Share, WireError> {
    let ring = r.ring()?;
    let shape = r.shape()?;
    let id = r.u128("key id")?;
    let inline = r.bytes("share")?;
    // An input uploaded in parts keeps its bytes in its pieces.
    let mut bytes = pieces.unwrap_or(inline);
    let key = keys.load(id).ok_or_else(|| WireError::Invalid {
        what: "share",
        reason: "its key is gone (deleted, or lost in a crash)".into(),
    })?;
    ctr_xor(&key, &mut bytes);
    Share::from_bytes(ring, &shape, &bytes).map_err(|e| WireError::Invalid {
        what: "share",
        reason: e.to_string(),
    })
}

/// The key id of a record's share, which follows `skip` leading fields.
fn key_of(v: &[u8], input: bool) -> Option<u128> {
    let mut r = R(v);
    if input {
        r.str("owner").ok()?;
        r.u128("upload tag").ok()?;
        r.strs("readers").ok()?;
    } else {
        r.str("client").ok()?;
        r.u64("created").ok()?;
    }
    r.ring().ok()?;
    r.shape().ok()?;
    r.u128("key id").ok()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The share store of one primary server.
pub struct Store {
    scratch: std::path::PathBuf,
    db: Database,
    keys: Keys,
    /// Staged uploads in progress: (input, tag).
    staging: std::sync::Mutex<std::collections::HashSet<(String, u128)>>,
    /// Records waiting for the next group commit ([`Store::put_input_within`]).
    group: std::sync::Mutex<Group>,
    /// Signalled when a group commit finished.
    group_done: std::sync::Condvar,
}

/// A group commit's answer to one writer: the key id of the record it replaced.
type Answer = Result<Option<u128>, StoreError>;

/// The group commit's queue and answers.
#[derive(Default)]
struct Group {
    queue: Vec<Queued>,
    /// A writer is committing a batch.
    leader: bool,
    done: std::collections::HashMap<u64, Answer>,
    next: u64,
}

/// An input record waiting for a group commit.
struct Queued {
    id: u64,
    name: String,
    owner: String,
    record: Vec<u8>,
    quota: u64,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store { .. }")
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` (file `shares.redb`).
    ///
    /// The directory is made private (mode 0700) and the store file is created with
    /// mode 0600 from its first byte. A marker file (`store.id`) records that a store
    /// was created here, so that a store file that has gone missing or is empty
    /// (truncated) is an error rather than a silently empty store. Every page is
    /// checked (redb's checksums) before the server starts.
    ///
    /// # Errors
    /// The directory cannot be created; the database cannot be opened (for example,
    /// another server process holds it); [`StoreError::Damaged`] when the file is
    /// missing, empty, unreadable or fails its integrity check.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        private_dir(dir)?;
        let path = dir.join("shares.redb");
        let marker = dir.join("store.id");
        let repaired = dir.join("store.repaired");
        let damaged = |problem: String| StoreError::Damaged {
            path: path.display().to_string(),
            problem,
        };
        if repaired.exists() {
            return Err(damaged(format!(
                "an earlier start found the store corrupt and redb repaired it, which may have lost or rolled back records; check the data, then delete {} to accept the repaired store",
                repaired.display()
            )));
        }
        match std::fs::metadata(&path) {
            Ok(m) if m.len() == 0 => {
                return Err(damaged(
                    "the file is empty (truncated?): restore it from a backup, or remove the data directory to start with an empty store".into(),
                ));
            }
            Ok(_) => {}
            Err(_) if marker.exists() => {
                return Err(damaged(format!(
                    "the file is missing although {} says a store was created here: restore it from a backup, or remove the data directory to start with an empty store",
                    marker.display()
                )));
            }
            Err(_) => create_private(&path)?,
        }
        let opened = std::panic::catch_unwind(|| {
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&path)
        });
        let mut db = match opened {
            Ok(Ok(d)) => d,
            Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => {
                return Err(StoreError::Db(format!(
                    "{}: held by another process (is another server running on this data directory?)",
                    path.display()
                )));
            }
            Ok(Err(e)) => return Err(damaged(format!("cannot be opened: {e}"))),
            Err(_) => return Err(damaged("cannot be read (redb failed on it)".into())),
        };
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| db.check_integrity())) {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => {
                let _ = std::fs::write(&repaired, b"repaired\n");
                return Err(damaged(format!(
                    "it failed its integrity check and was repaired, which may have lost or rolled back records; check the data, then delete {} to accept the repaired store",
                    repaired.display()
                )));
            }
            Ok(Err(e)) => return Err(damaged(format!("failed its integrity check: {e}"))),
            Err(_) => return Err(damaged("failed its integrity check".into())),
        }
        if !marker.exists() {
            let mut id = [0u8; 16];
            let _ = getrandom::fill(&mut id);
            let text = format!(
                "privpy share store v2 {}\n",
                id.iter().map(|b| format!("{b:02x}")).collect::<String>()
            );
            write_private(&marker, text.as_bytes())?;
        }
        {
            let tx = db.begin_read().map_err(self::db)?;
            let old = tx
                .list_tables()
                .map_err(self::db)?
                .any(|t| OLD_TABLES.contains(&t.name()));
            if old {
                return Err(damaged(
                    "it was written by an older privpy, which stored shares unencrypted: remove the data directory and upload the inputs again".into(),
                ));
            }
        }
        let keys = Keys::open(&dir.join("keys.bin"))?;
        let tx = db.begin_write().map_err(self::db)?;
        tx.open_table(INPUTS).map_err(self::db)?;
        tx.open_table(OUTPUTS).map_err(self::db)?;
        tx.open_table(CHUNKS).map_err(self::db)?;
        tx.open_table(OUT_CHUNKS).map_err(self::db)?;
        tx.commit().map_err(self::db)?;
        // Scratch files of the jobs a crash interrupted: unreadable (their keys were
        // only in memory), and deleted now.
        let scratch = dir.join("scratch");
        if scratch.exists() {
            std::fs::remove_dir_all(&scratch)
                .map_err(|e| damaged(format!("its scratch directory cannot be emptied: {e}")))?;
        }
        let store = Store {
            scratch,
            db,
            keys,
            staging: std::sync::Mutex::new(std::collections::HashSet::new()),
            group: std::sync::Mutex::new(Group::default()),
            group_done: std::sync::Condvar::new(),
        };
        store.shred_orphans()?;
        Ok(store)
    }

    /// The directory for jobs' scratch files (large intermediate results), emptied
    /// when the store opens.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    /// Stores an input share durably. The owner may replace its own input; another
    /// client's name is refused and nothing changes.
    ///
    /// # Errors
    /// [`StoreError::NotOwner`], or a database error.
    pub fn put_input(&self, name: &str, input: &StoredInput) -> Result<(), StoreError> {
        self.put_input_within(name, input, u64::MAX)
    }

    /// [`Store::put_input`] with a quota: the owner's inputs (those named
    /// `<owner>/…`), counting this one in place of any it replaces, may take at most
    /// `quota` bytes. Checked and written in one transaction.
    ///
    /// Concurrent writers share commits (group commit): while one transaction
    /// commits, the records that arrive queue up and the next transaction writes
    /// them all, with one sync to disk. Each writer returns once its record is
    /// durable, and each gets its own answer (a record refused for its owner or
    /// quota does not hold back the others).
    ///
    /// # Errors
    /// [`StoreError::Quota`], [`StoreError::NotOwner`], or a database error.
    pub fn put_input_within(
        &self,
        name: &str,
        input: &StoredInput,
        quota: u64,
    ) -> Result<(), StoreError> {
        let key = self.keys.create()?;
        let mut w = W(Vec::new());
        w.str(&input.owner);
        w.u128(input.tag);
        w.strs(&input.readers);
        put_share(&mut w, &input.share, key);
        let written = self.group_put(Queued {
            id: 0,
            name: name.to_string(),
            owner: input.owner.clone(),
            record: w.0,
            quota,
        });
        match &written {
            Ok(Some(old)) => self.keys.shred(*old),
            Ok(None) => {}
            Err(_) => self.keys.shred(key.0),
        }
        written.map(drop)
    }

    /// Queues one record for the next group commit and waits for its answer: the
    /// key id of the record it replaced.
    fn group_put(&self, mut q: Queued) -> Result<Option<u128>, StoreError> {
        let lock = || match self.group.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut g = lock();
        g.next += 1;
        let id = g.next;
        q.id = id;
        g.queue.push(q);
        loop {
            if let Some(r) = g.done.remove(&id) {
                return r;
            }
            if !g.leader {
                // Lead: commit everything queued so far in one transaction.
                g.leader = true;
                let batch = std::mem::take(&mut g.queue);
                drop(g);
                let results = self.commit_group(&batch);
                g = lock();
                g.leader = false;
                g.done.extend(results);
                self.group_done.notify_all();
                continue;
            }
            g = match self.group_done.wait(g) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    /// Writes `batch` in one transaction; each record's answer.
    fn commit_group(&self, batch: &[Queued]) -> Vec<(u64, Answer)> {
        let run = || -> Result<Vec<(u64, Answer)>, StoreError> {
            let tx = self.db.begin_write().map_err(db)?;
            let mut out = Vec::with_capacity(batch.len());
            {
                let mut t = tx.open_table(INPUTS).map_err(db)?;
                let mut c = tx.open_table(CHUNKS).map_err(db)?;
                for q in batch {
                    let one = (|| {
                        let name = q.name.as_str();
                        let (replaced, old_pieces) = match t.get(name).map_err(db)? {
                            Some(prev) => {
                                let owner = decode_owner(name, prev.value())?;
                                if owner != q.owner {
                                    return Err(StoreError::NotOwner {
                                        name: q.name.clone(),
                                        owner,
                                    });
                                }
                                (key_of(prev.value(), true), chunked_of(prev.value()))
                            }
                            None => (None, None),
                        };
                        check_quota(&t, name, &q.owner, q.record.len() as u64, q.quota)?;
                        t.insert(name, q.record.as_slice()).map_err(db)?;
                        if let Some((tag, count, _)) = old_pieces {
                            for seq in 0..count {
                                c.remove((name, tag, seq)).map_err(db)?;
                            }
                        }
                        Ok(replaced)
                    })();
                    out.push((q.id, one));
                }
            }
            tx.commit().map_err(db)?;
            Ok(out)
        };
        match run() {
            Ok(out) => out,
            // Nothing of the transaction was stored.
            Err(e) => batch
                .iter()
                .map(|q| (q.id, Err(StoreError::Db(e.to_string()))))
                .collect(),
        }
    }

    /// The input stored under `name`.
    ///
    /// # Errors
    /// A database error or a corrupt record.
    pub fn input(&self, name: &str) -> Result<Option<StoredInput>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(INPUTS).map_err(db)?;
        let Some(v) = t.get(name).map_err(db)? else {
            return Ok(None);
        };
        let pieces = match chunked_of(v.value()) {
            None => None,
            Some((tag, count, total)) => {
                let corrupt = |reason: String| StoreError::Corrupt {
                    key: name.to_string(),
                    source: WireError::Invalid {
                        what: "input pieces",
                        reason,
                    },
                };
                let c = tx.open_table(CHUNKS).map_err(db)?;
                let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
                for seq in 0..count {
                    match c.get((name, tag, seq)).map_err(db)? {
                        Some(p) => bytes.extend_from_slice(p.value()),
                        None => return Err(corrupt(format!("piece {seq} of {count} is missing"))),
                    }
                }
                if bytes.len() as u64 != total {
                    return Err(corrupt(format!(
                        "{} bytes in its pieces, {total} expected",
                        bytes.len()
                    )));
                }
                Some(bytes)
            }
        };
        Ok(Some(decode_input(name, v.value(), &self.keys, pieces)?))
    }

    /// What the input stored under `name` is (owner, tag, grants, ring, shape),
    /// without reading its share.
    ///
    /// # Errors
    /// A database error or a corrupt record.
    pub fn input_info(&self, name: &str) -> Result<Option<InputInfo>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(INPUTS).map_err(db)?;
        let Some(v) = t.get(name).map_err(db)? else {
            return Ok(None);
        };
        let mut r = R(v.value());
        let parse = |r: &mut R<'_>| -> Result<InputInfo, WireError> {
            Ok(InputInfo {
                owner: r.str("owner")?,
                tag: r.u128("upload tag")?,
                readers: r.strs("readers")?,
                ring: r.ring()?,
                shape: r.shape()?,
            })
        };
        parse(&mut r)
            .map(Some)
            .map_err(|source| StoreError::Corrupt {
                key: name.to_string(),
                source,
            })
    }

    /// A reader of the share of input `name` from upload `tag`, for inputs
    /// uploaded in parts; `None` for an input stored whole (small) or from another
    /// upload. The reader sees the store as it is now, whatever is written later.
    ///
    /// # Errors
    /// A database error, a corrupt record, or a deleted key.
    pub fn input_reader(&self, name: &str, tag: u128) -> Result<Option<InputReader>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let (key_id, lens) = {
            let t = tx.open_table(INPUTS).map_err(db)?;
            let Some(v) = t.get(name).map_err(db)? else {
                return Ok(None);
            };
            let v = v.value();
            let Some((stored_tag, count, total)) = chunked_of(v) else {
                return Ok(None);
            };
            if stored_tag != tag {
                return Ok(None);
            }
            let corrupt = |reason: String| StoreError::Corrupt {
                key: name.to_string(),
                source: WireError::Invalid {
                    what: "input pieces",
                    reason,
                },
            };
            let mut r = R(v);
            let lens = (|| {
                r.str("owner").ok()?;
                r.u128("upload tag").ok()?;
                r.strs("readers").ok()?;
                r.ring().ok()?;
                r.shape().ok()?;
                let id = r.u128("key id").ok()?;
                r.bytes("share").ok()?;
                r.u32("pieces").ok()?;
                r.u64("bytes").ok()?;
                let lens: Option<Vec<u32>> = (0..count).map(|_| r.u32("piece").ok()).collect();
                Some((id, lens?))
            })();
            let Some((id, lens)) = lens else {
                // A record without its pieces' lengths: read whole.
                return Ok(None);
            };
            if lens.iter().map(|&l| u64::from(l)).sum::<u64>() != total {
                return Err(corrupt(format!(
                    "its pieces' lengths do not add up to {total}"
                )));
            }
            (id, lens)
        };
        let key = self.keys.load(key_id).ok_or_else(|| StoreError::Corrupt {
            key: name.to_string(),
            source: WireError::Invalid {
                what: "share",
                reason: "its key is gone (deleted, or lost in a crash)".into(),
            },
        })?;
        let mut starts = Vec::with_capacity(lens.len() + 1);
        let mut at = 0u64;
        for l in lens {
            starts.push(at);
            at += u64::from(l);
        }
        starts.push(at);
        Ok(Some(InputReader {
            tx: Mutex::new(tx),
            name: name.to_string(),
            tag,
            key,
            starts,
        }))
    }

    /// Starts an upload in parts of `owner`'s input `name`: checks the name's owner
    /// and the quota now (the commit checks them again), and makes the record's key.
    /// The parts go to [`Store::append_staged`]; [`Store::commit_staged`] then
    /// stores the input in one transaction, replacing any earlier one, and
    /// [`Store::abandon_staged`] drops it. Each part is written (encrypted) as it
    /// arrives, so memory holds one part at a time. Pieces of an upload that never
    /// committed (a crash) are deleted at the next start.
    ///
    /// # Errors
    /// [`StoreError::NotOwner`], [`StoreError::Quota`], [`StoreError::Staging`] (a
    /// shape too large to address, or a tag already in use for this name), or a
    /// database error.
    pub fn stage_input(
        &self,
        name: &str,
        input: StagedInput,
        quota: u64,
    ) -> Result<Staged, StoreError> {
        let staging = |problem: &str| StoreError::Staging {
            name: name.to_string(),
            problem: problem.to_string(),
        };
        let total = input
            .shape
            .iter()
            .try_fold(input.ring.bytes() as u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| staging("the shape is too large"))?;
        {
            let tx = self.db.begin_read().map_err(db)?;
            let t = tx.open_table(INPUTS).map_err(db)?;
            if let Some(prev) = t.get(name).map_err(db)? {
                let owner = decode_owner(name, prev.value())?;
                if owner != input.owner {
                    return Err(StoreError::NotOwner {
                        name: name.to_string(),
                        owner,
                    });
                }
                if tag_of(prev.value()) == Some(input.tag) {
                    return Err(staging("the stored input already has this upload tag"));
                }
            }
            check_quota(&t, name, &input.owner, total, quota)?;
        }
        if !self.staged_set().insert((name.to_string(), input.tag)) {
            return Err(staging("an upload with this tag is in progress"));
        }
        let key = match self.keys.create() {
            Ok(k) => k,
            Err(e) => {
                self.staged_set().remove(&(name.to_string(), input.tag));
                return Err(e);
            }
        };
        Ok(Staged {
            name: name.to_string(),
            input,
            total,
            written: 0,
            pieces: 0,
            lens: Vec::new(),
            key,
        })
    }

    fn staged_set(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<(String, u128)>> {
        match self.staging.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Writes the next part of a staged upload (encrypted, durably).
    ///
    /// # Errors
    /// [`StoreError::Staging`] when the part holds more bytes than remain, or
    /// fewer than [`MIN_PART`] without being the last; a database error (a full
    /// disk, say). The upload stays staged either way; the
    /// caller abandons it.
    pub fn append_staged(&self, st: &mut Staged, part: &[u8]) -> Result<(), StoreError> {
        let remaining = st.total - st.written;
        if part.len() < MIN_PART && (part.len() as u64) < remaining {
            // Each part costs a transaction: tiny parts would make an upload slow
            // on purpose.
            return Err(StoreError::Staging {
                name: st.name.clone(),
                problem: format!(
                    "a part of {} bytes: parts other than the last hold at least {MIN_PART}",
                    part.len()
                ),
            });
        }
        if part.len() as u64 > st.total - st.written {
            return Err(StoreError::Staging {
                name: st.name.clone(),
                problem: format!(
                    "a part of {} bytes, but only {} of the shape's {} remain",
                    part.len(),
                    st.total - st.written,
                    st.total
                ),
            });
        }
        let mut piece = part.to_vec();
        ctr_xor_at(&st.key.1, st.written, &mut piece);
        let mut tx = self.db.begin_write().map_err(db)?;
        // The commit of the whole upload makes its pieces durable: a piece lost in a
        // crash only loses an upload that had not committed.
        tx.set_durability(redb::Durability::None).map_err(db)?;
        {
            let mut c = tx.open_table(CHUNKS).map_err(db)?;
            c.insert(
                (st.name.as_str(), st.input.tag, st.pieces),
                piece.as_slice(),
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        st.written += part.len() as u64;
        st.pieces += 1;
        st.lens.push(u32::try_from(part.len()).unwrap_or(u32::MAX));
        Ok(())
    }

    /// Stores a staged upload whose every byte arrived as the input, replacing the
    /// owner's earlier one (whose pieces and key are deleted). On any error the
    /// upload is abandoned and the earlier input stays.
    ///
    /// # Errors
    /// [`StoreError::Staging`] (bytes missing), [`StoreError::NotOwner`],
    /// [`StoreError::Quota`], or a database error.
    pub fn commit_staged(&self, st: Staged, quota: u64) -> Result<(), StoreError> {
        if st.written != st.total {
            let e = StoreError::Staging {
                name: st.name.clone(),
                problem: format!("{} of {} bytes arrived", st.written, st.total),
            };
            self.abandon_staged(st);
            return Err(e);
        }
        let committed = (|| {
            let mut w = W(Vec::new());
            w.str(&st.input.owner);
            w.u128(st.input.tag);
            w.strs(&st.input.readers);
            w.ring(st.input.ring);
            w.shape(&st.input.shape);
            w.u128(st.key.0);
            w.bytes(&[]);
            w.u32(st.pieces);
            w.u64(st.total);
            for &len in &st.lens {
                w.u32(len);
            }
            let tx = self.db.begin_write().map_err(db)?;
            let mut replaced = None;
            {
                let mut t = tx.open_table(INPUTS).map_err(db)?;
                let mut old_pieces = None;
                if let Some(prev) = t.get(st.name.as_str()).map_err(db)? {
                    let owner = decode_owner(&st.name, prev.value())?;
                    if owner != st.input.owner {
                        return Err(StoreError::NotOwner {
                            name: st.name.clone(),
                            owner,
                        });
                    }
                    replaced = key_of(prev.value(), true);
                    old_pieces = chunked_of(prev.value());
                }
                check_quota(
                    &t,
                    &st.name,
                    &st.input.owner,
                    w.0.len() as u64 + st.total,
                    quota,
                )?;
                t.insert(st.name.as_str(), w.0.as_slice()).map_err(db)?;
                if let Some((tag, count, _)) = old_pieces {
                    let mut c = tx.open_table(CHUNKS).map_err(db)?;
                    for seq in 0..count {
                        c.remove((st.name.as_str(), tag, seq)).map_err(db)?;
                    }
                }
            }
            tx.commit().map_err(db)?;
            Ok(replaced)
        })();
        match committed {
            Ok(replaced) => {
                if let Some(old) = replaced {
                    self.keys.shred(old);
                }
                self.staged_set().remove(&(st.name.clone(), st.input.tag));
                Ok(())
            }
            Err(e) => {
                self.abandon_staged(st);
                Err(e)
            }
        }
    }

    /// Drops a staged upload: its pieces are deleted and its key shredded.
    pub fn abandon_staged(&self, st: Staged) {
        let removed = (|| {
            let tx = self.db.begin_write().map_err(db)?;
            {
                let mut c = tx.open_table(CHUNKS).map_err(db)?;
                for seq in 0..st.pieces {
                    c.remove((st.name.as_str(), st.input.tag, seq))
                        .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })();
        if let Err(e) = removed {
            // The key goes anyway, so the pieces are unreadable; the next start
            // deletes them.
            tracing::warn!(error = %e, "pieces of an abandoned upload stay until the next start");
        }
        self.keys.shred(st.key.0);
        self.staged_set().remove(&(st.name.clone(), st.input.tag));
    }

    /// Deletes the input stored under `name`; whether it was there.
    ///
    /// # Errors
    /// A database error.
    pub fn delete_input(&self, name: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let removed = {
            let mut t = tx.open_table(INPUTS).map_err(db)?;
            let removed = t
                .remove(name)
                .map_err(db)?
                .map(|v| (key_of(v.value(), true), chunked_of(v.value())));
            if let Some((_, Some((tag, count, _)))) = removed {
                let mut c = tx.open_table(CHUNKS).map_err(db)?;
                for seq in 0..count {
                    c.remove((name, tag, seq)).map_err(db)?;
                }
            }
            removed.map(|(k, _)| k)
        };
        tx.commit().map_err(db)?;
        if let Some(Some(id)) = removed {
            self.keys.shred(id);
        }
        Ok(removed.is_some())
    }

    /// Names of the stored inputs.
    ///
    /// # Errors
    /// A database error.
    pub fn input_names(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(INPUTS).map_err(db)?;
        let mut names = Vec::new();
        for entry in t.iter().map_err(db)? {
            let (k, _) = entry.map_err(db)?;
            names.push(k.value().to_string());
        }
        Ok(names)
    }

    /// Stores the output shares of a job in one transaction: `(recipient, name, share)`.
    ///
    /// # Errors
    /// A database error (then none of them is stored).
    pub fn put_outputs(
        &self,
        job: u64,
        outputs: &[(String, String, Share)],
    ) -> Result<(), StoreError> {
        self.put_outputs_with(job, outputs, Vec::new())
    }

    /// Writes the pieces of a large output of `job` for `client` from `reader` (its
    /// share: `ring` elements of `shape`), encrypted, one piece per transaction, so
    /// that memory holds one piece. The output exists only once
    /// [`Store::put_outputs_with`] commits its record; pieces a crash leaves behind
    /// are deleted at the next start.
    ///
    /// # Errors
    /// A read error of `reader` or a database error (a full disk): the pieces
    /// written so far are deleted.
    pub fn stream_output(
        &self,
        job: u64,
        client: &str,
        name: &str,
        ring: RingKind,
        shape: &[usize],
        reader: &dyn privpy_core::ShareReader,
    ) -> Result<StreamedOutput, StoreError> {
        let total = shape
            .iter()
            .try_fold(ring.bytes() as u64, |a, &d| a.checked_mul(d as u64))
            .ok_or_else(|| db("an output too large"))?;
        let key = self.keys.create()?;
        let mut written = 0u32;
        let result = (|| {
            let mut offset = 0u64;
            let mut piece = Vec::new();
            while offset < total {
                let len = (total - offset).min(PIECE as u64) as usize;
                piece.resize(len, 0);
                reader
                    .read_at(offset, &mut piece)
                    .map_err(|e| db(format!("reading output {name:?}: {e}")))?;
                ctr_xor_at(&key.1, offset, &mut piece);
                let mut tx = self.db.begin_write().map_err(db)?;
                tx.set_durability(redb::Durability::None).map_err(db)?;
                {
                    let mut c = tx.open_table(OUT_CHUNKS).map_err(db)?;
                    c.insert((job, client, name, written), piece.as_slice())
                        .map_err(db)?;
                }
                tx.commit().map_err(db)?;
                written += 1;
                offset += len as u64;
            }
            Ok(())
        })();
        match result {
            Ok(()) => Ok(StreamedOutput {
                ring,
                shape: shape.to_vec(),
                key,
                pieces: written,
                total,
            }),
            Err(e) => {
                self.drop_pieces(job, client, name, written);
                self.keys.shred(key.0);
                Err(e)
            }
        }
    }

    /// Deletes streamed pieces that will not be recorded (another output of the
    /// job failed), and their key.
    pub fn abandon_streamed(&self, job: u64, client: &str, name: &str, st: StreamedOutput) {
        self.drop_pieces(job, client, name, st.pieces);
        self.keys.shred(st.key.0);
    }

    fn drop_pieces(&self, job: u64, client: &str, name: &str, count: u32) {
        let removed = (|| {
            let tx = self.db.begin_write().map_err(db)?;
            {
                let mut c = tx.open_table(OUT_CHUNKS).map_err(db)?;
                for seq in 0..count {
                    c.remove((job, client, name, seq)).map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })();
        if let Err(e) = removed {
            tracing::warn!(error = %e, "pieces of an unrecorded output stay until the next start");
        }
    }

    /// [`Store::put_outputs`] plus large outputs whose pieces
    /// [`Store::stream_output`] wrote: every record in one transaction.
    ///
    /// # Errors
    /// A database error; nothing is stored then (the streamed pieces are deleted
    /// at the next start, their keys at once).
    pub fn put_outputs_with(
        &self,
        job: u64,
        outputs: &[(String, String, Share)],
        streamed: Vec<(String, String, StreamedOutput)>,
    ) -> Result<(), StoreError> {
        let streamed_keys: Vec<u128> = streamed.iter().map(|(_, _, s)| s.key.0).collect();
        let keys = match self.keys.create_many(outputs.len()) {
            Ok(k) => k,
            Err(e) => {
                self.keys.shred_many(&streamed_keys);
                return Err(e);
            }
        };
        let written = (|| {
            let tx = self.db.begin_write().map_err(db)?;
            {
                let mut t = tx.open_table(OUTPUTS).map_err(db)?;
                let mut c = tx.open_table(OUT_CHUNKS).map_err(db)?;
                let created = now();
                for ((client, name, share), key) in outputs.iter().zip(&keys) {
                    let mut w = W(Vec::new());
                    w.str(client);
                    w.u64(created);
                    let len = share.shape().iter().product::<usize>()
                        * share.ring().map_or(8, |r| r.bytes());
                    if len > PIECE {
                        // In pieces, so that a fetch in parts reads one at a time.
                        w.ring(share.ring().unwrap_or(RingKind::Z64));
                        w.shape(share.shape());
                        w.u128(key.0);
                        w.bytes(&[]);
                        let mut bytes = share.to_bytes();
                        ctr_xor(&key.1, &mut bytes);
                        let pieces = bytes.len().div_ceil(PIECE);
                        w.u32(u32::try_from(pieces).map_err(|_| db("an output too large"))?);
                        w.u64(bytes.len() as u64);
                        w.u32(PIECE as u32);
                        for (seq, piece) in bytes.chunks(PIECE).enumerate() {
                            c.insert((job, client.as_str(), name.as_str(), seq as u32), piece)
                                .map_err(db)?;
                        }
                    } else {
                        put_share(&mut w, share, *key);
                    }
                    t.insert((job, client.as_str(), name.as_str()), w.0.as_slice())
                        .map_err(db)?;
                }
                for (client, name, st) in &streamed {
                    let mut w = W(Vec::new());
                    w.str(client);
                    w.u64(created);
                    w.ring(st.ring);
                    w.shape(&st.shape);
                    w.u128(st.key.0);
                    w.bytes(&[]);
                    w.u32(st.pieces);
                    w.u64(st.total);
                    w.u32(PIECE as u32);
                    t.insert((job, client.as_str(), name.as_str()), w.0.as_slice())
                        .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
        })();
        if written.is_err() {
            let mut ids: Vec<u128> = keys.iter().map(|(id, _)| *id).collect();
            ids.extend(streamed_keys);
            self.keys.shred_many(&ids);
        }
        written
    }

    /// `client`'s share of output `name` of `job`, which stays stored until
    /// [`Store::release_output`] or expiry. `Ok(None)` when there is no such output
    /// for this client (another client's output of the same name is a different
    /// record, so its existence is not revealed).
    ///
    /// # Errors
    /// A database error or a corrupt record.
    pub fn output(&self, job: u64, client: &str, name: &str) -> Result<Option<Share>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(OUTPUTS).map_err(db)?;
        let Some(v) = t.get((job, client, name)).map_err(db)? else {
            return Ok(None);
        };
        let pieces = match out_chunked_of(v.value()) {
            None => None,
            Some((count, total)) => {
                let c = tx.open_table(OUT_CHUNKS).map_err(db)?;
                let mut bytes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
                for seq in 0..count {
                    match c.get((job, client, name, seq)).map_err(db)? {
                        Some(p) => bytes.extend_from_slice(p.value()),
                        None => return Err(missing_piece(name, seq, count)),
                    }
                }
                Some(bytes)
            }
        };
        Ok(Some(
            decode_output(name, v.value(), &self.keys, pieces)?.share,
        ))
    }

    /// Bytes `offset..offset + max` of `client`'s share of output `name` of `job`
    /// (decrypted), with the share's ring, shape and length: a fetch in parts.
    /// `Ok(None)` as for [`Store::output`].
    ///
    /// # Errors
    /// An offset past the end ([`StoreError::Staging`]), a database error or a
    /// corrupt record.
    pub fn output_part(
        &self,
        job: u64,
        client: &str,
        name: &str,
        offset: u64,
        max: usize,
    ) -> Result<Option<OutputPart>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(OUTPUTS).map_err(db)?;
        let Some(v) = t.get((job, client, name)).map_err(db)? else {
            return Ok(None);
        };
        let corrupt = |source| StoreError::Corrupt {
            key: name.to_string(),
            source,
        };
        let mut r = R(v.value());
        let header = (|| -> Result<_, WireError> {
            r.str("client")?;
            r.u64("created")?;
            let ring = r.ring()?;
            let shape = r.shape()?;
            let id = r.u128("key id")?;
            let n = r.u32("share")? as usize;
            Ok((ring, shape, id, r.take(n, "share")?))
        })();
        let (ring, shape, id, all) = header.map_err(corrupt)?;
        let pieced = out_pieces_of(v.value());
        let total = pieced.map_or(all.len() as u64, |(_, t, _)| t);
        if offset > total {
            return Err(StoreError::Staging {
                name: name.to_string(),
                problem: format!("offset {offset} is past the share's {total} bytes"),
            });
        }
        let mut bytes = match pieced {
            None => {
                let start = offset as usize;
                let end = start.saturating_add(max).min(all.len());
                all[start..end].to_vec()
            }
            // One piece at most: the one holding `offset`.
            Some((count, _, piece)) if offset < total => {
                let seq = (offset / piece) as u32;
                let c = tx.open_table(OUT_CHUNKS).map_err(db)?;
                let Some(p) = c.get((job, client, name, seq)).map_err(db)? else {
                    return Err(missing_piece(name, seq, count));
                };
                let within = (offset % piece) as usize;
                let piece = p.value();
                let end = within.saturating_add(max).min(piece.len());
                piece[within.min(end)..end].to_vec()
            }
            Some(_) => Vec::new(),
        };
        let key = self.keys.load(id).ok_or_else(|| {
            corrupt(WireError::Invalid {
                what: "share",
                reason: "its key is gone (deleted, or lost in a crash)".into(),
            })
        })?;
        ctr_xor_at(&key, offset, &mut bytes);
        Ok(Some(OutputPart {
            ring,
            shape,
            total,
            bytes,
        }))
    }

    /// Deletes `client`'s output `name` of `job`; whether it was there.
    ///
    /// # Errors
    /// A database error.
    pub fn release_output(&self, job: u64, client: &str, name: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let removed = {
            let mut t = tx.open_table(OUTPUTS).map_err(db)?;
            let removed = t
                .remove((job, client, name))
                .map_err(db)?
                .map(|v| (key_of(v.value(), false), out_chunked_of(v.value())));
            if let Some((_, Some((count, _)))) = removed {
                let mut c = tx.open_table(OUT_CHUNKS).map_err(db)?;
                for seq in 0..count {
                    c.remove((job, client, name, seq)).map_err(db)?;
                }
            }
            removed.map(|(k, _)| k)
        };
        tx.commit().map_err(db)?;
        if let Some(Some(id)) = removed {
            self.keys.shred(id);
        }
        Ok(removed.is_some())
    }

    /// The outputs waiting for `client`: job, name and shape.
    ///
    /// # Errors
    /// A database error or a corrupt record.
    pub fn outputs_for(&self, client: &str) -> Result<Vec<(u64, String, Vec<usize>)>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(OUTPUTS).map_err(db)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            let (job, who, name) = k.value();
            if who == client {
                let mut r = R(v.value());
                let shape = (|| {
                    r.str("client")?;
                    r.u64("created")?;
                    r.ring()?;
                    r.shape()
                })()
                .map_err(|source| StoreError::Corrupt {
                    key: name.to_string(),
                    source,
                })?;
                out.push((job, name.to_string(), shape));
            }
        }
        Ok(out)
    }

    /// Number of stored outputs.
    ///
    /// # Errors
    /// A database error.
    pub fn output_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(OUTPUTS).map_err(db)?;
        t.len().map_err(db)
    }

    /// Deletes outputs older than `ttl`; returns how many.
    ///
    /// # Errors
    /// A database error.
    pub fn sweep(&self, ttl: Duration) -> Result<u64, StoreError> {
        self.sweep_before(now().saturating_sub(ttl.as_secs()))
    }

    /// Deletes outputs created before `cutoff` (seconds since the Unix epoch).
    fn sweep_before(&self, cutoff: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let mut removed = Vec::new();
        {
            let mut t = tx.open_table(OUTPUTS).map_err(db)?;
            let mut pieces = Vec::new();
            t.retain(|k, v| {
                // Corrupt records are dropped too: nobody could fetch them.
                let keep = created_at(v).is_some_and(|c| c >= cutoff);
                if !keep {
                    removed.push(key_of(v, false));
                    if let Some((count, _)) = out_chunked_of(v) {
                        let (job, client, name) = k;
                        pieces.push((job, client.to_string(), name.to_string(), count));
                    }
                }
                keep
            })
            .map_err(db)?;
            let mut c = tx.open_table(OUT_CHUNKS).map_err(db)?;
            for (job, client, name, count) in pieces {
                for seq in 0..count {
                    c.remove((job, client.as_str(), name.as_str(), seq))
                        .map_err(db)?;
                }
            }
        }
        tx.commit().map_err(db)?;
        let ids: Vec<u128> = removed.iter().flatten().copied().collect();
        self.keys.shred_many(&ids);
        Ok(removed.len() as u64)
    }

    /// Deletes key files no record uses (left by a crash between writing a key and
    /// committing its record, or between a deletion and shredding its key).
    fn shred_orphans(&self) -> Result<(), StoreError> {
        let mut used = std::collections::HashSet::new();
        let mut pieced = std::collections::HashSet::new();
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(INPUTS).map_err(db)?;
        for entry in t.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            used.extend(key_of(v.value(), true));
            if let Some((tag, _, _)) = chunked_of(v.value()) {
                pieced.insert((k.value().to_string(), tag));
            }
        }
        // Pieces of uploads that never committed (the server stopped mid-upload).
        let mut stray_pieces = Vec::new();
        let c = tx.open_table(CHUNKS).map_err(db)?;
        for entry in c.iter().map_err(db)? {
            let (k, _) = entry.map_err(db)?;
            let (name, tag, seq) = k.value();
            if !pieced.contains(&(name.to_string(), tag)) {
                stray_pieces.push((name.to_string(), tag, seq));
            }
        }
        if !stray_pieces.is_empty() {
            let w = self.db.begin_write().map_err(db)?;
            {
                let mut c = w.open_table(CHUNKS).map_err(db)?;
                for (name, tag, seq) in &stray_pieces {
                    c.remove((name.as_str(), *tag, *seq)).map_err(db)?;
                }
            }
            w.commit().map_err(db)?;
        }
        let t = tx.open_table(OUTPUTS).map_err(db)?;
        let mut out_pieced = std::collections::HashSet::new();
        for entry in t.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            used.extend(key_of(v.value(), false));
            if out_chunked_of(v.value()).is_some() {
                let (job, client, name) = k.value();
                out_pieced.insert((job, client.to_string(), name.to_string()));
            }
        }
        let mut stray_out = Vec::new();
        let oc = tx.open_table(OUT_CHUNKS).map_err(db)?;
        for entry in oc.iter().map_err(db)? {
            let (k, _) = entry.map_err(db)?;
            let (job, client, name, seq) = k.value();
            if !out_pieced.contains(&(job, client.to_string(), name.to_string())) {
                stray_out.push((job, client.to_string(), name.to_string(), seq));
            }
        }
        if !stray_out.is_empty() {
            let w = self.db.begin_write().map_err(db)?;
            {
                let mut c = w.open_table(OUT_CHUNKS).map_err(db)?;
                for (job, client, name, seq) in &stray_out {
                    c.remove((*job, client.as_str(), name.as_str(), *seq))
                        .map_err(db)?;
                }
            }
            w.commit().map_err(db)?;
        }
        let stray: Vec<u128> = self
            .keys
            .all()
            .into_iter()
            .filter(|id| !used.contains(id))
            .collect();
        self.keys.shred_many(&stray);
        Ok(())
    }
}

/// The owner of an input record (without decrypting its share).
fn decode_owner(name: &str, v: &[u8]) -> Result<String, StoreError> {
    R(v).str("owner").map_err(|source| StoreError::Corrupt {
        key: name.to_string(),
        source,
    })
}

/// The upload tag of an input record.
fn tag_of(v: &[u8]) -> Option<u128> {
    let mut r = R(v);
    r.str("owner").ok()?;
    r.u128("upload tag").ok()
}

/// For an input record uploaded in parts: its tag, number of pieces and share bytes.
fn chunked_of(v: &[u8]) -> Option<(u128, u32, u64)> {
    let mut r = R(v);
    r.str("owner").ok()?;
    let tag = r.u128("upload tag").ok()?;
    r.strs("readers").ok()?;
    r.ring().ok()?;
    r.shape().ok()?;
    let (count, total) = pieces_after_key(&mut r)?;
    Some((tag, count, total))
}

/// After a record's key id: the (empty) inline share, then, for a record stored in
/// pieces, their number and the share's bytes.
fn pieces_after_key(r: &mut R<'_>) -> Option<(u32, u64)> {
    r.u128("key id").ok()?;
    r.bytes("share").ok()?;
    if r.0.is_empty() {
        return None;
    }
    Some((r.u32("pieces").ok()?, r.u64("bytes").ok()?))
}

/// For an output record stored in pieces: the number of pieces and share bytes.
fn out_chunked_of(v: &[u8]) -> Option<(u32, u64)> {
    out_pieces_of(v).map(|(count, total, _)| (count, total))
}

/// For an output record stored in pieces: their number, the share's bytes, and
/// the size of every piece but the last (recorded since pieces became 4 KiB short
/// of 4 MiB; records without it have pieces of 4 MiB).
fn out_pieces_of(v: &[u8]) -> Option<(u32, u64, u64)> {
    let mut r = R(v);
    r.str("client").ok()?;
    r.u64("created").ok()?;
    r.ring().ok()?;
    r.shape().ok()?;
    let (count, total) = pieces_after_key(&mut r)?;
    let piece = if r.0.is_empty() {
        4 << 20
    } else {
        u64::from(r.u32("piece size").ok()?)
    };
    Some((count, total, piece.max(1)))
}

fn missing_piece(name: &str, seq: u32, count: u32) -> StoreError {
    StoreError::Corrupt {
        key: name.to_string(),
        source: WireError::Invalid {
            what: "pieces",
            reason: format!("piece {seq} of {count} is missing"),
        },
    }
}

/// The bytes an input record takes for quotas: the record and its pieces.
fn stored_size(v: &[u8]) -> u64 {
    v.len() as u64 + chunked_of(v).map_or(0, |c| c.2)
}

/// Fails with [`StoreError::Quota`] when `owner`'s inputs other than `name`, plus
/// `needed` bytes, exceed `quota`.
fn check_quota(
    t: &impl ReadableTable<&'static str, &'static [u8]>,
    name: &str,
    owner: &str,
    needed: u64,
    quota: u64,
) -> Result<(), StoreError> {
    if quota == u64::MAX {
        return Ok(());
    }
    // The owner's records: keys from "<owner>/" up to "<owner>0" ('0' follows '/').
    let (lo, hi) = (format!("{owner}/"), format!("{owner}0"));
    let mut used = 0u64;
    for entry in t.range(lo.as_str()..hi.as_str()).map_err(db)? {
        let (k, v) = entry.map_err(db)?;
        if k.value() != name {
            used += stored_size(v.value());
        }
    }
    if used.saturating_add(needed) > quota {
        return Err(StoreError::Quota {
            owner: owner.to_string(),
            used,
            needed,
            quota,
        });
    }
    Ok(())
}

fn created_at(v: &[u8]) -> Option<u64> {
    let mut r = R(v);
    r.str("client").ok()?;
    r.u64("created").ok()
}

fn decode_input(
    name: &str,
    v: &[u8],
    keys: &Keys,
    pieces: Option<Vec<u8>>,
) -> Result<StoredInput, StoreError> {
    let mut r = R(v);
    let parse = |r: &mut R<'_>| -> Result<StoredInput, WireError> {
        Ok(StoredInput {
            owner: r.str("owner")?,
            tag: r.u128("upload tag")?,
            readers: r.strs("readers")?,
            share: get_share(r, keys, pieces)?,
        })
    };
    parse(&mut r).map_err(|source| StoreError::Corrupt {
        key: name.to_string(),
        source,
    })
}

fn decode_output(
    name: &str,
    v: &[u8],
    keys: &Keys,
    pieces: Option<Vec<u8>>,
) -> Result<StoredOutput, StoreError> {
    let mut r = R(v);
    let parse = |r: &mut R<'_>| -> Result<StoredOutput, WireError> {
        Ok(StoredOutput {
            client: r.str("client")?,
            created: r.u64("created")?,
            share: get_share(r, keys, pieces)?,
        })
    };
    parse(&mut r).map_err(|source| StoreError::Corrupt {
        key: name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn grants_parse_and_scope() {
        use super::Grant;
        let g = Grant::parse("bob@stats:2").unwrap();
        assert!(g.allows("bob", "stats", "2"));
        assert!(!g.allows("bob", "stats", "3") && !g.allows("bob", "kmeans", "2"));
        assert!(!g.allows("carol", "stats", "2"));
        let any = Grant::parse("bob").unwrap();
        assert!(any.allows("bob", "kmeans", "9"));
        let prog = Grant::parse("bob@stats").unwrap();
        assert!(prog.allows("bob", "stats", "1") && !prog.allows("bob", "kmeans", "1"));
        for bad in ["", "@x", "bob@", "bob@stats:", "@"] {
            assert!(Grant::parse(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;
    use privpy_core::Config;

    fn share(v: &[f64]) -> Share {
        let a = ndarray::Array1::from(v.to_vec()).into_dyn();
        let [s, _] = privpy_core::share::share(&Config::fast(), &a.view()).unwrap();
        s
    }

    fn pieces(st: &Store) -> usize {
        let tx = st.db.begin_read().unwrap();
        let c = tx.open_table(CHUNKS).unwrap();
        c.iter().unwrap().count()
    }

    /// Uploads in parts of odd sizes read back bit-exact; a replacement deletes the
    /// old pieces; an abandoned upload, or one a crash interrupted (the store is
    /// reopened), leaves no piece and keeps the earlier input; quotas count pieces;
    /// output parts at unaligned offsets decrypt to the share.
    #[test]
    fn uploads_in_parts_commit_replace_abandon_and_fetch_in_parts() {
        let dir = std::env::temp_dir().join(format!("privpy-store-parts-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let v: Vec<f64> = (0..1000).map(|i| i as f64 * 0.25 - 60.0).collect();
        let whole = share(&v);
        let bytes = whole.to_bytes();
        let meta = |tag| StagedInput {
            owner: "alice".into(),
            tag,
            readers: vec!["bob@stats".into()],
            ring: RingKind::Z64,
            shape: vec![1000],
        };
        let st = Store::open(&dir).unwrap();
        let mut up = st.stage_input("alice/x", meta(7), u64::MAX).unwrap();
        for range in [0..5, 5..26, 26..4000, 4000..8000] {
            st.append_staged(&mut up, &bytes[range]).unwrap();
        }
        assert!(up.complete());
        // One byte too many is refused.
        assert!(matches!(
            st.append_staged(&mut up, &[0]),
            Err(StoreError::Staging { .. })
        ));
        st.commit_staged(up, u64::MAX).unwrap();
        let got = st.input("alice/x").unwrap().unwrap();
        assert_eq!(got.share.to_bytes(), bytes);
        assert_eq!(
            (got.tag, got.readers.clone()),
            (7, vec!["bob@stats".to_string()])
        );
        assert_eq!(pieces(&st), 4);
        // The same tag again is refused; another client may not stage the name.
        assert!(matches!(
            st.stage_input("alice/x", meta(7), u64::MAX),
            Err(StoreError::Staging { .. })
        ));
        let mut other = meta(8);
        other.owner = "bob".into();
        assert!(matches!(
            st.stage_input("alice/x", other, u64::MAX),
            Err(StoreError::NotOwner { .. })
        ));
        // Abandoned half-way: no piece stays, the input is unchanged.
        let mut up = st.stage_input("alice/x", meta(9), u64::MAX).unwrap();
        st.append_staged(&mut up, &bytes[..100]).unwrap();
        assert_eq!(pieces(&st), 5);
        st.abandon_staged(up);
        assert_eq!(pieces(&st), 4);
        assert_eq!(
            st.input("alice/x").unwrap().unwrap().share.to_bytes(),
            bytes
        );
        // Incomplete commits are refused and abandoned.
        let mut up = st.stage_input("alice/x", meta(10), u64::MAX).unwrap();
        st.append_staged(&mut up, &bytes[..8]).unwrap();
        assert!(matches!(
            st.commit_staged(up, u64::MAX),
            Err(StoreError::Staging { .. })
        ));
        assert_eq!(pieces(&st), 4);
        // A quota counts the pieces: a second input of the same size does not fit.
        let quota = bytes.len() as u64 + 600;
        assert!(matches!(
            st.stage_input("alice/y", meta(11), quota),
            Err(StoreError::Quota { .. })
        ));
        // A crash mid-upload: the next start deletes the pieces, the input stays.
        let mut up = st.stage_input("alice/x", meta(12), u64::MAX).unwrap();
        st.append_staged(&mut up, &bytes[..3000]).unwrap();
        // Make the uncommitted piece durable, as a later unrelated commit would.
        st.put_input(
            "alice/z",
            &StoredInput {
                owner: "alice".into(),
                tag: 1,
                readers: vec![],
                share: share(&[1.0]),
            },
        )
        .unwrap();
        drop(up);
        drop(st);
        let st = Store::open(&dir).unwrap();
        assert_eq!(pieces(&st), 4);
        assert_eq!(
            st.input("alice/x").unwrap().unwrap().share.to_bytes(),
            bytes
        );
        // Replacing by a whole upload deletes the pieces; deleting works as before.
        st.put_input(
            "alice/x",
            &StoredInput {
                owner: "alice".into(),
                tag: 13,
                readers: vec![],
                share: whole.clone(),
            },
        )
        .unwrap();
        assert_eq!(pieces(&st), 0);
        let mut up = st.stage_input("alice/w", meta(14), u64::MAX).unwrap();
        st.append_staged(&mut up, &bytes).unwrap();
        st.commit_staged(up, u64::MAX).unwrap();
        assert_eq!(pieces(&st), 1);
        assert!(st.delete_input("alice/w").unwrap());
        assert_eq!(pieces(&st), 0);
        // Outputs in parts, at unaligned offsets.
        st.put_outputs(5, &[("alice".into(), "o".into(), whole.clone())])
            .unwrap();
        let mut got = Vec::new();
        while got.len() < bytes.len() {
            let p = st
                .output_part(5, "alice", "o", got.len() as u64, 999)
                .unwrap()
                .unwrap();
            assert_eq!((p.total, p.shape.clone()), (8000, vec![1000]));
            got.extend_from_slice(&p.bytes);
        }
        assert_eq!(got, bytes);
        assert!(st.output_part(5, "bob", "o", 0, 10).unwrap().is_none());
        assert!(matches!(
            st.output_part(5, "alice", "o", 9000, 10),
            Err(StoreError::Staging { .. })
        ));
        // 8,000 bytes are stored in two pieces (4 KiB in tests), read whole too, and
        // deleted with the output, on release or on expiry.
        let out_pieces = |st: &Store| {
            let tx = st.db.begin_read().unwrap();
            tx.open_table(OUT_CHUNKS).unwrap().iter().unwrap().count()
        };
        assert_eq!(out_pieces(&st), 2);
        assert_eq!(
            st.output(5, "alice", "o").unwrap().unwrap().to_bytes(),
            bytes
        );
        assert!(st.release_output(5, "alice", "o").unwrap());
        assert_eq!(out_pieces(&st), 0);
        st.put_outputs(6, &[("alice".into(), "o".into(), whole.clone())])
            .unwrap();
        assert_eq!(out_pieces(&st), 2);
        st.sweep_before(u64::MAX).unwrap();
        assert_eq!(out_pieces(&st), 0);
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Group commit: 8 threads × 25 concurrent uploads, some of them refused (a name
    /// another client owns, a quota exceeded); every writer gets its own answer, and
    /// every accepted record is there, bit-exact, after the store is reopened.
    #[test]
    fn concurrent_uploads_share_commits_and_keep_their_own_answers() {
        let dir = std::env::temp_dir().join(format!("privpy-store-group-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let st = Store::open(&dir).unwrap();
        st.put_input(
            "mallory/taken",
            &StoredInput {
                owner: "mallory".into(),
                tag: 1,
                readers: vec![],
                share: share(&[1.0]),
            },
        )
        .unwrap();
        let one = share(&[0.5; 100]);
        let size = {
            let mut w = W(Vec::new());
            w.str("bob");
            w.u128(0);
            w.strs(&[]);
            put_share(&mut w, &one, (0, [0; 32]));
            w.0.len() as u64
        };
        type Written = (usize, usize, Vec<u8>, Result<(), StoreError>);
        let results: Vec<Written> = std::thread::scope(|sc| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (st, one) = (&st, &one);
                    sc.spawn(move || {
                        (0..25)
                            .map(|k| {
                                // Thread 0 writes under mallory's name; bob (thread 1)
                                // has room for 3 inputs only.
                                let (owner, name, quota) = match t {
                                    0 => {
                                        ("alice".to_string(), "mallory/taken".to_string(), u64::MAX)
                                    }
                                    1 => ("bob".to_string(), format!("bob/x{k}"), 3 * size),
                                    _ => (format!("c{t}"), format!("c{t}/x{k}"), u64::MAX),
                                };
                                let v: Vec<f64> =
                                    (0..100).map(|i| (t * 1000 + k * 10 + i) as f64).collect();
                                let input = StoredInput {
                                    owner,
                                    tag: (t * 100 + k) as u128,
                                    readers: vec![],
                                    share: if t == 1 { one.clone() } else { share(&v) },
                                };
                                let bytes = input.share.to_bytes();
                                (t, k, bytes, st.put_input_within(&name, &input, quota))
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        for (t, k, _, r) in &results {
            match t {
                0 => assert!(matches!(r, Err(StoreError::NotOwner { .. })), "{k}: {r:?}"),
                1 if *k < 3 => assert!(r.is_ok(), "bob {k}: {r:?}"),
                1 => assert!(matches!(r, Err(StoreError::Quota { .. })), "bob {k}: {r:?}"),
                _ => assert!(r.is_ok(), "{t}/{k}: {r:?}"),
            }
        }
        drop(st);
        let st = Store::open(&dir).unwrap();
        assert_eq!(st.input("mallory/taken").unwrap().unwrap().owner, "mallory");
        for (t, k, bytes, _) in results.iter().filter(|r| r.0 >= 2) {
            let got = st.input(&format!("c{t}/x{k}")).unwrap().unwrap();
            assert_eq!(got.tag, (t * 100 + k) as u128);
            assert_eq!(&got.share.to_bytes(), bytes, "c{t}/x{k}");
        }
        assert_eq!(st.input_names().unwrap().len(), 1 + 3 + 6 * 25);
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A store that was created and then lost, emptied or damaged refuses to open
    /// (no panic, no silent empty store); files and directory are private.
    #[test]
    fn damaged_missing_and_empty_stores_refuse_to_open() {
        let dir = std::env::temp_dir().join(format!("privpy-store-dmg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = share(&[1.0, 2.0]);
        let path = dir.join("shares.redb");
        {
            let st = Store::open(&dir).unwrap();
            let inp = StoredInput {
                owner: "alice".into(),
                tag: 1,
                readers: vec![],
                share: s.clone(),
            };
            for k in 0..50 {
                st.put_input(&format!("x{k}"), &inp).unwrap();
            }
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&dir), 0o700);
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.join("store.id")), 0o600);
            assert_eq!(mode(&dir.join("keys.bin")), 0o600);
        }
        let good = std::fs::read(&path).unwrap();
        // Empty.
        std::fs::write(&path, b"").unwrap();
        assert!(matches!(Store::open(&dir), Err(StoreError::Damaged { .. })));
        // Missing.
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(Store::open(&dir), Err(StoreError::Damaged { .. })));
        // Truncated to half.
        std::fs::write(&path, &good[..good.len() / 2]).unwrap();
        assert!(
            matches!(Store::open(&dir), Err(StoreError::Damaged { .. })),
            "a truncated store must not open"
        );
        // Garbage over the data pages.
        let mut bad = good.clone();
        for b in bad[good.len() / 3..].iter_mut() {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bad).unwrap();
        let _ = std::fs::remove_file(dir.join("store.repaired"));
        assert!(
            matches!(Store::open(&dir), Err(StoreError::Damaged { .. })),
            "a corrupt store must not open"
        );
        // The intact file opens again with every record.
        let _ = std::fs::remove_file(dir.join("store.repaired"));
        std::fs::write(&path, &good).unwrap();
        let st = Store::open(&dir).unwrap();
        assert_eq!(st.input_names().unwrap().len(), 50);
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn survives_reopen_and_enforces_owners() {
        let dir = std::env::temp_dir().join(format!("privpy-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = share(&[1.0, 2.0]);
        {
            let st = Store::open(&dir).unwrap();
            let inp = StoredInput {
                owner: "alice".into(),
                tag: 42,
                readers: vec!["bob".into()],
                share: s.clone(),
            };
            st.put_input("x", &inp).unwrap();
            let theft = StoredInput {
                owner: "mallory".into(),
                ..inp
            };
            assert!(matches!(
                st.put_input("x", &theft),
                Err(StoreError::NotOwner { .. })
            ));
            st.put_outputs(7, &[("alice".into(), "y".into(), s.clone())])
                .unwrap();
        }
        let st = Store::open(&dir).unwrap();
        let x = st.input("x").unwrap().unwrap();
        assert_eq!(x.owner, "alice");
        assert_eq!(x.tag, 42);
        assert!(x.usable_by("bob", "stats", "1") && !x.usable_by("carol", "stats", "1"));
        assert_eq!(x.share.to_bytes(), s.to_bytes());
        assert!(st.output(7, "bob", "y").unwrap().is_none());
        assert_eq!(
            st.output(7, "alice", "y").unwrap().unwrap().to_bytes(),
            s.to_bytes()
        );
        assert_eq!(
            st.outputs_for("alice").unwrap(),
            vec![(7, "y".to_string(), vec![2])]
        );
        assert!(st.outputs_for("bob").unwrap().is_empty());
        assert!(
            st.output(7, "alice", "y").unwrap().is_some(),
            "a fetch can be repeated until released"
        );
        assert!(!st.release_output(7, "bob", "y").unwrap());
        assert!(st.release_output(7, "alice", "y").unwrap());
        assert!(st.output(7, "alice", "y").unwrap().is_none(), "released");
        st.put_outputs(8, &[("alice".into(), "z".into(), s)])
            .unwrap();
        assert_eq!(st.sweep(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(st.output_count().unwrap(), 1);
        assert_eq!(st.sweep_before(now() + 1).unwrap(), 1, "expired");
        assert_eq!(st.output_count().unwrap(), 0);
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Shares are encrypted at rest under a key per record, kept in a file of its
    /// own: the plaintext share never appears in `shares.redb`, and deleting,
    /// replacing, releasing or expiring a record deletes its key, so what redb's
    /// copy-on-write pages keep of it is unreadable. A record whose key is gone is
    /// an error, never a wrong share; stray keys are removed at start-up.
    #[test]
    fn shares_are_encrypted_at_rest_and_shredded_when_deleted() {
        let dir = std::env::temp_dir().join(format!("privpy-store-shred-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let keys = |st: &Store| st.keys.all().len();
        let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        let values: Vec<f64> = (0..256).map(|k| k as f64 * 0.37 - 40.0).collect();
        let s = share(&values);
        let plain = s.to_bytes();
        let st = Store::open(&dir).unwrap();
        let input = |share: Share| StoredInput {
            owner: "alice".into(),
            tag: 7,
            readers: vec![],
            share,
        };
        st.put_input("alice/x", &input(s.clone())).unwrap();
        assert_eq!(keys(&st), 1);
        let file = std::fs::read(dir.join("shares.redb")).unwrap();
        assert!(
            !contains(&file, &plain[..32]),
            "the share is encrypted at rest"
        );
        assert_eq!(
            st.input("alice/x").unwrap().unwrap().share.to_bytes(),
            plain
        );
        // Replacing it shreds the old key; deleting shreds the new one.
        st.put_input("alice/x", &input(share(&values))).unwrap();
        assert_eq!(keys(&st), 1);
        assert!(st.delete_input("alice/x").unwrap());
        assert_eq!(keys(&st), 0, "a deleted input's key is gone");
        assert!(st.input("alice/x").unwrap().is_none());
        // A refused write leaves no key behind.
        st.put_input(
            "bob/y",
            &StoredInput {
                owner: "bob".into(),
                ..input(s.clone())
            },
        )
        .unwrap();
        assert!(matches!(
            st.put_input("bob/y", &input(s.clone())),
            Err(StoreError::NotOwner { .. })
        ));
        assert_eq!(keys(&st), 1);
        assert!(st.delete_input("bob/y").unwrap());
        // Outputs: released and expired ones lose their keys.
        let outs = vec![
            ("alice".to_string(), "a".to_string(), s.clone()),
            ("alice".to_string(), "b".to_string(), s.clone()),
        ];
        st.put_outputs(9, &outs).unwrap();
        assert_eq!(keys(&st), 2);
        assert_eq!(
            st.output(9, "alice", "a").unwrap().unwrap().to_bytes(),
            plain
        );
        assert!(st.release_output(9, "alice", "a").unwrap());
        assert_eq!(keys(&st), 1);
        assert_eq!(st.sweep_before(u64::MAX).unwrap(), 1);
        assert_eq!(keys(&st), 0, "expired outputs' keys are gone");
        // The shredded keys are gone from the key file itself.
        let ring = std::fs::read(dir.join("keys.bin")).unwrap();
        assert!(ring.iter().all(|&b| b == 0), "every slot zeroed");
        // A record whose key was lost is an error, not a wrong share.
        st.put_input("alice/z", &input(s.clone())).unwrap();
        for id in st.keys.all() {
            st.keys.shred(id);
        }
        assert!(matches!(
            st.input("alice/z"),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(st.delete_input("alice/z").unwrap());
        // A stray key (a crash between key and record) is removed at start-up.
        st.keys.create().unwrap();
        assert_eq!(keys(&st), 1);
        drop(st);
        let st = Store::open(&dir).unwrap();
        assert_eq!(keys(&st), 0);
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
