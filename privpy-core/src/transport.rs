//! Moving byte batches between the four servers.
//!
//! Protocol code never touches sockets: it hands a [`Message`] to a [`Transport`] and
//! asks for the next message from a given peer. The in-process transport
//! ([`channel_mesh`]) connects four threads with channels; `privpy-net` provides the
//! TLS transport. Both carry the same messages, so the same engine runs over either.

use std::fmt;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// One of the four servers (paper §3): `S1`, `S2` hold shares; `Sa`, `Sb` assist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// First primary server.
    S1,
    /// Second primary server.
    S2,
    /// First assistant server (the garbler in comparisons).
    Sa,
    /// Second assistant server (the evaluator in comparisons).
    Sb,
}

impl Role {
    /// All four roles, in index order.
    pub const ALL: [Role; 4] = [Role::S1, Role::S2, Role::Sa, Role::Sb];

    /// Index 0..4 of the role.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether this role stores shares (`S1`, `S2`).
    pub fn is_primary(self) -> bool {
        matches!(self, Role::S1 | Role::S2)
    }

    /// The lowercase name used on the command line (`s1`, `s2`, `sa`, `sb`).
    pub fn name(self) -> &'static str {
        match self {
            Role::S1 => "s1",
            Role::S2 => "s2",
            Role::Sa => "sa",
            Role::Sb => "sb",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::S1 => "S1",
            Role::S2 => "S2",
            Role::Sa => "Sa",
            Role::Sb => "Sb",
        })
    }
}

/// One framed batch between two servers.
///
/// `op` is the sender's operation counter: the receiver checks that it matches its own,
/// which catches servers running different programs. `round` is the sender's logical
/// clock plus one (Lamport), so the longest chain of dependent messages, the protocol's
/// round count, is measured rather than declared.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// Operation counter of the sender when it sent this.
    pub op: u64,
    /// Logical round of this message.
    pub round: u64,
    /// The payload: ring elements, garbled-circuit material or masked bits.
    pub payload: Vec<u8>,
}

impl fmt::Debug for Message {
    /// Sizes only: payloads are shares and never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("op", &self.op)
            .field("round", &self.round)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// Why a transport could not deliver or receive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The peer's end is gone (its program stopped, its process died, the link broke).
    #[error("{peer} disconnected")]
    Disconnected {
        /// The peer.
        peer: Role,
    },
    /// Nothing arrived from the peer within the timeout.
    #[error("no message from {peer} within {timeout:?}")]
    Timeout {
        /// The peer.
        peer: Role,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// Nothing at all, not even a heartbeat, came from the peer for `silent`: its
    /// process is hung or its host unreachable (a peer that is only busy keeps
    /// sending heartbeats).
    #[error("{peer} is unresponsive: nothing from it, not even a heartbeat, for {silent:?}")]
    Unresponsive {
        /// The peer.
        peer: Role,
        /// How long it was silent.
        silent: Duration,
    },
    /// The peer sent bytes that are not a valid frame.
    #[error("malformed frame from {peer}: {reason}")]
    Malformed {
        /// The peer.
        peer: Role,
        /// What was wrong.
        reason: String,
    },
    /// The peer stopped its program and said why (for example, it lost another peer).
    #[error("{peer} stopped the program: {reason}")]
    Aborted {
        /// The peer that stopped.
        peer: Role,
        /// The reason it gave.
        reason: String,
        /// The server whose loss made it stop, if that is why (never `peer`).
        culprit: Option<Role>,
    },
}

impl TransportError {
    /// The server to blame: the peer itself, or for [`TransportError::Aborted`]
    /// the server whose loss made the peer stop (so that a hung server is named
    /// by every other server, not the one that noticed it first).
    pub fn peer(&self) -> Role {
        match self {
            TransportError::Aborted {
                culprit: Some(c), ..
            } => *c,
            TransportError::Disconnected { peer }
            | TransportError::Timeout { peer, .. }
            | TransportError::Unresponsive { peer, .. }
            | TransportError::Malformed { peer, .. }
            | TransportError::Aborted { peer, .. } => *peer,
        }
    }
}

/// A server's links to the three other servers.
///
/// Sending must not block on the receiver (queue it); receiving blocks until the next
/// message from that peer arrives, the peer is gone, or a timeout expires.
pub trait Transport: Send {
    /// Queues `msg` for `to`.
    ///
    /// # Errors
    /// [`TransportError::Disconnected`] when the link is gone.
    fn send(&mut self, to: Role, msg: Message) -> Result<(), TransportError>;
    /// The next message from `from`, in order.
    ///
    /// # Errors
    /// Disconnection, timeout or a malformed frame.
    fn recv(&mut self, from: Role) -> Result<Message, TransportError>;
}

/// An emulated network link: one-way delay and bandwidth, the same for every pair
/// of servers and each direction (this kernel has no `netem`).
///
/// A message of `b` bytes sent at `t` on a link that is free from `t0` occupies it
/// from `max(t, t0)` for `8·b / bits_per_sec`, and arrives `delay` after that: both
/// the serialization of back-to-back messages and the propagation delay are modeled.
/// [`channel_mesh_with`] applies it to the in-process transport; privpy-net's
/// `netem` proxy applies it to any TCP connection (the TLS deployment included).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinkProfile {
    /// One-way propagation delay.
    pub delay: Duration,
    /// Bandwidth in bits per second.
    pub bits_per_sec: f64,
}

impl LinkProfile {
    /// A LAN: 1 Gbit/s, 0.1 ms one way.
    pub fn lan() -> LinkProfile {
        LinkProfile {
            delay: Duration::from_micros(100),
            bits_per_sec: 1e9,
        }
    }

    /// A WAN: 100 Mbit/s, 20 ms one way.
    pub fn wan() -> LinkProfile {
        LinkProfile {
            delay: Duration::from_millis(20),
            bits_per_sec: 100e6,
        }
    }

    /// A profile by name: `"lan"`, `"wan"`; `"none"` or `"loopback"` for no emulation
    /// (`Ok(None)`).
    ///
    /// # Errors
    /// Any other name, with the accepted ones.
    pub fn named(name: &str) -> Result<Option<LinkProfile>, String> {
        match name {
            "lan" => Ok(Some(LinkProfile::lan())),
            "wan" => Ok(Some(LinkProfile::wan())),
            "none" | "loopback" | "" => Ok(None),
            other => Err(format!(
                "unknown network profile {other:?} (use \"lan\", \"wan\" or \"none\")"
            )),
        }
    }

    /// Time `bytes` occupy the link.
    pub fn transfer_time(&self, bytes: usize) -> Duration {
        Duration::from_secs_f64(8.0 * bytes as f64 / self.bits_per_sec)
    }
}

/// The sending side of an emulated link: when it is free again.
#[derive(Clone, Copy, Debug)]
pub struct LinkClock {
    profile: LinkProfile,
    free_at: Instant,
}

impl LinkClock {
    /// A link that is free now.
    pub fn new(profile: LinkProfile) -> LinkClock {
        LinkClock {
            profile,
            free_at: Instant::now(),
        }
    }

    /// Sends `bytes` now: when they arrive at the other end.
    pub fn send(&mut self, bytes: usize) -> Instant {
        let start = self.free_at.max(Instant::now());
        self.free_at = start + self.profile.transfer_time(bytes);
        self.free_at + self.profile.delay
    }
}

/// Sleeps until `at` (no-op when it has passed).
pub fn wait_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// Framing bytes counted per message on an emulated link, besides the payload.
const HEADER_BYTES: usize = 24;

/// A message and, on an emulated link, when it arrives.
type Stamped = (Option<Instant>, Message);

/// In-process transport: one channel per ordered pair of servers, optionally over
/// emulated links ([`LinkProfile`]).
pub struct ChannelTransport {
    me: Role,
    tx: [Option<Sender<Stamped>>; 4],
    rx: [Option<Receiver<Stamped>>; 4],
    links: [Option<LinkClock>; 4],
    timeout: Duration,
}

/// Four connected in-process transports, indexed by [`Role::index`].
///
/// `timeout` bounds every receive, so a silent peer becomes an error instead of a hang.
pub fn channel_mesh(timeout: Duration) -> [ChannelTransport; 4] {
    channel_mesh_with(timeout, None)
}

/// [`channel_mesh`] whose links impose `profile`'s delay and bandwidth.
pub fn channel_mesh_with(timeout: Duration, profile: Option<LinkProfile>) -> [ChannelTransport; 4] {
    let mut ends: [ChannelTransport; 4] = Role::ALL.map(|me| ChannelTransport {
        me,
        tx: [None, None, None, None],
        rx: [None, None, None, None],
        links: [(); 4].map(|_| profile.map(LinkClock::new)),
        timeout,
    });
    for a in 0..4 {
        for b in 0..4 {
            if a != b {
                let (t, r) = channel();
                ends[a].tx[b] = Some(t);
                ends[b].rx[a] = Some(r);
            }
        }
    }
    ends
}

impl Transport for ChannelTransport {
    fn send(&mut self, to: Role, msg: Message) -> Result<(), TransportError> {
        let arrives = self.links[to.index()]
            .as_mut()
            .map(|l| l.send(msg.payload.len() + HEADER_BYTES));
        let link = self.tx[to.index()].as_ref();
        match link {
            Some(tx) => tx
                .send((arrives, msg))
                .map_err(|_| TransportError::Disconnected { peer: to }),
            None => Err(TransportError::Disconnected { peer: to }),
        }
    }

    fn recv(&mut self, from: Role) -> Result<Message, TransportError> {
        let Some(rx) = self.rx[from.index()].as_ref() else {
            return Err(TransportError::Disconnected { peer: from });
        };
        let (arrives, msg) = rx.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => TransportError::Timeout {
                peer: from,
                timeout: self.timeout,
            },
            RecvTimeoutError::Disconnected => TransportError::Disconnected { peer: from },
        })?;
        if let Some(at) = arrives {
            wait_until(at);
        }
        Ok(msg)
    }
}

impl fmt::Debug for ChannelTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelTransport")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// What one server sent and received: bytes and messages per link, and rounds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommStats {
    /// Payload bytes sent to each server, indexed by [`Role::index`].
    pub bytes_sent: [u64; 4],
    /// Payload bytes received from each server.
    pub bytes_received: [u64; 4],
    /// Messages sent to each server.
    pub messages_sent: [u64; 4],
    /// The logical clock: the longest chain of dependent messages seen or sent.
    pub rounds: u64,
}

impl CommStats {
    /// Total payload bytes sent.
    pub fn total_bytes_sent(&self) -> u64 {
        self.bytes_sent.iter().sum()
    }

    /// Total messages sent.
    pub fn total_messages_sent(&self) -> u64 {
        self.messages_sent.iter().sum()
    }

    /// The change since an earlier snapshot of the same server.
    pub fn since(&self, earlier: &CommStats) -> CommStats {
        let d = |a: [u64; 4], b: [u64; 4]| std::array::from_fn(|k| a[k] - b[k]);
        CommStats {
            bytes_sent: d(self.bytes_sent, earlier.bytes_sent),
            bytes_received: d(self.bytes_received, earlier.bytes_received),
            messages_sent: d(self.messages_sent, earlier.messages_sent),
            rounds: self.rounds - earlier.rounds,
        }
    }
}

/// Communication statistics of all four servers after a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStats {
    /// Per server, indexed by [`Role::index`].
    pub servers: [CommStats; 4],
}

impl ClusterStats {
    /// Payload bytes sent by all servers together.
    pub fn total_bytes(&self) -> u64 {
        self.servers.iter().map(CommStats::total_bytes_sent).sum()
    }

    /// Messages sent by all servers together.
    pub fn total_messages(&self) -> u64 {
        self.servers
            .iter()
            .map(CommStats::total_messages_sent)
            .sum()
    }

    /// Communication rounds: the longest chain of dependent messages.
    pub fn rounds(&self) -> u64 {
        self.servers.iter().map(|s| s.rounds).max().unwrap_or(0)
    }

    /// Bytes sent from `from` to `to`.
    pub fn link_bytes(&self, from: Role, to: Role) -> u64 {
        self.servers[from.index()].bytes_sent[to.index()]
    }
}
