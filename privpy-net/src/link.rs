//! Framed TLS connections, and the [`Transport`] the engine runs over.
//!
//! A [`Conn`] is one TLS connection with frame reading and writing, used while a
//! link is being set up and for client requests. Server links then become
//! long-lived [`crate::mux::Link`]s, whose reader and writer tasks carry the
//! streams of many jobs. [`NetTransport::new`] takes one job's three streams. The
//! program thread stays synchronous: `send` only queues, `recv` waits on the
//! stream's queue with the configured timeout.

use crate::frame::{Frame, FrameCodec, FrameError, LEN_BYTES};
use crate::mux::{Incoming, JobLink, Link, heartbeat_period};
use crate::wire::{Control, WireError};
use privpy_core::transport::{Message, Role, Transport, TransportError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;

/// The stream under a connection.
pub type Stream = TlsStream<TcpStream>;

/// Why reading from a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The peer closed the connection between frames.
    #[error("connection closed")]
    Closed,
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame (truncated frame)")]
    Truncated,
    /// A socket or TLS error.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A frame that cannot be decoded.
    #[error("bad frame: {0}")]
    Frame(#[from] FrameError),
    /// A control message that cannot be decoded.
    #[error("bad control message: {0}")]
    Wire(#[from] WireError),
    /// A protocol frame where a control message was expected.
    #[error("expected a control message, got a protocol message")]
    NotControl,
    /// Nothing arrived in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Reads one frame from `rd`, joining a message sent as continuation frames
/// ([`crate::frame::TAG_MORE`]) up to the codec's message limit. Pieces are read
/// straight into the message's buffer.
///
/// # Errors
/// [`ConnError`].
pub async fn read_frame<S: AsyncRead + Unpin>(
    rd: &mut S,
    codec: &FrameCodec,
) -> Result<Frame, ConnError> {
    use crate::frame::{FrameError, HEADER_BYTES, TAG_MORE};
    let mut joined: Option<(u64, u64)> = None;
    let mut payload: Vec<u8> = Vec::new();
    loop {
        let mut head = [0u8; LEN_BYTES + HEADER_BYTES];
        let mut got = 0;
        while got < head.len() {
            let n = rd.read(&mut head[got..]).await?;
            if n == 0 {
                return Err(if got == 0 && joined.is_none() {
                    ConnError::Closed
                } else {
                    ConnError::Truncated
                });
            }
            got += n;
            if got >= LEN_BYTES {
                // Refuse an oversized or undersized frame before reading its body.
                let mut p = [0u8; LEN_BYTES];
                p.copy_from_slice(&head[..LEN_BYTES]);
                codec.body_len(p)?;
            }
        }
        let mut p = [0u8; LEN_BYTES];
        p.copy_from_slice(&head[..LEN_BYTES]);
        let len = codec.body_len(p)?;
        let (tag, op, round) = crate::frame::peek_header(&head[LEN_BYTES..]);
        let piece = len - HEADER_BYTES;
        if payload.len() + piece > codec.max_message() {
            return Err(ConnError::Frame(FrameError::TooLarge {
                len: payload.len() + piece,
                max: codec.max_message(),
            }));
        }
        if let Some(first) = joined
            && first != (op, round)
        {
            return Err(ConnError::Frame(FrameError::Continuation));
        }
        // Grow with the bytes that actually arrive: an announced length alone does
        // not make the receiver allocate it.
        payload.reserve(piece.min(1 << 20));
        let got = (&mut *rd)
            .take(piece as u64)
            .read_to_end(&mut payload)
            .await?;
        if got < piece {
            return Err(ConnError::Truncated);
        }
        if tag == TAG_MORE {
            joined = Some((op, round));
            continue;
        }
        if joined.is_none() {
            // One frame: its own checks, its buffer reused.
            let mut body = Vec::with_capacity(HEADER_BYTES + payload.len());
            body.extend_from_slice(&head[LEN_BYTES..]);
            body.extend_from_slice(&payload);
            return Ok(codec.decode_body(body)?);
        }
        // The last piece: checked as a frame of its tag with an empty payload.
        return match codec.decode_body(head[LEN_BYTES..].to_vec())? {
            Frame::Message(mut m) => {
                m.payload = payload;
                Ok(Frame::Message(m))
            }
            Frame::Control(_) => Ok(Frame::Control(payload)),
            Frame::Stream(_) => Err(ConnError::Frame(FrameError::Continuation)),
        };
    }
}

pub(crate) async fn write_frame<S: AsyncWrite + Unpin>(
    wr: &mut S,
    codec: &FrameCodec,
    frame: &Frame,
) -> std::io::Result<()> {
    // Large payloads go out after their header, without a copy.
    let (tag, op, round, payload): (u8, u64, u64, &[u8]) = match frame {
        Frame::Message(m) => (crate::frame::TAG_MESSAGE, m.op, m.round, &m.payload),
        Frame::Control(b) => (crate::frame::TAG_CONTROL, 0, 0, b),
        Frame::Stream(id) => (crate::frame::TAG_STREAM, *id, 0, &[]),
    };
    if payload.len() > codec.max_message() {
        return Err(std::io::Error::other(crate::frame::FrameError::TooLarge {
            len: payload.len(),
            max: codec.max_message(),
        }));
    }
    // A payload over one piece goes as continuation frames, the last piece in a frame
    // of its own tag. Pieces of at most 1 MiB fit any receiver's frame limit.
    let piece = codec.max_piece().min(WRITE_PIECE);
    let mut rest = payload;
    while rest.len() > piece {
        let (now, later) = rest.split_at(piece);
        let head = codec
            .header(crate::frame::TAG_MORE, op, round, now.len())
            .map_err(std::io::Error::other)?;
        wr.write_all(&head).await?;
        wr.write_all(now).await?;
        rest = later;
    }
    let head = codec
        .header(tag, op, round, rest.len())
        .map_err(std::io::Error::other)?;
    if rest.len() <= SMALL_FRAME {
        // One TLS record and one system call for small frames (latency).
        let mut buf = Vec::with_capacity(head.len() + rest.len());
        buf.extend_from_slice(&head);
        buf.extend_from_slice(rest);
        return wr.write_all(&buf).await;
    }
    wr.write_all(&head).await?;
    wr.write_all(rest).await
}

/// The largest piece a writer puts in one frame: every configuration accepts it
/// (`max_frame_mib` is at least 1).
const WRITE_PIECE: usize = (1 << 20) - crate::frame::HEADER_BYTES;

/// Frames up to this payload size are written in one piece.
const SMALL_FRAME: usize = 16 * 1024;

/// A TLS connection that reads and writes frames.
pub struct Conn {
    stream: Stream,
    codec: FrameCodec,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").finish_non_exhaustive()
    }
}

impl Conn {
    /// Wraps an established TLS stream: frames of at most `max_frame` bytes, larger
    /// messages in continuation frames up to 64 times that.
    pub fn new(stream: Stream, max_frame: usize) -> Conn {
        Conn {
            stream,
            codec: FrameCodec::new(max_frame),
        }
    }

    /// The same connection accepting messages of at most `max_message` bytes in all
    /// (a client connection: the client's storage quota and a margin).
    pub fn with_max_message(self, max_message: usize) -> Conn {
        Conn {
            codec: self.codec.with_max_message(max_message),
            ..self
        }
    }

    /// The peer's certificate chain (verified during the handshake).
    pub fn peer_certificates(&self) -> Option<&[rustls::pki_types::CertificateDer<'static>]> {
        self.stream.get_ref().1.peer_certificates()
    }

    /// Sends a control message.
    ///
    /// # Errors
    /// A socket error, or a message larger than the frame limit.
    pub async fn send(&mut self, c: &Control) -> std::io::Result<()> {
        write_frame(&mut self.stream, &self.codec, &Frame::Control(c.encode())).await?;
        self.stream.flush().await
    }

    /// Receives the next control message, waiting at most `timeout`.
    ///
    /// # Errors
    /// [`ConnError`].
    pub async fn recv(&mut self, timeout: Duration) -> Result<Control, ConnError> {
        let frame = tokio::time::timeout(timeout, read_frame(&mut self.stream, &self.codec))
            .await
            .map_err(|_| ConnError::Timeout(timeout))??;
        match frame {
            Frame::Control(b) => Ok(Control::decode(&b)?),
            Frame::Message(_) | Frame::Stream(_) => Err(ConnError::NotControl),
        }
    }

    /// The connection's stream and codec (to hand it to a [`crate::mux::Link`]).
    pub fn into_parts(self) -> (Stream, FrameCodec) {
        (self.stream, self.codec)
    }

    /// Closes the connection politely (TLS close_notify), ignoring errors.
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// The underlying stream (for tests that write raw bytes).
    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }
}

/// A reader that records when bytes last arrived on its link.
pub(crate) struct Progress<R> {
    inner: R,
    link: Arc<Link>,
}

impl<R> Progress<R> {
    pub(crate) fn new(inner: R, link: &Arc<Link>) -> Self {
        Progress {
            inner,
            link: link.clone(),
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Progress<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.link.seen_now();
        }
        r
    }
}

struct LinkEnd {
    link: Arc<Link>,
    id: u64,
    rx: Mutex<JobLink>,
}

/// How much longer than the silence limit one protocol step may take while every
/// peer is alive (a long local step on a peer is not a failure).
pub const STEP_FACTOR: u32 = 20;

/// The links of one server to the other three during a job.
///
/// Cloning shares the streams: the engine owns one clone (as its [`Transport`]), the
/// job keeps another to exchange control messages after the program. The streams
/// close when the last clone is dropped; the links stay for the next job, and
/// frames already queued are still written.
///
/// **Liveness.** Every link carries a heartbeat every quarter of the silence limit
/// (`timeout`, at most 1 s), whether or not jobs run. A wait for a peer fails
/// with [`TransportError::Unresponsive`] as soon as no byte at all (not a heartbeat,
/// not part of a large frame) has come from that peer for `timeout`: a hung process
/// (SIGSTOP) or an unreachable host. A peer that is alive but busy with a long local step keeps
/// sending heartbeats, so a protocol message is awaited for up to
/// [`STEP_FACTOR`]` × timeout` before [`TransportError::Timeout`].
///
/// **Stopping.** [`NetTransport::with_limits`] adds a deadline for the whole job
/// and a cancellation flag (set when the requesting client disconnects); once
/// either trips, the next wait fails with [`TransportError::Aborted`] naming this
/// server and the reason, and the server tells its peers.
#[derive(Clone)]
pub struct NetTransport {
    me: Role,
    links: Arc<[Option<LinkEnd>; 4]>,
    timeout: Duration,
    rt: tokio::runtime::Handle,
    deadline: Option<Instant>,
    cancel: Option<Arc<AtomicBool>>,
}

impl std::fmt::Debug for NetTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetTransport")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

impl NetTransport {
    /// The transport of one job over its streams to the other three servers
    /// (`None` at this server's own index). `timeout` is the silence limit; `rt` is
    /// the runtime the links run on (the program thread waits on it).
    pub fn new(
        me: Role,
        streams: [Option<JobLink>; 4],
        timeout: Duration,
        rt: &tokio::runtime::Handle,
    ) -> NetTransport {
        let links = streams.map(|s| {
            s.map(|jl| LinkEnd {
                link: jl.link().clone(),
                id: jl.id(),
                rx: Mutex::new(jl),
            })
        });
        NetTransport {
            me,
            links: Arc::new(links),
            timeout,
            rt: rt.clone(),
            deadline: None,
            cancel: None,
        }
    }

    /// This transport, stopping the job at `deadline` or when `cancel` is set.
    pub fn with_limits(self, deadline: Instant, cancel: Option<Arc<AtomicBool>>) -> Self {
        NetTransport {
            deadline: Some(deadline),
            cancel,
            ..self
        }
    }

    /// Why the job must stop now, if it must.
    fn stopped(&self) -> Option<TransportError> {
        let why = if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            "the client that requested the job disconnected".to_string()
        } else if self.deadline.is_some_and(|d| Instant::now() >= d) {
            "the job's deadline (max_job_secs) passed".to_string()
        } else {
            return None;
        };
        Some(TransportError::Aborted {
            peer: self.me,
            reason: why,
            culprit: None,
        })
    }

    fn end(&self, peer: Role) -> Result<&LinkEnd, TransportError> {
        self.links[peer.index()]
            .as_ref()
            .ok_or(TransportError::Disconnected { peer })
    }

    /// The next frame from `peer`, waiting at most `timeout` while it is alive and
    /// failing as soon as its link has been silent (no heartbeat) for the silence limit.
    fn next(&self, peer: Role, timeout: Duration) -> Incoming {
        let end = self.end(peer)?;
        let mut rx = end
            .rx
            .lock()
            .map_err(|_| TransportError::Disconnected { peer })?;
        if let Some(x) = rx.try_next() {
            return x;
        }
        let deadline = Instant::now() + timeout;
        let slice = heartbeat_period(self.timeout);
        loop {
            if let Some(e) = self.stopped() {
                return Err(e);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(TransportError::Timeout { peer, timeout });
            }
            if let Some(x) = self.rt.block_on(rx.next(slice.min(deadline - now))) {
                return x;
            }
            let silent = end.link.silent_for();
            if silent >= self.timeout {
                return Err(TransportError::Unresponsive { peer, silent });
            }
        }
    }

    /// Queues a control message to `peer`.
    ///
    /// # Errors
    /// The link is gone.
    pub fn send_control(&self, peer: Role, c: &Control) -> Result<(), TransportError> {
        let end = self.end(peer)?;
        end.link.send_on(end.id, Frame::Control(c.encode()))
    }

    /// Tells every peer that this server stops, why, and which server's loss caused
    /// it (if that is the cause).
    pub fn abort_all(&self, reason: &str, culprit: Option<Role>) {
        for peer in Role::ALL {
            if peer != self.me {
                let abort = Control::Abort {
                    culprit: culprit.filter(|&c| c != peer && c != self.me),
                    reason: reason.to_string(),
                };
                let _ = self.send_control(peer, &abort);
            }
        }
    }

    /// The next control message from `peer` (protocol messages still queued are
    /// skipped), waiting at most `timeout`.
    ///
    /// # Errors
    /// Disconnection, timeout, or a malformed message.
    pub fn recv_control(&self, peer: Role, timeout: Duration) -> Result<Control, TransportError> {
        loop {
            match self.next(peer, timeout)? {
                Frame::Message(_) | Frame::Stream(_) => continue,
                Frame::Control(b) => {
                    return Control::decode(&b).map_err(|e| TransportError::Malformed {
                        peer,
                        reason: e.to_string(),
                    });
                }
            }
        }
    }
}

impl Transport for NetTransport {
    fn send(&mut self, to: Role, msg: Message) -> Result<(), TransportError> {
        let end = self.end(to)?;
        end.link.send_on(end.id, Frame::Message(msg))
    }

    fn recv(&mut self, from: Role) -> Result<Message, TransportError> {
        match self.next(from, self.timeout * STEP_FACTOR)? {
            Frame::Message(m) => Ok(m),
            Frame::Control(b) => Err(match Control::decode(&b) {
                Ok(Control::Abort { reason, culprit }) => TransportError::Aborted {
                    peer: from,
                    reason,
                    culprit,
                },
                Ok(other) => TransportError::Malformed {
                    peer: from,
                    reason: format!("unexpected control message during the program: {other:?}"),
                },
                Err(e) => TransportError::Malformed {
                    peer: from,
                    reason: e.to_string(),
                },
            }),
            Frame::Stream(_) => Err(TransportError::Malformed {
                peer: from,
                reason: "a stream switch reached a job".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameError;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// A message larger than the frame limit crosses as continuation frames and
    /// arrives whole; a control message too; past the message limit it is refused.
    #[test]
    fn large_messages_cross_in_continuation_frames() {
        rt().block_on(async {
            let codec = FrameCodec::new(1 << 20).with_max_message(8 << 20);
            let payload: Vec<u8> = (0..(3 << 20) + 17).map(|i| (i * 7 % 251) as u8).collect();
            let msg = Frame::Message(Message {
                op: 9,
                round: 2,
                payload: payload.clone(),
            });
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            let writer = async {
                write_frame(&mut a, &codec, &msg).await.unwrap();
                write_frame(&mut a, &codec, &Frame::Control(payload.clone()))
                    .await
                    .unwrap();
                write_frame(&mut a, &codec, &Frame::Control(vec![1, 2, 3]))
                    .await
                    .unwrap();
            };
            let reader = async {
                let f1 = read_frame(&mut b, &codec).await.unwrap();
                let f2 = read_frame(&mut b, &codec).await.unwrap();
                let f3 = read_frame(&mut b, &codec).await.unwrap();
                (f1, f2, f3)
            };
            let ((), (f1, f2, f3)) = tokio::join!(writer, reader);
            match f1 {
                Frame::Message(m) => {
                    assert_eq!((m.op, m.round), (9, 2));
                    assert_eq!(m.payload, payload);
                }
                other => panic!("{other:?}"),
            }
            assert!(matches!(f2, Frame::Control(b) if b == payload));
            assert!(matches!(f3, Frame::Control(b) if b == [1, 2, 3]));
            // Past the receiver's message limit: refused, not allocated.
            let small = FrameCodec::new(1 << 20).with_max_message(2 << 20);
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            let big = Frame::Control(payload.clone());
            let writer = tokio::spawn(async move {
                let _ = write_frame(&mut a, &codec, &big).await;
            });
            let r = read_frame(&mut b, &small).await;
            drop(b); // the writer's next write fails: it ends
            writer.await.unwrap();
            assert!(matches!(
                r,
                Err(ConnError::Frame(FrameError::TooLarge { .. }))
            ));
        });
    }

    /// A continuation frame followed by a frame of another message is refused.
    #[test]
    fn interleaved_continuations_are_refused() {
        rt().block_on(async {
            let codec = FrameCodec::new(1 << 20);
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&codec.header(crate::frame::TAG_MORE, 1, 1, 4).unwrap());
            bytes.extend_from_slice(&[0; 4]);
            codec
                .encode(
                    &Message {
                        op: 2,
                        round: 1,
                        payload: vec![5],
                    },
                    &mut bytes,
                )
                .unwrap();
            let mut rd = bytes.as_slice();
            let r = read_frame(&mut rd, &codec).await;
            assert!(matches!(r, Err(ConnError::Frame(FrameError::Continuation))));
        });
    }
}
