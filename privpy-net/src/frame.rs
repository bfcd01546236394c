//! Framing of server-to-server messages on a byte stream (sans-IO).
//!
//! A frame is a 4-byte little-endian length `n` followed by `n` bytes of body:
//! `tag (1 byte) | op (8 bytes LE) | round (8 bytes LE) | payload`. Tag 1 carries a
//! protocol [`Message`]; tag 2 a control message ([`crate::wire`]), with op and round
//! zero. The length is
//! capped by configuration; a short read is *incomplete* (wait for more bytes), never
//! an error; an oversized or malformed frame is an error that names what is wrong and
//! leaves the buffer untouched. The decoder is fuzzed (`privpy-net/fuzz`) and
//! property-tested on arbitrary byte strings.

use privpy_core::transport::Message;

/// The tag of a protocol message frame.
pub const TAG_MESSAGE: u8 = 1;

/// The tag of a control frame (session set-up, client requests and replies).
pub const TAG_CONTROL: u8 = 2;

/// Tag of a continuation frame: a piece of a message larger than the frame limit.
/// Its pieces travel as continuation frames with the message's op and round (0 and
/// 0 for a control message), and the last piece in a frame of the message's own tag;
/// the reader ([`crate::link::read_frame`]) joins them, up to the codec's
/// [`FrameCodec::max_message`].
pub const TAG_MORE: u8 = 3;

/// Tag of a stream switch on a multiplexed server link ([`crate::mux`]): the frames
/// that follow belong to the job whose id is the op field (round 0, no payload).
pub const TAG_STREAM: u8 = 4;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A protocol message between servers.
    Message(Message),
    /// The bytes of a control message, decoded by [`crate::wire::Control::decode`].
    Control(Vec<u8>),
    /// On a multiplexed link: the frames that follow belong to this stream (job id).
    Stream(u64),
}

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

/// Bytes of the body header (tag, op, round).
pub const HEADER_BYTES: usize = 17;

/// A frame that cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The announced body is larger than the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Announced body length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The body is shorter than its fixed header.
    #[error("frame of {len} bytes is shorter than the {HEADER_BYTES}-byte header")]
    TooShort {
        /// Announced body length.
        len: usize,
    },
    /// An unknown frame tag.
    #[error("unknown frame tag {tag}")]
    UnknownTag {
        /// The tag found.
        tag: u8,
    },
    /// A continuation frame ([`TAG_MORE`]) followed by a frame of another message.
    #[error("a continuation frame is not followed by the rest of its message")]
    Continuation,
    /// A stream switch ([`TAG_STREAM`]) with a round or a payload.
    #[error("stream frame with round {round} and {len} payload bytes (both must be 0)")]
    StreamHeader {
        /// The round field found.
        round: u64,
        /// The payload length found.
        len: usize,
    },
    /// A control frame whose op and round fields are not zero.
    #[error("control frame with op {op} and round {round} (both must be 0)")]
    ControlHeader {
        /// The op field found.
        op: u64,
        /// The round field found.
        round: u64,
    },
}

/// Encodes and decodes frames with a body size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_body: usize,
    max_message: usize,
}

impl FrameCodec {
    /// A codec accepting bodies of at most `max_body` bytes (header included), and
    /// messages split into continuation frames up to 64 times that.
    pub fn new(max_body: usize) -> Self {
        let max_body = max_body.max(HEADER_BYTES + 1);
        FrameCodec {
            max_body,
            max_message: max_body.saturating_mul(64),
        }
    }

    /// The same codec joining continuation frames into messages of at most
    /// `max_message` payload bytes.
    pub fn with_max_message(self, max_message: usize) -> Self {
        FrameCodec {
            max_message,
            ..self
        }
    }

    /// The body size limit.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// The largest payload of a message carried by continuation frames.
    pub fn max_message(&self) -> usize {
        self.max_message
    }

    /// The largest payload of one frame.
    pub fn max_piece(&self) -> usize {
        self.max_body - HEADER_BYTES
    }

    /// Appends the frame of `msg` to `out`.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] when the body would exceed the limit (nothing is written).
    pub fn encode(&self, msg: &Message, out: &mut Vec<u8>) -> Result<(), FrameError> {
        self.encode_parts(TAG_MESSAGE, msg.op, msg.round, &msg.payload, out)
    }

    /// Appends a control frame carrying `body` to `out`.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] when the body would exceed the limit (nothing is written).
    pub fn encode_control(&self, body: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
        self.encode_parts(TAG_CONTROL, 0, 0, body, out)
    }

    /// Appends any decoded frame again.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] as [`FrameCodec::encode`].
    pub fn encode_frame(&self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
        match frame {
            Frame::Message(m) => self.encode(m, out),
            Frame::Control(b) => self.encode_control(b, out),
            Frame::Stream(id) => self.encode_parts(TAG_STREAM, *id, 0, &[], out),
        }
    }

    fn encode_parts(
        &self,
        tag: u8,
        op: u64,
        round: u64,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), FrameError> {
        let head = self.header(tag, op, round, payload.len())?;
        out.reserve(head.len() + payload.len());
        out.extend_from_slice(&head);
        out.extend_from_slice(payload);
        Ok(())
    }

    /// The length prefix and header of a frame whose payload has `payload_len` bytes
    /// (a writer sends them, then the payload, without copying it).
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] when the body would exceed the limit.
    pub fn header(
        &self,
        tag: u8,
        op: u64,
        round: u64,
        payload_len: usize,
    ) -> Result<[u8; LEN_BYTES + HEADER_BYTES], FrameError> {
        let len = HEADER_BYTES + payload_len;
        let len32 = u32::try_from(len)
            .ok()
            .filter(|_| len <= self.max_body)
            .ok_or(FrameError::TooLarge {
                len,
                max: self.max_body,
            })?;
        let mut h = [0u8; LEN_BYTES + HEADER_BYTES];
        h[..4].copy_from_slice(&len32.to_le_bytes());
        h[4] = tag;
        h[5..13].copy_from_slice(&op.to_le_bytes());
        h[13..21].copy_from_slice(&round.to_le_bytes());
        Ok(h)
    }

    /// Decodes the first frame of `buf`: `Ok(Some((message, bytes consumed)))`, or
    /// `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// An oversized, truncated-header or unknown-tag frame; the caller should close the
    /// connection, since the stream cannot be resynchronized.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(&[a, b, c, d]) = buf.get(..LEN_BYTES) else {
            return Ok(None);
        };
        let len = self.body_len([a, b, c, d])?;
        let Some(body) = buf.get(LEN_BYTES..LEN_BYTES + len) else {
            return Ok(None);
        };
        let frame = self.decode_body(body.to_vec())?;
        Ok(Some((frame, LEN_BYTES + len)))
    }
}

/// The tag, op and round of a frame body already checked to hold its header.
pub(crate) fn peek_header(body: &[u8]) -> (u8, u64, u64) {
    let u64_at = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(b)
    };
    (body[0], u64_at(1), u64_at(9))
}

impl FrameCodec {
    /// Decodes a frame body (everything after the length prefix), reusing its buffer
    /// for the payload: what a socket reader calls after reading exactly the
    /// announced number of bytes.
    ///
    /// # Errors
    /// As [`FrameCodec::decode`].
    pub fn decode_body(&self, mut body: Vec<u8>) -> Result<Frame, FrameError> {
        self.check_len(body.len())?;
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let (tag, op, round) = (body[0], u64_at(1), u64_at(9));
        if tag == TAG_CONTROL && (op != 0 || round != 0) {
            return Err(FrameError::ControlHeader { op, round });
        }
        if tag == TAG_STREAM {
            let len = body.len() - HEADER_BYTES;
            if round != 0 || len != 0 {
                return Err(FrameError::StreamHeader { round, len });
            }
            return Ok(Frame::Stream(op));
        }
        if tag != TAG_MESSAGE && tag != TAG_CONTROL {
            return Err(FrameError::UnknownTag { tag });
        }
        body.drain(..HEADER_BYTES);
        Ok(if tag == TAG_MESSAGE {
            Frame::Message(Message {
                op,
                round,
                payload: body,
            })
        } else {
            Frame::Control(body)
        })
    }

    /// The body length announced by a 4-byte prefix, checked against the limits.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] or [`FrameError::TooShort`].
    pub fn body_len(&self, prefix: [u8; LEN_BYTES]) -> Result<usize, FrameError> {
        self.check_len(u32::from_le_bytes(prefix) as usize)
    }

    pub(crate) fn check_len(&self, len: usize) -> Result<usize, FrameError> {
        if len > self.max_body {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_body,
            });
        }
        if len < HEADER_BYTES {
            return Err(FrameError::TooShort { len });
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha12Rng;
    use rand_core::{Rng, SeedableRng};

    fn msg(op: u64, round: u64, n: usize) -> Message {
        Message {
            op,
            round,
            payload: (0..n).map(|k| (k * 7 + op as usize) as u8).collect(),
        }
    }

    #[test]
    fn round_trip_and_incomplete_prefixes() {
        let c = FrameCodec::new(1 << 20);
        let m = msg(3, 5, 100);
        let mut buf = Vec::new();
        c.encode(&m, &mut buf).unwrap();
        assert_eq!(buf.len(), LEN_BYTES + HEADER_BYTES + 100);
        // Every proper prefix is incomplete, not an error.
        for k in 0..buf.len() {
            assert_eq!(c.decode(&buf[..k]), Ok(None), "prefix of {k} bytes");
        }
        assert_eq!(c.decode(&buf), Ok(Some((Frame::Message(m), buf.len()))));
        let mut ctl = Vec::new();
        c.encode_control(b"hello", &mut ctl).unwrap();
        assert_eq!(
            c.decode(&ctl),
            Ok(Some((Frame::Control(b"hello".to_vec()), ctl.len())))
        );
        ctl[6] = 1; // op byte of a control frame
        assert!(matches!(
            c.decode(&ctl),
            Err(FrameError::ControlHeader { .. })
        ));
    }

    #[test]
    fn oversized_short_and_garbage_frames_are_errors() {
        let c = FrameCodec::new(64);
        assert_eq!(
            c.encode(&msg(0, 0, 100), &mut Vec::new()),
            Err(FrameError::TooLarge { len: 117, max: 64 })
        );
        assert_eq!(
            c.decode(&1000u32.to_le_bytes()),
            Err(FrameError::TooLarge { len: 1000, max: 64 })
        );
        assert_eq!(
            c.decode(&3u32.to_le_bytes()),
            Err(FrameError::TooShort { len: 3 })
        );
        let mut bad = Vec::new();
        c.encode(&msg(1, 1, 2), &mut bad).unwrap();
        bad[4] = 9;
        assert_eq!(c.decode(&bad), Err(FrameError::UnknownTag { tag: 9 }));
        assert!(
            FrameError::TooLarge { len: 1000, max: 64 }
                .to_string()
                .contains("limit of 64")
        );
    }

    /// Property: on arbitrary bytes the decoder never panics, never consumes more than
    /// it was given, and a decoded frame re-encodes to exactly the bytes consumed.
    #[test]
    fn arbitrary_bytes_never_panic_and_decoded_frames_reencode() {
        let c = FrameCodec::new(4096);
        let mut rng = ChaCha12Rng::seed_from_u64(99);
        for case in 0..20_000 {
            let n = (rng.next_u32() % 200) as usize;
            let mut b = vec![0u8; n];
            rng.fill_bytes(&mut b);
            if case % 3 == 0 && n >= 4 {
                // Plausible lengths make the interesting paths reachable.
                let len = rng.next_u32() % 300;
                b[..4].copy_from_slice(&len.to_le_bytes());
                if n > 4 {
                    b[4] = match case % 5 {
                        0 => TAG_MESSAGE,
                        2 => TAG_CONTROL,
                        4 => TAG_STREAM,
                        _ => b[4],
                    };
                }
                if case % 4 == 2 && n >= 21 {
                    b[5..21].fill(0); // a well-formed control header
                }
            }
            if let Ok(Some((m, used))) = c.decode(&b) {
                assert!(used <= b.len());
                let mut again = Vec::new();
                c.encode_frame(&m, &mut again).unwrap();
                assert_eq!(again, b[..used]);
            }
        }
    }

    /// Property: a stream of frames split at arbitrary points decodes to the same messages.
    #[test]
    fn streams_split_anywhere_decode_to_the_same_messages() {
        let c = FrameCodec::new(1 << 16);
        let mut rng = ChaCha12Rng::seed_from_u64(7);
        for _ in 0..200 {
            let msgs: Vec<Message> = (0..5)
                .map(|k| msg(k, rng.next_u64() % 9, (rng.next_u32() % 500) as usize))
                .collect();
            let mut stream = Vec::new();
            for m in &msgs {
                c.encode(m, &mut stream).unwrap();
            }
            let mut got = Vec::new();
            let mut buf = Vec::new();
            let mut pos = 0;
            while pos < stream.len() {
                let step = 1 + (rng.next_u32() as usize % 97);
                buf.extend_from_slice(&stream[pos..(pos + step).min(stream.len())]);
                pos += step;
                while let Some((m, used)) = c.decode(&buf).unwrap() {
                    let Frame::Message(m) = m else {
                        panic!("only messages were sent")
                    };
                    got.push(m);
                    buf.drain(..used);
                }
            }
            assert_eq!(got, msgs);
            assert!(buf.is_empty());
        }
    }
}
