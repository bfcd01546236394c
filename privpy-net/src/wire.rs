//! Control messages: session set-up between servers, client requests and replies.
//!
//! They travel in control frames ([`crate::frame::TAG_CONTROL`]). The encoding is a
//! plain tagged binary format: integers little-endian, strings and byte strings with
//! a `u32` length, lists with a `u32` count. Decoding checks every length against
//! what is left and against fixed limits ([`MAX_STRING`], [`MAX_LIST`], [`MAX_DIMS`]),
//! so a malformed or hostile message is an error ([`WireError`]), never a panic or
//! an allocation its size did not pay for. The decoder is fuzzed with the frame
//! decoder and property-tested on arbitrary bytes.
//!
//! Share bytes travel only in [`Request::Upload`] and [`Reply::Share`]; `Debug` on
//! those prints their length, never their contents.

use privpy_core::transport::{CommStats, Role};
use privpy_core::{Comparison, Config, Network, RingKind};
use std::fmt;

/// Longest string accepted (names, versions, reasons).
pub const MAX_STRING: usize = 4096;
/// Most entries in a list.
pub const MAX_LIST: usize = 4096;
/// Most dimensions of a shape.
pub const MAX_DIMS: usize = 8;

/// A control message that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The message ended before a field.
    #[error("message truncated while reading {what}")]
    Truncated {
        /// The field being read.
        what: &'static str,
    },
    /// An unknown message or field tag.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// Which kind of tag.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// A length or count above its limit.
    #[error("{what} of {len} exceeds the limit of {max}")]
    TooLong {
        /// The field.
        what: &'static str,
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field with an invalid value.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Bytes left over after the message.
    #[error("{0} bytes after the end of the message")]
    Trailing(usize),
}

/// One parameter of a job: its name in the program, the stored inputs it is made of
/// (concatenated along the first axis), and the resulting shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Param {
    /// The name the program reads with `Session::input`.
    pub name: String,
    /// Stored input names, concatenated along axis 0 in this order.
    pub sources: Vec<String>,
    /// The shape of the concatenation.
    pub shape: Vec<usize>,
    /// The upload tag of each source, as `S1` holds it. `S2` (and both primaries
    /// again when they load the shares) compare these with their own: shares of one
    /// input from two different uploads never meet in a job.
    pub tags: Vec<u128>,
}

/// A secret input carried in a request, not stored: this server's share of one
/// input of a call ([`Request::Call`], [`Request::Infer`]), or of one output in
/// the reply ([`Reply::Called`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Inline {
    /// The parameter (or output) name.
    pub name: String,
    /// Ring of the share.
    pub ring: RingKind,
    /// Shape of the share.
    pub shape: Vec<usize>,
    /// The share's elements (see `Share::to_bytes`).
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Inline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inline")
            .field("name", &self.name)
            .field("ring", &self.ring)
            .field("shape", &self.shape)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// One client request served by a call job: its inline inputs fill `rows` rows of
/// the job's inline parameters (in the order of [`JobSpec::calls`]), and the same
/// rows of its outputs go back to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallEntry {
    /// The client that sent the request (to `S1` and `S2`).
    pub client: String,
    /// The request id the client drew and sent to both primaries.
    pub request: u64,
    /// Rows this request contributes.
    pub rows: usize,
}

/// How a job gets a prepared weight matrix ([`crate::registry::Job::prepared`]):
/// every server prepares it in the job and keeps its part under `key`, or every
/// server uses the part it kept from an earlier job (`reuse`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedUse {
    /// The parameter.
    pub param: String,
    /// What identifies the prepared matrix: program, version, parameter, the upload
    /// tags of its sources and its shape.
    pub key: String,
    /// Whether every server already keeps it.
    pub reuse: bool,
}

/// Why a server refused a request or a job. Callers match on this; the reason
/// string is for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalKind {
    /// The request is malformed or names something invalid (a bad name, an unknown
    /// program or argument, a wrong shape, another number format).
    Invalid,
    /// The client may not do this (another client's input or output).
    Denied,
    /// Nothing of that name is stored for this client (or it expired).
    NotFound,
    /// `S1` and `S2` hold shares of an input from different uploads (an upload
    /// reached only one of them, for example because a server crashed): upload the
    /// input again. No job runs on mismatched shares.
    Stale,
    /// The job started and failed (a lost or hung server; the reason names it).
    Failed,
    /// The server is at a limit (jobs, storage); try again later.
    Busy,
    /// The server's own storage failed.
    Storage,
    /// The upload would take the client past its storage quota (`quota_mib`):
    /// delete inputs it no longer needs, or ask the operator for more.
    Quota,
}

impl RefusalKind {
    fn code(self) -> u8 {
        match self {
            RefusalKind::Invalid => 1,
            RefusalKind::Denied => 2,
            RefusalKind::NotFound => 3,
            RefusalKind::Stale => 4,
            RefusalKind::Failed => 5,
            RefusalKind::Busy => 6,
            RefusalKind::Storage => 7,
            RefusalKind::Quota => 8,
        }
    }

    fn from_code(c: u8) -> Option<RefusalKind> {
        Some(match c {
            1 => RefusalKind::Invalid,
            2 => RefusalKind::Denied,
            3 => RefusalKind::NotFound,
            4 => RefusalKind::Stale,
            5 => RefusalKind::Failed,
            6 => RefusalKind::Busy,
            7 => RefusalKind::Storage,
            8 => RefusalKind::Quota,
            _ => return None,
        })
    }
}

/// A refusal: its kind and a reason for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What kind of refusal.
    pub kind: RefusalKind,
    /// Why, in words.
    pub reason: String,
    /// The server whose loss (death, silence, broken link) stopped the job, when
    /// that is why it failed: the one that went silent or away, not a server that
    /// stopped because of it.
    pub lost: Option<Role>,
}

impl Refusal {
    /// A refusal of `kind` because of `reason`.
    pub fn new(kind: RefusalKind, reason: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            reason: reason.into(),
            lost: None,
        }
    }

    /// This refusal, blaming the loss of `peer`.
    pub fn lost(self, peer: Option<Role>) -> Refusal {
        Refusal { lost: peer, ..self }
    }

    /// [`RefusalKind::Invalid`].
    pub fn invalid(reason: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::Invalid, reason)
    }

    /// [`RefusalKind::Failed`].
    pub fn failed(reason: impl Into<String>) -> Refusal {
        Refusal::new(RefusalKind::Failed, reason)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// What `S1` tells the other servers about a job when it opens their links.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSpec {
    /// Random job identifier, chosen by `S1`.
    pub id: u64,
    /// The registered program's name.
    pub program: String,
    /// Its version: every server must have the same.
    pub version: String,
    /// The number format of the cluster.
    pub config: Config,
    /// The client that asked for the run.
    pub client: String,
    /// The program's parameters.
    pub params: Vec<Param>,
    /// Public arguments (hyperparameters such as an iteration count), by name.
    pub args: Vec<(String, f64)>,
    /// For a call job: the requests whose inline inputs it computes on, in row
    /// order (one for [`Request::Call`], a dynamic batch for [`Request::Infer`]).
    /// Parameters with no sources are inline. Empty for a [`Request::Run`] job.
    pub calls: Vec<CallEntry>,
    /// The parameters the program takes prepared, and whether the servers reuse
    /// what they kept.
    pub prepared: Vec<PreparedUse>,
}

/// A client's request to `S1` or `S2`.
#[derive(Clone, PartialEq)]
pub enum Request {
    /// The cluster's configuration and programs, and who the server thinks you are.
    Info,
    /// Store this server's share of an input.
    Upload {
        /// The input's name (unique in the cluster).
        name: String,
        /// A random tag the client draws once per upload and sends to both `S1` and
        /// `S2`; every job checks that the two shares carry the same tag.
        tag: u128,
        /// Other clients allowed to use it in their jobs (the owner always can).
        readers: Vec<String>,
        /// Ring of the share.
        ring: RingKind,
        /// Shape of the share.
        shape: Vec<usize>,
        /// The share's elements (see `Share::to_bytes`).
        bytes: Vec<u8>,
    },
    /// Run a program (sent to `S1`).
    Run {
        /// Registered program name.
        program: String,
        /// Parameter name → stored inputs.
        bindings: Vec<(String, Vec<String>)>,
        /// Public arguments, by name.
        args: Vec<(String, f64)>,
    },
    /// This server's share of an output of a finished job. The share stays stored
    /// until [`Request::Release`] (or expiry), so a fetch interrupted by a failure
    /// can be repeated.
    Fetch {
        /// The job.
        job: u64,
        /// The output's name.
        name: String,
    },
    /// Delete this client's output share (after fetching it from both servers).
    Release {
        /// The job.
        job: u64,
        /// The output's name.
        name: String,
    },
    /// The outputs waiting for this client on this server.
    ListOutputs,
    /// Run a program on inputs carried in the request, not stored: sent to both
    /// `S1` (which runs the job) and `S2` with the same `request` id and each one's
    /// shares. Both reply with their shares of the caller's outputs
    /// ([`Reply::Called`]); nothing is stored.
    Call {
        /// A random id the client draws per call.
        request: u64,
        /// Registered program name.
        program: String,
        /// Parameter name → stored inputs, for the parameters not given inline.
        bindings: Vec<(String, Vec<String>)>,
        /// The inline inputs: this server's shares.
        inputs: Vec<Inline>,
        /// Public arguments, by name.
        args: Vec<(String, f64)>,
    },
    /// Run a deployed model on one input: like [`Request::Call`], but `S1` batches
    /// requests for the same model that arrive close together into one job, and
    /// each client receives only its own rows.
    Infer {
        /// A random id the client draws per request.
        request: u64,
        /// The deployed model's name (`[[models]]` in the cluster configuration).
        model: String,
        /// This server's share of the input rows.
        input: Inline,
    },
    /// Delete this client's input share `name` on this server.
    DeleteInput {
        /// The input's name (in the client's own namespace).
        name: String,
    },
    /// The next part of an upload in parts: an [`Request::Upload`] whose `bytes`
    /// hold fewer bytes than its shape starts one (the server answers
    /// [`Reply::PartReceived`]), and parts with its tag follow on the same
    /// connection, in order. Every part but the last holds at least
    /// [`crate::store::MIN_PART`] bytes. The last part's answer is
    /// [`Reply::Uploaded`], once the input is stored; closing the connection before
    /// then drops the upload.
    UploadPart {
        /// The upload's tag.
        tag: u128,
        /// The next bytes of the share.
        bytes: Vec<u8>,
    },
    /// Bytes from `offset` of this server's share of an output (a fetch in parts:
    /// the server answers [`Reply::SharePart`] with at most a server-chosen number
    /// of bytes).
    FetchPart {
        /// The job.
        job: u64,
        /// The output's name.
        name: String,
        /// Where to start, in bytes.
        offset: u64,
    },
}

/// A server's reply to a client.
#[derive(Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // one message at a time; boxing buys nothing
pub enum Reply {
    /// Answer to [`Request::Info`].
    Info {
        /// The server answering.
        role: Role,
        /// The cluster's number format.
        config: Config,
        /// The client name the server recognised from the certificate.
        client: String,
        /// Registered programs: name and version.
        programs: Vec<(String, String)>,
        /// The largest message this server takes from a client, in bytes: uploads
        /// larger than that travel in parts ([`Request::UploadPart`]).
        max_message: u64,
    },
    /// The upload is stored (durably).
    Uploaded,
    /// A job finished; its outputs for the asking client wait on `S1` and `S2`.
    RunDone {
        /// The job identifier to fetch outputs with.
        job: u64,
        /// Outputs written for the asking client: name and shape.
        outputs: Vec<(String, Vec<usize>)>,
        /// Communication of each server during the program, by role index.
        stats: [CommStats; 4],
    },
    /// This server's share of an output.
    Share {
        /// Ring of the share.
        ring: RingKind,
        /// Shape of the share.
        shape: Vec<usize>,
        /// The share's elements.
        bytes: Vec<u8>,
    },
    /// The output share is deleted (or was not there).
    Released,
    /// A part of an upload in parts is stored; `received` bytes so far.
    PartReceived {
        /// Bytes of the share received so far.
        received: u64,
    },
    /// Answer to [`Request::FetchPart`]: part of this server's share of an output.
    SharePart {
        /// Ring of the share.
        ring: RingKind,
        /// Shape of the share.
        shape: Vec<usize>,
        /// The share's length in bytes.
        total: u64,
        /// The share's bytes from the requested offset.
        bytes: Vec<u8>,
    },
    /// Answer to [`Request::ListOutputs`]: job, output name and shape.
    Outputs(Vec<(u64, String, Vec<usize>)>),
    /// Answer to [`Request::Call`] and [`Request::Infer`]: this server's shares of the
    /// caller's outputs (its own rows of a batch).
    Called {
        /// The job that computed them.
        job: u64,
        /// Requests in that job (1 unless batched).
        batch: u32,
        /// This server's shares of the outputs.
        outputs: Vec<Inline>,
        /// Communication of each server during the job, by role index (from `S1`;
        /// `S2` fills in its own only).
        stats: [CommStats; 4],
    },
    /// The request was refused or failed; the kind and reason say why.
    Refused(Refusal),
}

/// Every control message.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one message at a time; boxing buys nothing
pub enum Control {
    /// First frame on a server link: who connects and for which job.
    Hello {
        /// The connecting server.
        from: Role,
        /// The job.
        job: JobSpec,
    },
    /// The accepting server's answer to [`Control::Hello`]: `Err` with the reason
    /// when it refuses the job (unknown program, other version, missing input,
    /// shares from another upload).
    HelloAck(Result<(), Refusal>),
    /// Sent to `S1` by each other server when its part of the job is over.
    Finished(Result<CommStats, String>),
    /// Sent to every peer when a server's program stops with an error: why, and
    /// the server whose loss caused it, if that is the cause.
    Abort {
        /// The server that went silent or away (not the sender), if any.
        culprit: Option<Role>,
        /// Why, in words.
        reason: String,
    },
    /// Sent on every server link while a job runs, so that a peer busy with a long
    /// local step is told apart from a dead or hung one.
    Heartbeat,
    /// First frame on a new server link: the dialing server's role (its certificate
    /// must name it). Answered with [`Control::HelloAck`]; the link then carries the
    /// streams of many jobs ([`crate::mux`]), each opened by a [`Control::Hello`].
    Link {
        /// The dialing server.
        from: Role,
    },
    /// `S1` to `S2`, first and only frame of a stream of its own: `S1` refused or
    /// failed `client`'s call or inference `request`, so `S2` answers its half of
    /// the request with the same refusal instead of waiting for a job.
    Forget {
        /// The client.
        client: String,
        /// Its request id.
        request: u64,
        /// Why.
        refusal: Refusal,
    },
    /// Client to server.
    Request(Request),
    /// Server to client.
    Reply(Reply),
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Info => f.write_str("Info"),
            Request::Upload {
                name,
                tag,
                readers,
                ring,
                shape,
                bytes,
            } => f
                .debug_struct("Upload")
                .field("name", name)
                .field("tag", &format_args!("{tag:032x}"))
                .field("readers", readers)
                .field("ring", ring)
                .field("shape", shape)
                .field("bytes_len", &bytes.len())
                .finish(),
            Request::Run {
                program,
                bindings,
                args,
            } => f
                .debug_struct("Run")
                .field("program", program)
                .field("bindings", bindings)
                .field("args", args)
                .finish(),
            Request::Fetch { job, name } => f
                .debug_struct("Fetch")
                .field("job", job)
                .field("name", name)
                .finish(),
            Request::Release { job, name } => f
                .debug_struct("Release")
                .field("job", job)
                .field("name", name)
                .finish(),
            Request::ListOutputs => f.write_str("ListOutputs"),
            Request::UploadPart { tag: _, bytes } => f
                .debug_struct("UploadPart")
                .field("bytes_len", &bytes.len())
                .finish_non_exhaustive(),
            Request::FetchPart { job, name, offset } => f
                .debug_struct("FetchPart")
                .field("job", job)
                .field("name", name)
                .field("offset", offset)
                .finish(),
            Request::DeleteInput { name } => {
                f.debug_struct("DeleteInput").field("name", name).finish()
            }
            Request::Call {
                request,
                program,
                bindings,
                inputs,
                args,
            } => f
                .debug_struct("Call")
                .field("request", &format_args!("{request:016x}"))
                .field("program", program)
                .field("bindings", bindings)
                .field("inputs", inputs)
                .field("args", args)
                .finish(),
            Request::Infer {
                request,
                model,
                input,
            } => f
                .debug_struct("Infer")
                .field("request", &format_args!("{request:016x}"))
                .field("model", model)
                .field("input", input)
                .finish(),
        }
    }
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Info {
                role,
                config,
                client,
                programs,
                max_message,
            } => f
                .debug_struct("Info")
                .field("role", role)
                .field("config", config)
                .field("client", client)
                .field("programs", programs)
                .field("max_message", max_message)
                .finish(),
            Reply::Uploaded => f.write_str("Uploaded"),
            Reply::RunDone { job, outputs, .. } => f
                .debug_struct("RunDone")
                .field("job", job)
                .field("outputs", outputs)
                .finish_non_exhaustive(),
            Reply::Share { ring, shape, bytes } => f
                .debug_struct("Share")
                .field("ring", ring)
                .field("shape", shape)
                .field("bytes_len", &bytes.len())
                .finish(),
            Reply::Released => f.write_str("Released"),
            Reply::PartReceived { received } => f
                .debug_struct("PartReceived")
                .field("received", received)
                .finish(),
            Reply::SharePart {
                ring,
                shape,
                total,
                bytes,
            } => f
                .debug_struct("SharePart")
                .field("ring", ring)
                .field("shape", shape)
                .field("total", total)
                .field("bytes_len", &bytes.len())
                .finish(),
            Reply::Outputs(o) => f.debug_tuple("Outputs").field(o).finish(),
            Reply::Called {
                job,
                batch,
                outputs,
                ..
            } => f
                .debug_struct("Called")
                .field("job", job)
                .field("batch", batch)
                .field("outputs", outputs)
                .finish_non_exhaustive(),
            Reply::Refused(r) => f.debug_tuple("Refused").field(r).finish(),
        }
    }
}

// ---- encoding ----

pub(crate) struct W(pub(crate) Vec<u8>);

impl W {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u128(&mut self, v: u128) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn refusal(&mut self, r: &Refusal) {
        self.u8(r.kind.code());
        self.str(&r.reason);
        self.opt_role(r.lost);
    }
    pub(crate) fn opt_role(&mut self, r: Option<Role>) {
        match r {
            None => self.u8(0),
            Some(r) => self.u8(1 + r.index() as u8),
        }
    }
    pub(crate) fn len(&mut self, n: usize) {
        // Lengths come from values the encoder built; the frame limit caps them anyway.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    pub(crate) fn strs(&mut self, v: &[String]) {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }
    pub(crate) fn shape(&mut self, s: &[usize]) {
        self.len(s.len());
        for &d in s {
            self.u64(d as u64);
        }
    }
    pub(crate) fn role(&mut self, r: Role) {
        self.u8(r.index() as u8);
    }
    pub(crate) fn ring(&mut self, r: RingKind) {
        self.u8(match r {
            RingKind::Z64 => 0,
            RingKind::Z128 => 1,
            RingKind::Z256 => 2,
        });
    }
    pub(crate) fn config(&mut self, c: &Config) {
        self.ring(c.ring());
        self.u32(c.frac_bits());
        self.u32(c.bound_log2());
        self.u8(match c.comparison() {
            Comparison::GarbledCircuit => 1,
            Comparison::Auto => 2,
            _ => 0,
        });
        self.u8(match c.network() {
            Network::Lan => 1,
            Network::Wan => 2,
            _ => 0,
        });
        self.u64(c.memory_budget());
    }
    pub(crate) fn stats(&mut self, s: &CommStats) {
        for a in [&s.bytes_sent, &s.bytes_received, &s.messages_sent] {
            for &v in a {
                self.u64(v);
            }
        }
        self.u64(s.rounds);
    }
    pub(crate) fn inlines(&mut self, v: &[Inline]) {
        self.len(v.len());
        for i in v {
            self.str(&i.name);
            self.ring(i.ring);
            self.shape(&i.shape);
            self.bytes(&i.bytes);
        }
    }
    pub(crate) fn args(&mut self, args: &[(String, f64)]) {
        self.len(args.len());
        for (n, v) in args {
            self.str(n);
            self.u64(v.to_bits());
        }
    }
    pub(crate) fn result<T>(&mut self, r: &Result<T, String>, ok: impl FnOnce(&mut Self, &T)) {
        match r {
            Ok(v) => {
                self.u8(0);
                ok(self, v);
            }
            Err(e) => {
                self.u8(1);
                self.str(e);
            }
        }
    }
}

pub(crate) struct R<'a>(pub(crate) &'a [u8]);

impl<'a> R<'a> {
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.0.len() < n {
            return Err(WireError::Truncated { what });
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.take(1, what)?[0])
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    pub(crate) fn u128(&mut self, what: &'static str) -> Result<u128, WireError> {
        let b = self.take(16, what)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(b);
        Ok(u128::from_le_bytes(a))
    }
    pub(crate) fn refusal(&mut self) -> Result<Refusal, WireError> {
        let code = self.u8("refusal")?;
        let kind = RefusalKind::from_code(code).ok_or(WireError::UnknownTag {
            what: "refusal",
            tag: code,
        })?;
        Ok(Refusal {
            kind,
            reason: self.str("reason")?,
            lost: self.opt_role("lost server")?,
        })
    }
    pub(crate) fn opt_role(&mut self, what: &'static str) -> Result<Option<Role>, WireError> {
        match self.u8(what)? {
            0 => Ok(None),
            t @ 1..=4 => Ok(Some(Role::ALL[usize::from(t - 1)])),
            t => Err(WireError::UnknownTag { what, tag: t }),
        }
    }
    pub(crate) fn count(&mut self, what: &'static str, max: usize) -> Result<usize, WireError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(WireError::TooLong { what, len: n, max });
        }
        Ok(n)
    }
    pub(crate) fn bytes(&mut self, what: &'static str) -> Result<Vec<u8>, WireError> {
        let n = self.u32(what)? as usize;
        Ok(self.take(n, what)?.to_vec())
    }
    pub(crate) fn str(&mut self, what: &'static str) -> Result<String, WireError> {
        let n = self.count(what, MAX_STRING)?;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| WireError::Invalid {
            what,
            reason: "not UTF-8".into(),
        })
    }
    pub(crate) fn strs(&mut self, what: &'static str) -> Result<Vec<String>, WireError> {
        let n = self.count(what, MAX_LIST)?;
        (0..n).map(|_| self.str(what)).collect()
    }
    pub(crate) fn shape(&mut self) -> Result<Vec<usize>, WireError> {
        let n = self.count("shape", MAX_DIMS)?;
        let mut dims = Vec::with_capacity(n);
        let mut total: usize = 1;
        for _ in 0..n {
            let d = usize::try_from(self.u64("dimension")?).map_err(|_| WireError::Invalid {
                what: "shape",
                reason: "dimension does not fit in usize".into(),
            })?;
            total = total.checked_mul(d).ok_or_else(|| WireError::Invalid {
                what: "shape",
                reason: "element count overflows".into(),
            })?;
            dims.push(d);
        }
        Ok(dims)
    }
    pub(crate) fn role(&mut self) -> Result<Role, WireError> {
        let t = self.u8("role")?;
        Role::ALL
            .get(t as usize)
            .copied()
            .ok_or(WireError::UnknownTag {
                what: "role",
                tag: t,
            })
    }
    pub(crate) fn ring(&mut self) -> Result<RingKind, WireError> {
        match self.u8("ring")? {
            0 => Ok(RingKind::Z64),
            1 => Ok(RingKind::Z128),
            2 => Ok(RingKind::Z256),
            t => Err(WireError::UnknownTag {
                what: "ring",
                tag: t,
            }),
        }
    }
    pub(crate) fn config(&mut self) -> Result<Config, WireError> {
        let ring = self.ring()?;
        let f = self.u32("fractional bits")?;
        let b = self.u32("bound")?;
        let c = Config::new(ring, f, b).map_err(|e| WireError::Invalid {
            what: "configuration",
            reason: e.to_string(),
        })?;
        let c = match self.u8("comparison protocol")? {
            0 => c.with_comparison(Comparison::FourParty),
            1 => c.with_comparison(Comparison::GarbledCircuit),
            2 => c.with_comparison(Comparison::Auto),
            t => {
                return Err(WireError::UnknownTag {
                    what: "comparison protocol",
                    tag: t,
                });
            }
        };
        let c = match self.u8("network")? {
            0 => c.with_network(Network::Local),
            1 => c.with_network(Network::Lan),
            2 => c.with_network(Network::Wan),
            t => {
                return Err(WireError::UnknownTag {
                    what: "network",
                    tag: t,
                });
            }
        };
        Ok(c.with_memory_budget(self.u64("memory budget")?))
    }
    pub(crate) fn stats(&mut self) -> Result<CommStats, WireError> {
        let mut s = CommStats::default();
        for a in [
            &mut s.bytes_sent,
            &mut s.bytes_received,
            &mut s.messages_sent,
        ] {
            for v in a.iter_mut() {
                *v = self.u64("statistics")?;
            }
        }
        s.rounds = self.u64("statistics")?;
        Ok(s)
    }
    pub(crate) fn inlines(&mut self) -> Result<Vec<Inline>, WireError> {
        let n = self.count("inline inputs", MAX_LIST)?;
        let mut v = Vec::new();
        for _ in 0..n {
            v.push(Inline {
                name: self.str("input name")?,
                ring: self.ring()?,
                shape: self.shape()?,
                bytes: self.bytes("share")?,
            });
        }
        Ok(v)
    }
    pub(crate) fn args(&mut self) -> Result<Vec<(String, f64)>, WireError> {
        let n = self.count("arguments", MAX_LIST)?;
        let mut out = Vec::new();
        for _ in 0..n {
            let name = self.str("argument")?;
            let v = f64::from_bits(self.u64("argument value")?);
            if !v.is_finite() {
                return Err(WireError::Invalid {
                    what: "argument",
                    reason: format!("{name} is not a finite number"),
                });
            }
            out.push((name, v));
        }
        Ok(out)
    }
    pub(crate) fn result<T>(
        &mut self,
        ok: impl FnOnce(&mut Self) -> Result<T, WireError>,
    ) -> Result<Result<T, String>, WireError> {
        match self.u8("result")? {
            0 => Ok(Ok(ok(self)?)),
            1 => Ok(Err(self.str("reason")?)),
            t => Err(WireError::UnknownTag {
                what: "result",
                tag: t,
            }),
        }
    }
}

impl Control {
    /// The message's bytes (the body of a control frame).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = W(Vec::new());
        match self {
            Control::Hello { from, job } => {
                w.u8(1);
                w.role(*from);
                w.u64(job.id);
                w.str(&job.program);
                w.str(&job.version);
                w.config(&job.config);
                w.str(&job.client);
                w.len(job.params.len());
                for p in &job.params {
                    w.str(&p.name);
                    w.strs(&p.sources);
                    w.shape(&p.shape);
                    w.len(p.tags.len());
                    for &t in &p.tags {
                        w.u128(t);
                    }
                }
                w.args(&job.args);
                w.len(job.calls.len());
                for c in &job.calls {
                    w.str(&c.client);
                    w.u64(c.request);
                    w.len(c.rows);
                }
                w.len(job.prepared.len());
                for p in &job.prepared {
                    w.str(&p.param);
                    w.str(&p.key);
                    w.u8(u8::from(p.reuse));
                }
            }
            Control::HelloAck(r) => {
                w.u8(2);
                match r {
                    Ok(()) => w.u8(0),
                    Err(e) => {
                        w.u8(1);
                        w.refusal(e);
                    }
                }
            }
            Control::Finished(r) => {
                w.u8(3);
                w.result(r, |w, s| w.stats(s));
            }
            Control::Abort { culprit, reason } => {
                w.u8(4);
                w.str(reason);
                w.opt_role(*culprit);
            }
            Control::Heartbeat => w.u8(7),
            Control::Link { from } => {
                w.u8(8);
                w.role(*from);
            }
            Control::Forget {
                client,
                request,
                refusal,
            } => {
                w.u8(9);
                w.str(client);
                w.u64(*request);
                w.refusal(refusal);
            }
            Control::Request(req) => {
                w.u8(5);
                match req {
                    Request::Info => w.u8(1),
                    Request::Upload {
                        name,
                        tag,
                        readers,
                        ring,
                        shape,
                        bytes,
                    } => {
                        w.u8(2);
                        w.str(name);
                        w.u128(*tag);
                        w.strs(readers);
                        w.ring(*ring);
                        w.shape(shape);
                        w.bytes(bytes);
                    }
                    Request::Run {
                        program,
                        bindings,
                        args,
                    } => {
                        w.u8(3);
                        w.str(program);
                        w.len(bindings.len());
                        for (p, srcs) in bindings {
                            w.str(p);
                            w.strs(srcs);
                        }
                        w.args(args);
                    }
                    Request::Fetch { job, name } => {
                        w.u8(4);
                        w.u64(*job);
                        w.str(name);
                    }
                    Request::Release { job, name } => {
                        w.u8(5);
                        w.u64(*job);
                        w.str(name);
                    }
                    Request::ListOutputs => w.u8(6),
                    Request::UploadPart { tag, bytes } => {
                        w.u8(10);
                        w.u128(*tag);
                        w.bytes(bytes);
                    }
                    Request::FetchPart { job, name, offset } => {
                        w.u8(11);
                        w.u64(*job);
                        w.str(name);
                        w.u64(*offset);
                    }
                    Request::DeleteInput { name } => {
                        w.u8(7);
                        w.str(name);
                    }
                    Request::Call {
                        request,
                        program,
                        bindings,
                        inputs,
                        args,
                    } => {
                        w.u8(8);
                        w.u64(*request);
                        w.str(program);
                        w.len(bindings.len());
                        for (p, srcs) in bindings {
                            w.str(p);
                            w.strs(srcs);
                        }
                        w.inlines(inputs);
                        w.args(args);
                    }
                    Request::Infer {
                        request,
                        model,
                        input,
                    } => {
                        w.u8(9);
                        w.u64(*request);
                        w.str(model);
                        w.inlines(std::slice::from_ref(input));
                    }
                }
            }
            Control::Reply(rep) => {
                w.u8(6);
                match rep {
                    Reply::Info {
                        role,
                        config,
                        client,
                        programs,
                        max_message,
                    } => {
                        w.u8(1);
                        w.role(*role);
                        w.config(config);
                        w.str(client);
                        w.len(programs.len());
                        for (n, v) in programs {
                            w.str(n);
                            w.str(v);
                        }
                        w.u64(*max_message);
                    }
                    Reply::Uploaded => w.u8(2),
                    Reply::RunDone {
                        job,
                        outputs,
                        stats,
                    } => {
                        w.u8(3);
                        w.u64(*job);
                        w.len(outputs.len());
                        for (n, s) in outputs {
                            w.str(n);
                            w.shape(s);
                        }
                        for s in stats {
                            w.stats(s);
                        }
                    }
                    Reply::Share { ring, shape, bytes } => {
                        w.u8(4);
                        w.ring(*ring);
                        w.shape(shape);
                        w.bytes(bytes);
                    }
                    Reply::Refused(r) => {
                        w.u8(5);
                        w.refusal(r);
                    }
                    Reply::Released => w.u8(6),
                    Reply::PartReceived { received } => {
                        w.u8(9);
                        w.u64(*received);
                    }
                    Reply::SharePart {
                        ring,
                        shape,
                        total,
                        bytes,
                    } => {
                        w.u8(10);
                        w.ring(*ring);
                        w.shape(shape);
                        w.u64(*total);
                        w.bytes(bytes);
                    }
                    Reply::Outputs(list) => {
                        w.u8(7);
                        w.len(list.len());
                        for (job, name, shape) in list {
                            w.u64(*job);
                            w.str(name);
                            w.shape(shape);
                        }
                    }
                    Reply::Called {
                        job,
                        batch,
                        outputs,
                        stats,
                    } => {
                        w.u8(8);
                        w.u64(*job);
                        w.u32(*batch);
                        w.inlines(outputs);
                        for s in stats {
                            w.stats(s);
                        }
                    }
                }
            }
        }
        w.0
    }

    /// Parses a control message.
    ///
    /// # Errors
    /// Truncated, oversized, unknown-tag or invalid fields, or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Control, WireError> {
        let mut r = R(bytes);
        let msg = match r.u8("message")? {
            1 => {
                let from = r.role()?;
                let id = r.u64("job id")?;
                let program = r.str("program")?;
                let version = r.str("version")?;
                let config = r.config()?;
                let client = r.str("client")?;
                let n = r.count("parameters", MAX_LIST)?;
                let mut params = Vec::new();
                for _ in 0..n {
                    let name = r.str("parameter")?;
                    let sources = r.strs("sources")?;
                    let shape = r.shape()?;
                    let k = r.count("upload tags", MAX_LIST)?;
                    let tags = (0..k)
                        .map(|_| r.u128("upload tag"))
                        .collect::<Result<Vec<_>, _>>()?;
                    params.push(Param {
                        name,
                        sources,
                        shape,
                        tags,
                    });
                }
                let args = r.args()?;
                let n = r.count("calls", MAX_LIST)?;
                let mut calls = Vec::new();
                for _ in 0..n {
                    calls.push(CallEntry {
                        client: r.str("client")?,
                        request: r.u64("request id")?,
                        rows: r.count("rows", u32::MAX as usize)?,
                    });
                }
                let n = r.count("prepared parameters", MAX_LIST)?;
                let mut prepared = Vec::new();
                for _ in 0..n {
                    prepared.push(PreparedUse {
                        param: r.str("parameter")?,
                        key: r.str("prepared key")?,
                        reuse: match r.u8("reuse")? {
                            0 => false,
                            1 => true,
                            t => {
                                return Err(WireError::UnknownTag {
                                    what: "reuse",
                                    tag: t,
                                });
                            }
                        },
                    });
                }
                Control::Hello {
                    from,
                    job: JobSpec {
                        id,
                        program,
                        version,
                        config,
                        client,
                        params,
                        args,
                        calls,
                        prepared,
                    },
                }
            }
            2 => Control::HelloAck(match r.u8("result")? {
                0 => Ok(()),
                1 => Err(r.refusal()?),
                t => {
                    return Err(WireError::UnknownTag {
                        what: "result",
                        tag: t,
                    });
                }
            }),
            3 => Control::Finished(r.result(|r| r.stats())?),
            4 => Control::Abort {
                reason: r.str("reason")?,
                culprit: r.opt_role("culprit")?,
            },
            7 => Control::Heartbeat,
            8 => Control::Link { from: r.role()? },
            9 => Control::Forget {
                client: r.str("client")?,
                request: r.u64("request id")?,
                refusal: r.refusal()?,
            },
            5 => Control::Request(match r.u8("request")? {
                1 => Request::Info,
                2 => Request::Upload {
                    name: r.str("input name")?,
                    tag: r.u128("upload tag")?,
                    readers: r.strs("readers")?,
                    ring: r.ring()?,
                    shape: r.shape()?,
                    bytes: r.bytes("share")?,
                },
                3 => {
                    let program = r.str("program")?;
                    let n = r.count("bindings", MAX_LIST)?;
                    let mut bindings = Vec::new();
                    for _ in 0..n {
                        bindings.push((r.str("parameter")?, r.strs("sources")?));
                    }
                    let args = r.args()?;
                    Request::Run {
                        program,
                        bindings,
                        args,
                    }
                }
                4 => Request::Fetch {
                    job: r.u64("job id")?,
                    name: r.str("output name")?,
                },
                5 => Request::Release {
                    job: r.u64("job id")?,
                    name: r.str("output name")?,
                },
                6 => Request::ListOutputs,
                10 => Request::UploadPart {
                    tag: r.u128("upload tag")?,
                    bytes: r.bytes("share part")?,
                },
                11 => Request::FetchPart {
                    job: r.u64("job id")?,
                    name: r.str("output name")?,
                    offset: r.u64("offset")?,
                },
                7 => Request::DeleteInput {
                    name: r.str("input name")?,
                },
                8 => {
                    let request = r.u64("request id")?;
                    let program = r.str("program")?;
                    let n = r.count("bindings", MAX_LIST)?;
                    let mut bindings = Vec::new();
                    for _ in 0..n {
                        bindings.push((r.str("parameter")?, r.strs("sources")?));
                    }
                    let inputs = r.inlines()?;
                    let args = r.args()?;
                    Request::Call {
                        request,
                        program,
                        bindings,
                        inputs,
                        args,
                    }
                }
                9 => {
                    let request = r.u64("request id")?;
                    let model = r.str("model")?;
                    let mut inputs = r.inlines()?;
                    if inputs.len() != 1 {
                        return Err(WireError::Invalid {
                            what: "inference input",
                            reason: format!("{} inputs, not one", inputs.len()),
                        });
                    }
                    Request::Infer {
                        request,
                        model,
                        input: inputs.remove(0),
                    }
                }
                t => {
                    return Err(WireError::UnknownTag {
                        what: "request",
                        tag: t,
                    });
                }
            }),
            6 => Control::Reply(match r.u8("reply")? {
                1 => {
                    let role = r.role()?;
                    let config = r.config()?;
                    let client = r.str("client")?;
                    let n = r.count("programs", MAX_LIST)?;
                    let mut programs = Vec::new();
                    for _ in 0..n {
                        programs.push((r.str("program")?, r.str("version")?));
                    }
                    Reply::Info {
                        role,
                        config,
                        client,
                        programs,
                        max_message: r.u64("message limit")?,
                    }
                }
                2 => Reply::Uploaded,
                3 => {
                    let job = r.u64("job id")?;
                    let n = r.count("outputs", MAX_LIST)?;
                    let mut outputs = Vec::new();
                    for _ in 0..n {
                        outputs.push((r.str("output name")?, r.shape()?));
                    }
                    let mut stats: [CommStats; 4] = Default::default();
                    for s in &mut stats {
                        *s = r.stats()?;
                    }
                    Reply::RunDone {
                        job,
                        outputs,
                        stats,
                    }
                }
                4 => Reply::Share {
                    ring: r.ring()?,
                    shape: r.shape()?,
                    bytes: r.bytes("share")?,
                },
                5 => Reply::Refused(r.refusal()?),
                6 => Reply::Released,
                9 => Reply::PartReceived {
                    received: r.u64("bytes received")?,
                },
                10 => Reply::SharePart {
                    ring: r.ring()?,
                    shape: r.shape()?,
                    total: r.u64("share length")?,
                    bytes: r.bytes("share part")?,
                },
                7 => {
                    let n = r.count("outputs", MAX_LIST)?;
                    let mut list = Vec::new();
                    for _ in 0..n {
                        list.push((r.u64("job id")?, r.str("output name")?, r.shape()?));
                    }
                    Reply::Outputs(list)
                }
                8 => {
                    let job = r.u64("job id")?;
                    let batch = r.u32("batch size")?;
                    let outputs = r.inlines()?;
                    let mut stats: [CommStats; 4] = Default::default();
                    for s in &mut stats {
                        *s = r.stats()?;
                    }
                    Reply::Called {
                        job,
                        batch,
                        outputs,
                        stats,
                    }
                }
                t => {
                    return Err(WireError::UnknownTag {
                        what: "reply",
                        tag: t,
                    });
                }
            }),
            t => {
                return Err(WireError::UnknownTag {
                    what: "message",
                    tag: t,
                });
            }
        };
        if !r.0.is_empty() {
            return Err(WireError::Trailing(r.0.len()));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha12Rng;
    use rand_core::{Rng, SeedableRng};

    pub(crate) fn samples() -> Vec<Control> {
        let job = JobSpec {
            id: 0xdead_beef,
            program: "logistic_regression".into(),
            version: "1".into(),
            config: Config::default(),
            client: "alice".into(),
            params: vec![Param {
                name: "x".into(),
                sources: vec!["x_alice".into(), "x_bob".into()],
                shape: vec![20, 124],
                tags: vec![7, u128::MAX],
            }],
            args: vec![("iterations".into(), 20.0)],
            calls: vec![CallEntry {
                client: "bob".into(),
                request: 42,
                rows: 3,
            }],
            prepared: vec![PreparedUse {
                param: "w".into(),
                key: "p:1:w:07".into(),
                reuse: true,
            }],
        };
        let st = CommStats {
            bytes_sent: [1, 2, 3, 4],
            rounds: 9,
            ..Default::default()
        };
        vec![
            Control::Hello {
                from: Role::S2,
                job,
            },
            Control::HelloAck(Ok(())),
            Control::HelloAck(Err(Refusal::new(RefusalKind::Stale, "re-upload x"))),
            Control::Finished(Ok(st.clone())),
            Control::Finished(Err("disk full".into())),
            Control::Abort {
                culprit: None,
                reason: "disk full".into(),
            },
            Control::Abort {
                culprit: Some(Role::Sa),
                reason: "no frame from Sa".into(),
            },
            Control::Heartbeat,
            Control::Link { from: Role::Sa },
            Control::Forget {
                client: "alice".into(),
                request: 5,
                refusal: Refusal::invalid("no"),
            },
            Control::Reply(Reply::Refused(Refusal::failed("lost").lost(Some(Role::Sb)))),
            Control::Request(Request::Info),
            Control::Request(Request::Upload {
                name: "x".into(),
                tag: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
                readers: vec!["bob".into()],
                ring: RingKind::Z128,
                shape: vec![2, 3],
                bytes: vec![7; 96],
            }),
            Control::Request(Request::Run {
                program: "p".into(),
                bindings: vec![("x".into(), vec!["a".into(), "b".into()])],
                args: vec![("lr".into(), 0.5)],
            }),
            Control::Request(Request::Fetch {
                job: 5,
                name: "w".into(),
            }),
            Control::Request(Request::Release {
                job: 5,
                name: "w".into(),
            }),
            Control::Request(Request::ListOutputs),
            Control::Request(Request::DeleteInput { name: "x".into() }),
            Control::Reply(Reply::Info {
                role: Role::S1,
                config: Config::fast().with_comparison(Comparison::GarbledCircuit),
                client: "alice".into(),
                programs: vec![("p".into(), "2".into())],
                max_message: 1 << 20,
            }),
            Control::Reply(Reply::Info {
                role: Role::S2,
                config: Config::default().with_network(privpy_core::Network::Wan),
                client: "bob".into(),
                programs: vec![],
                max_message: 64 << 20,
            }),
            Control::Reply(Reply::Uploaded),
            Control::Reply(Reply::RunDone {
                job: 5,
                outputs: vec![("w".into(), vec![124])],
                stats: [st.clone(), st.clone(), st.clone(), st],
            }),
            Control::Reply(Reply::Share {
                ring: RingKind::Z64,
                shape: vec![],
                bytes: vec![1; 8],
            }),
            Control::Reply(Reply::Refused(Refusal::new(RefusalKind::Denied, "no"))),
            Control::Request(Request::UploadPart {
                tag: 7,
                bytes: vec![1, 2, 3],
            }),
            Control::Request(Request::FetchPart {
                job: 3,
                name: "z".into(),
                offset: 4096,
            }),
            Control::Reply(Reply::PartReceived { received: 4096 }),
            Control::Reply(Reply::SharePart {
                ring: RingKind::Z64,
                shape: vec![2],
                total: 16,
                bytes: vec![0; 8],
            }),
            Control::Reply(Reply::Released),
            Control::Reply(Reply::Outputs(vec![(5, "w".into(), vec![3, 4])])),
            Control::Request(Request::Call {
                request: 77,
                program: "p".into(),
                bindings: vec![("w".into(), vec!["owner/w".into()])],
                inputs: vec![Inline {
                    name: "x".into(),
                    ring: RingKind::Z64,
                    shape: vec![1, 2],
                    bytes: vec![3; 16],
                }],
                args: vec![("k".into(), 2.0)],
            }),
            Control::Request(Request::Infer {
                request: 78,
                model: "mlp".into(),
                input: Inline {
                    name: "images".into(),
                    ring: RingKind::Z128,
                    shape: vec![1, 1],
                    bytes: vec![4; 16],
                },
            }),
            Control::Reply(Reply::Called {
                job: 9,
                batch: 3,
                outputs: vec![Inline {
                    name: "digits".into(),
                    ring: RingKind::Z64,
                    shape: vec![1],
                    bytes: vec![5; 8],
                }],
                stats: Default::default(),
            }),
        ]
    }

    #[test]
    fn every_message_round_trips_and_every_prefix_is_an_error() {
        for m in samples() {
            let b = m.encode();
            assert_eq!(Control::decode(&b), Ok(m.clone()));
            for k in 0..b.len() {
                assert!(Control::decode(&b[..k]).is_err(), "{m:?} prefix {k}");
            }
            let mut long = b.clone();
            long.push(0);
            assert_eq!(Control::decode(&long), Err(WireError::Trailing(1)));
        }
    }

    #[test]
    fn limits_and_bad_values_are_refused() {
        // A string announced longer than the limit.
        let mut b = vec![4u8];
        b.extend_from_slice(&(MAX_STRING as u32 + 1).to_le_bytes());
        assert!(matches!(
            Control::decode(&b),
            Err(WireError::TooLong { .. })
        ));
        // A shape whose element count overflows.
        let mut b = vec![6u8, 4, 0];
        b.extend_from_slice(&2u32.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        b.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            Control::decode(&b),
            Err(WireError::Invalid { what: "shape", .. })
        ));
        assert!(matches!(
            Control::decode(&[99]),
            Err(WireError::UnknownTag { .. })
        ));
        // Found by cargo-fuzz: a configuration whose bound overflowed the check.
        assert!(Control::decode(&[6, 1, 1, 0, 0, 0, 0, 0, 0, 0, 2, 231, 0, 0]).is_err());
        let mut b = vec![6u8, 1, 0, 1];
        b.extend_from_slice(&32u32.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            Control::decode(&b),
            Err(WireError::Invalid {
                what: "configuration",
                ..
            })
        ));
        // Shares never appear in Debug output.
        let up = Request::Upload {
            name: "x".into(),
            tag: 1,
            readers: vec![],
            ring: RingKind::Z64,
            shape: vec![1],
            bytes: vec![0xAB; 8],
        };
        assert!(!format!("{up:?}").contains("171"));
    }

    /// Property: on arbitrary bytes, and on valid messages with bytes flipped, the
    /// decoder never panics, and whatever it accepts re-encodes to the same bytes.
    #[test]
    fn arbitrary_and_mutated_bytes_never_panic() {
        let mut rng = ChaCha12Rng::seed_from_u64(5);
        let valid: Vec<Vec<u8>> = samples().iter().map(Control::encode).collect();
        for case in 0..40_000 {
            let b = if case % 2 == 0 {
                let n = (rng.next_u32() % 120) as usize;
                let mut b = vec![0u8; n];
                rng.fill_bytes(&mut b);
                if n > 0 {
                    b[0] = 1 + (rng.next_u32() % 6) as u8;
                }
                b
            } else {
                let mut b = valid[case % valid.len()].clone();
                for _ in 0..1 + rng.next_u32() % 3 {
                    let k = rng.next_u32() as usize % b.len();
                    b[k] = rng.next_u32() as u8;
                }
                b
            };
            if let Ok(m) = Control::decode(&b) {
                assert_eq!(m.encode(), b);
            }
        }
    }
}
