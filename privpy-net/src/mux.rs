//! Long-lived server links that carry many jobs at once.
//!
//! Each pair of servers keeps **one** mutually authenticated TLS connection for as
//! long as both run: the lower role dials the higher one when it first needs it, and
//! again only after the connection is lost or has gone silent. A job does not open
//! connections; it opens a [`JobLink`] (a stream, named by the job id) on each of
//! the server's three [`Link`]s. So there is no TLS handshake per job, and tiny jobs
//! cost a few frames instead of six handshakes.
//!
//! **Framing.** A link carries the frames of [`crate::frame`]. A stream switch
//! ([`Frame::Stream`], 21 bytes) says which job the frames after it belong to; the
//! writer emits one only when the job changes, and always writes a whole message
//! (every continuation piece) before the next, so pieces of messages of different
//! jobs never interleave.
//!
//! **Opening a stream.** The dialing (lower) side opens a stream with the job's
//! `Hello` as its first frame. On the accepting side, a frame on an unknown stream
//! starts a handler for it ([`Link::start`]'s `on_open`), which reads the `Hello`,
//! checks the job and answers on the same stream. Frames for a stream that was
//! closed here (its job ended or was refused) are dropped.
//!
//! **Liveness.** Each link sends a heartbeat a quarter of the silence limit apart
//! (at most 1 s), whether or not jobs run. A job's wait for a peer fails as soon as
//! nothing at all has come over the link for the silence limit; a dialer replaces a
//! link that is closed or silent for that long. When the connection breaks, every
//! stream on it receives [`TransportError::Disconnected`].
//!
//! **Security.** The link's peer is authenticated once, by its certificate, when the
//! link is set up (the role it claims must be the one its certificate names). Every
//! stream on the link therefore comes from that peer; a `Hello` naming another
//! sender is refused. Streams only separate jobs; they add nothing a peer can use to
//! read another job's frames, since every frame of a job travels between the same
//! two servers that run it.

use crate::frame::{Frame, FrameCodec};
use crate::link::{Conn, ConnError, read_frame, write_frame};
use crate::wire::Control;
use privpy_core::transport::{Role, TransportError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tracing::debug;

/// What a stream receives: a frame, or why the link failed.
pub type Incoming = Result<Frame, TransportError>;

/// Milliseconds since the first call in this process (a clock shared by all links).
pub(crate) fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let start = *EPOCH.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The heartbeat period for a silence limit: a quarter of it, between 20 ms and 1 s.
pub(crate) fn heartbeat_period(silence: Duration) -> Duration {
    (silence / 4).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

/// Called with each stream a peer opens on an accepted link.
pub type OnOpen = Box<dyn Fn(JobLink) + Send + Sync>;

/// One long-lived connection to a peer server, carrying the streams of many jobs.
pub struct Link {
    peer: Role,
    out: mpsc::UnboundedSender<(u64, Frame)>,
    streams: Mutex<HashMap<u64, mpsc::UnboundedSender<Incoming>>>,
    /// When anything last arrived ([`now_ms`]).
    last_seen: AtomicU64,
    closed: AtomicBool,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Starts the link's reader, writer and heartbeat tasks on the current tokio
    /// runtime over `conn`, an authenticated connection to `peer`. `silence` is the
    /// silence limit (heartbeats go at a quarter of it). On the accepting side,
    /// `on_open` receives every stream the peer opens; on the dialing side it is
    /// `None`, and frames on streams this side did not open are dropped.
    pub fn start(conn: Conn, peer: Role, silence: Duration, on_open: Option<OnOpen>) -> Arc<Link> {
        let (stream, codec) = conn.into_parts();
        let (rd, wr) = tokio::io::split(stream);
        let (out, out_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let link = Arc::new(Link {
            peer,
            out,
            streams: Mutex::new(HashMap::new()),
            last_seen: AtomicU64::new(now_ms()),
            closed: AtomicBool::new(false),
            stop,
        });
        tokio::spawn(reader(link.clone(), rd, codec, on_open, stop_rx.clone()));
        tokio::spawn(writer(wr, codec, out_rx, stop_rx.clone()));
        tokio::spawn(heartbeat(
            Arc::downgrade(&link),
            heartbeat_period(silence),
            stop_rx,
        ));
        link
    }

    /// The peer at the other end.
    pub fn peer(&self) -> Role {
        self.peer
    }

    /// Whether the link can carry a new job: not closed, and heard from within
    /// `silence`.
    pub fn usable(&self, silence: Duration) -> bool {
        !self.closed.load(Ordering::SeqCst) && self.silent_for() < silence
    }

    /// How long nothing has arrived over the link.
    pub fn silent_for(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.last_seen.load(Ordering::Relaxed)))
    }

    /// Closes the link: its tasks stop, the connection closes, and its streams
    /// receive [`TransportError::Disconnected`].
    pub fn close(&self) {
        let _ = self.stop.send(true);
        self.fail_all();
    }

    /// Whether the link is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Waits until the link is closed.
    pub async fn closed(&self) {
        let mut rx = self.stop.subscribe();
        while !*rx.borrow_and_update() && !self.is_closed() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Opens stream `id` on this link (the dialing side, or both sides of a link set
    /// up by hand). Frames the peer sends on it from now on are queued for it.
    ///
    /// # Errors
    /// [`TransportError::Disconnected`] when the link is closed.
    pub fn open(self: &Arc<Self>, id: u64) -> Result<JobLink, TransportError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut streams = lock(&self.streams);
        if self.is_closed() {
            return Err(TransportError::Disconnected { peer: self.peer });
        }
        streams.insert(id, tx);
        Ok(JobLink {
            id,
            link: self.clone(),
            rx,
        })
    }

    /// Queues frame `f` of stream `id`.
    pub(crate) fn send_on(&self, id: u64, f: Frame) -> Result<(), TransportError> {
        let peer = self.peer;
        if self.is_closed() {
            return Err(TransportError::Disconnected { peer });
        }
        self.out
            .send((id, f))
            .map_err(|_| TransportError::Disconnected { peer })
    }

    /// Records that bytes arrived just now.
    pub(crate) fn seen_now(&self) {
        self.last_seen.store(now_ms(), Ordering::Relaxed);
    }

    fn fail_all(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let peer = self.peer;
        for (_, tx) in lock(&self.streams).drain() {
            let _ = tx.send(Err(TransportError::Disconnected { peer }));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

async fn reader(
    link: Arc<Link>,
    rd: tokio::io::ReadHalf<crate::link::Stream>,
    codec: FrameCodec,
    on_open: Option<OnOpen>,
    mut stop: watch::Receiver<bool>,
) {
    let peer = link.peer;
    let beat = Control::Heartbeat.encode();
    // Buffered: a frame's header and a small payload come in one read of the TLS
    // stream.
    let mut rd =
        tokio::io::BufReader::with_capacity(1 << 16, crate::link::Progress::new(rd, &link));
    let mut current = 0u64;
    loop {
        let frame = tokio::select! {
            f = read_frame(&mut rd, &codec) => f,
            _ = stop.changed() => break,
        };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let err = match e {
                    ConnError::Closed => TransportError::Disconnected { peer },
                    ConnError::Io(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionReset
                                | std::io::ErrorKind::ConnectionAborted
                                | std::io::ErrorKind::BrokenPipe
                                | std::io::ErrorKind::UnexpectedEof
                        ) =>
                    {
                        TransportError::Disconnected { peer }
                    }
                    other => TransportError::Malformed {
                        peer,
                        reason: other.to_string(),
                    },
                };
                debug!(%peer, error = %err, "server link closed");
                link.closed.store(true, Ordering::SeqCst);
                for (_, tx) in lock(&link.streams).drain() {
                    let _ = tx.send(Err(err.clone()));
                }
                let _ = link.stop.send(true);
                return;
            }
        };
        match frame {
            Frame::Stream(id) => current = id,
            Frame::Control(b) if b == beat => {}
            f => {
                let mut streams = lock(&link.streams);
                if let Some(tx) = streams.get(&current) {
                    if tx.send(Ok(f)).is_err() {
                        streams.remove(&current);
                    }
                } else if let Some(open) = &on_open {
                    // A stream the peer opens: queue its first frame and hand it over.
                    let (tx, rx) = mpsc::unbounded_channel();
                    let _ = tx.send(Ok(f));
                    streams.insert(current, tx);
                    drop(streams);
                    open(JobLink {
                        id: current,
                        link: link.clone(),
                        rx,
                    });
                }
                // Otherwise: a frame for a stream closed here (its job is over).
            }
        }
    }
    link.fail_all();
}

async fn writer(
    wr: tokio::io::WriteHalf<crate::link::Stream>,
    codec: FrameCodec,
    mut out: mpsc::UnboundedReceiver<(u64, Frame)>,
    mut stop: watch::Receiver<bool>,
) {
    // Buffered: a stream switch and the small frames queued behind it leave in one
    // TLS record and one system call, at the flush when the queue runs empty.
    let mut wr = tokio::io::BufWriter::with_capacity(1 << 16, wr);
    let mut current = 0u64;
    loop {
        let next = tokio::select! {
            n = out.recv() => n,
            _ = stop.changed() => None,
        };
        let Some((id, frame)) = next else { break };
        if id != current {
            if write_frame(&mut wr, &codec, &Frame::Stream(id))
                .await
                .is_err()
            {
                return; // the reader reports the broken link
            }
            current = id;
        }
        if write_frame(&mut wr, &codec, &frame).await.is_err() {
            return;
        }
        // Flush when nothing else is queued: batches small frames.
        if out.is_empty() && wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn heartbeat(link: std::sync::Weak<Link>, period: Duration, mut stop: watch::Receiver<bool>) {
    let beat = Frame::Control(Control::Heartbeat.encode());
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let Some(link) = link.upgrade() else { return };
        if link.out.send((0, beat.clone())).is_err() {
            return;
        }
    }
}

/// One job's stream on a [`Link`]: frames to and from one peer for one job. The
/// stream closes here when this is dropped.
pub struct JobLink {
    id: u64,
    link: Arc<Link>,
    rx: mpsc::UnboundedReceiver<Incoming>,
}

impl std::fmt::Debug for JobLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobLink")
            .field("id", &self.id)
            .field("peer", &self.link.peer)
            .finish_non_exhaustive()
    }
}

impl JobLink {
    /// The peer at the other end.
    pub fn peer(&self) -> Role {
        self.link.peer
    }

    /// The stream's id (the job id).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The link the stream travels on.
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Queues a frame to the peer.
    ///
    /// # Errors
    /// [`TransportError::Disconnected`] when the link is closed.
    pub fn send_frame(&self, f: Frame) -> Result<(), TransportError> {
        self.link.send_on(self.id, f)
    }

    /// Queues a control message to the peer.
    ///
    /// # Errors
    /// As [`JobLink::send_frame`].
    pub fn send(&self, c: &Control) -> Result<(), TransportError> {
        self.send_frame(Frame::Control(c.encode()))
    }

    /// The next frame from the peer on this stream, waiting at most `timeout`
    /// (`None` when nothing came in time).
    pub async fn next(&mut self, timeout: Duration) -> Option<Incoming> {
        match tokio::time::timeout(timeout, self.rx.recv()).await {
            Ok(Some(x)) => Some(x),
            Ok(None) => Some(Err(TransportError::Disconnected {
                peer: self.link.peer,
            })),
            Err(_) => None,
        }
    }

    /// The next frame if one is queued, without waiting.
    pub(crate) fn try_next(&mut self) -> Option<Incoming> {
        match self.rx.try_recv() {
            Ok(x) => Some(x),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                Some(Err(TransportError::Disconnected {
                    peer: self.link.peer,
                }))
            }
        }
    }

    /// The next control message on this stream, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ConnError::Timeout`], a broken link ([`ConnError::Closed`]), a protocol frame
    /// ([`ConnError::NotControl`]) or an undecodable message.
    pub async fn recv(&mut self, timeout: Duration) -> Result<Control, ConnError> {
        match self.next(timeout).await {
            None => Err(ConnError::Timeout(timeout)),
            Some(Err(_)) => Err(ConnError::Closed),
            Some(Ok(Frame::Control(b))) => Ok(Control::decode(&b)?),
            Some(Ok(_)) => Err(ConnError::NotControl),
        }
    }
}

impl Drop for JobLink {
    fn drop(&mut self) {
        lock(&self.link.streams).remove(&self.id);
    }
}
