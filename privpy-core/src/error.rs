//! Error types.

use crate::transport::Role;

/// A value that cannot be encoded in the configured fixed-point format.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// The value is NaN.
    #[error("element {index:?} is NaN; privpy encodes finite real numbers only")]
    NaN {
        /// Position of the element (row-major multi-index).
        index: Vec<usize>,
    },
    /// The value is +inf or -inf.
    #[error("element {index:?} is infinite; privpy encodes finite real numbers only")]
    Infinite {
        /// Position of the element.
        index: Vec<usize>,
    },
    /// `|value|` is at or above the preset's bound.
    #[error(
        "element {index:?} = {value:e} is outside the configured range: |x| must be below {bound:e} \
         (choose a preset with a larger bound, or scale the data)"
    )]
    OutOfRange {
        /// Position of the element.
        index: Vec<usize>,
        /// The offending value.
        value: f64,
        /// The exclusive bound on `|x|`.
        bound: f64,
    },
}

impl EncodeError {
    /// The same error with its element's row counted from `rows` rows earlier (for
    /// an array given in blocks of rows).
    pub fn offset_rows(self, rows: usize) -> EncodeError {
        let shift = |mut index: Vec<usize>| {
            if let Some(r) = index.first_mut() {
                *r += rows;
            }
            index
        };
        match self {
            EncodeError::NaN { index } => EncodeError::NaN {
                index: shift(index),
            },
            EncodeError::Infinite { index } => EncodeError::Infinite {
                index: shift(index),
            },
            EncodeError::OutOfRange {
                index,
                value,
                bound,
            } => EncodeError::OutOfRange {
                index: shift(index),
                value,
                bound,
            },
        }
    }
}

/// Two shapes that cannot be combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    /// Broadcasting failed (NumPy rules).
    #[error("operands could not be broadcast together with shapes {left:?} and {right:?}")]
    Broadcast {
        /// Shape of the left operand.
        left: Vec<usize>,
        /// Shape of the right operand.
        right: Vec<usize>,
    },
    /// The inner dimensions of a matrix product differ.
    #[error("dot: shapes {left:?} and {right:?} are not aligned ({left_inner} != {right_inner})")]
    Dot {
        /// Shape of the left operand.
        left: Vec<usize>,
        /// Shape of the right operand.
        right: Vec<usize>,
        /// Contracted dimension of the left operand.
        left_inner: usize,
        /// Contracted dimension of the right operand.
        right_inner: usize,
    },
    /// `dot` is defined for 1-D and 2-D operands only.
    #[error("dot: operands must be 1-D or 2-D, got shapes {left:?} and {right:?}")]
    DotRank {
        /// Shape of the left operand.
        left: Vec<usize>,
        /// Shape of the right operand.
        right: Vec<usize>,
    },
    /// A reshape that changes the number of elements.
    #[error("cannot reshape an array of shape {from:?} ({from_len} elements) into shape {to:?}")]
    Reshape {
        /// Original shape.
        from: Vec<usize>,
        /// Number of elements of the original.
        from_len: usize,
        /// Requested shape.
        to: Vec<usize>,
    },
    /// An axis argument beyond the array's rank.
    #[error("axis {axis} is out of bounds for an array of dimension {ndim}")]
    Axis {
        /// The requested axis.
        axis: usize,
        /// The array's number of dimensions.
        ndim: usize,
    },
    /// A value of the wrong rank for the requested static type.
    #[error("expected an array of dimension {expected}, got shape {actual:?}")]
    Rank {
        /// The rank the caller asked for.
        expected: usize,
        /// The shape found.
        actual: Vec<usize>,
    },
}

/// Where in the program an operator failed: the file, line and column of the
/// expression in the user's code (operators carry `#[track_caller]`, and inside
/// `#[private]` functions the rewritten expressions keep the user's spans).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    file: &'static str,
    line: u32,
    column: u32,
}

impl Location {
    /// The caller's location (through every `#[track_caller]` function).
    #[track_caller]
    pub(crate) fn caller() -> Location {
        let l = std::panic::Location::caller();
        Location {
            file: l.file(),
            line: l.line(),
            column: l.column(),
        }
    }

    /// The source file, as the compiler names it.
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The line, from 1.
    pub fn line(&self) -> u32 {
        self.line
    }

    /// The column, from 1.
    pub fn column(&self) -> u32 {
        self.column
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Everything that can go wrong in privpy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A client value could not be encoded.
    #[error("input {name:?}: {source}")]
    Encode {
        /// The input's name.
        name: String,
        /// What was wrong with it.
        #[source]
        source: EncodeError,
    },
    /// A public constant used inside a program could not be encoded.
    #[error("public operand: {0}")]
    PublicOperand(#[source] EncodeError),
    /// Incompatible shapes.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// A program asked for an input nobody uploaded.
    #[error("no input named {name:?} has been uploaded")]
    UnknownInput {
        /// The name asked for.
        name: String,
    },
    /// An input name was uploaded twice.
    #[error("an input named {name:?} already exists (uploaded by {owner:?})")]
    DuplicateInput {
        /// The input's name.
        name: String,
        /// The client that uploaded it first.
        owner: String,
    },
    /// A client name nobody registered.
    #[error("unknown client {name:?}")]
    UnknownClient {
        /// The name used.
        name: String,
    },
    /// The program wrote two outputs with the same name for the same client.
    #[error("output {name:?} for client {client:?} was written twice")]
    DuplicateOutput {
        /// The client.
        client: String,
        /// The output's name.
        name: String,
    },
    /// A client asked for an output that does not exist or is not theirs.
    #[error("client {client:?} has no output named {name:?}")]
    NoSuchOutput {
        /// The client asking.
        client: String,
        /// The output's name.
        name: String,
    },
    /// Shares of two different rings or shapes were combined.
    #[error("shares do not match: {0}")]
    ShareMismatch(String),
    /// A peer stopped answering or disconnected.
    #[error("lost connection to {peer}: {reason}")]
    PeerLost {
        /// The peer that failed.
        peer: Role,
        /// What happened.
        reason: String,
    },
    /// A peer sent something the protocol does not allow here.
    #[error("protocol error from {peer}: {reason}")]
    Protocol {
        /// The peer that sent it.
        peer: Role,
        /// What was wrong.
        reason: String,
    },
    /// The program panicked on a server.
    #[error("the program panicked on {role}: {message}")]
    ProgramPanic {
        /// Where it panicked.
        role: Role,
        /// The panic message.
        message: String,
    },
    /// A number format that cannot work ([`crate::Config::new`]).
    #[error(
        "number format {ring:?} with {frac_bits} fractional bits and bound 2^{bound_log2}: {reason}"
    )]
    NumberFormat {
        /// The ring.
        ring: crate::RingKind,
        /// Fractional bits asked for.
        frac_bits: u32,
        /// `log2` of the bound asked for.
        bound_log2: u32,
        /// Which constraint fails.
        reason: &'static str,
    },
    /// The operating system's random generator failed (no secure way on).
    #[error("the operating system's random generator failed: {0}")]
    Randomness(String),
    /// A broken invariant inside privpy (a bug): please report it.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// An element index outside the array.
    #[error("{operation}: index {index:?} is out of bounds for shape {shape:?}")]
    IndexOutOfBounds {
        /// The method (`item`, `itemset`, `put`, `take`).
        operation: &'static str,
        /// The index (a multi-index, or the offending position).
        index: Vec<usize>,
        /// The array's shape.
        shape: Vec<usize>,
    },
    /// An operation that needs at least one element (or one array) got none.
    #[error("{operation}: empty input")]
    EmptyInput {
        /// The method (`mean`, `resize`, `concatenate`, `stack`, a reduction).
        operation: &'static str,
    },
    /// A method argument outside what the method accepts.
    #[error("{operation}: {reason}")]
    InvalidArgument {
        /// The method (`clip`, `compress`, `permuted_axes`, `max_pool2d`, `dot`, or a
        /// program's argument).
        operation: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Secrets of two different sessions (or clusters) combined in one operation.
    #[error("operands come from two different sessions")]
    MixedSessions,
    /// A server was given a share of another ring than the configuration's.
    #[error("input {name:?} is a share of {share:?}, the configuration uses {config:?}")]
    RingMismatch {
        /// The input.
        name: String,
        /// The share's ring (`None` for a cleartext value).
        share: Option<crate::RingKind>,
        /// The configured ring.
        config: crate::RingKind,
    },
    /// A primary server was given only the shape of an input.
    #[error("{role} needs its share of input {name:?}, not only the shape")]
    MissingShare {
        /// The server.
        role: Role,
        /// The input.
        name: String,
    },
    /// Holding `what` in memory would take more than the configuration's memory
    /// budget per server ([`crate::Config::memory_budget`]): use it as a
    /// [`crate::LargeArray`] (in smaller pieces), or raise the budget.
    #[error(
        "{what} would take {bytes} bytes of memory per server, over the memory budget of {budget} bytes: \
         use it as a LargeArray (Session::large_input), in smaller pieces, or raise Config::with_memory_budget"
    )]
    OverBudget {
        /// What would be held.
        what: String,
        /// Its share's size in bytes.
        bytes: u64,
        /// The budget in bytes.
        budget: u64,
    },
    /// A server could not read or write the files that hold a large array's share
    /// (a full disk, a missing or damaged file).
    #[error("storage: {what}: {reason}")]
    Storage {
        /// What was being read or written.
        what: String,
        /// The operating system's error.
        reason: String,
    },
    /// An operator failed inside the program (incompatible shapes, a public operand
    /// out of range, an index out of bounds, …): the error, and where.
    #[error("{location}: {source}")]
    Operator {
        /// The expression in the program that failed.
        location: Location,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// The error without the [`Error::Operator`] location around it.
    pub fn root(&self) -> &Error {
        match self {
            Error::Operator { source, .. } => source.root(),
            other => other,
        }
    }

    /// Where in the program the error was raised, when an operator raised it.
    pub fn location(&self) -> Option<Location> {
        match self {
            Error::Operator { location, .. } => Some(*location),
            _ => None,
        }
    }

    /// `self` with the location of the operator's caller, unless it is a transport
    /// error (which is about a peer, not about the program) or already located.
    #[track_caller]
    pub(crate) fn located(self) -> Error {
        match self {
            e @ (Error::PeerLost { .. } | Error::Protocol { .. } | Error::Operator { .. }) => e,
            e => Error::Operator {
                location: Location::caller(),
                source: Box::new(e),
            },
        }
    }
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
