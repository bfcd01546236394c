//! Framing of server-to-server messages on a byte stream (sans-IO).
//!
//! A frame is a 4-byte little-endian length `n` followed by `n` bytes of body:
//! `tag (1 byte) | op (8 bytes LE) | round (8 bytes LE) | payload`. The length is
//! capped by configuration; a short read is *incomplete* (wait for more bytes), never
//! an error; an oversized or malformed frame is an error that names what is wrong and
//! leaves the buffer untouched. The decoder is fuzzed (`privpy-net/fuzz`) and
//! property-tested on arbitrary byte strings.

use privpy_core::transport::Message;

/// The tag of a protocol message frame (room is left for control frames).
pub const TAG_MESSAGE: u8 = 1;

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
}

/// Encodes and decodes frames with a body size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    max_body: usize,
}

impl FrameCodec {
    /// A codec accepting bodies of at most `max_body` bytes (header included).
    pub fn new(max_body: usize) -> Self {
        FrameCodec {
            max_body: max_body.max(HEADER_BYTES),
        }
    }

    /// The body size limit.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// Appends the frame of `msg` to `out`.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] when the body would exceed the limit (nothing is written).
    pub fn encode(&self, msg: &Message, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let len = HEADER_BYTES + msg.payload.len();
        if len > self.max_body || u32::try_from(len).is_err() {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_body,
            });
        }
        out.reserve(LEN_BYTES + len);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.push(TAG_MESSAGE);
        out.extend_from_slice(&msg.op.to_le_bytes());
        out.extend_from_slice(&msg.round.to_le_bytes());
        out.extend_from_slice(&msg.payload);
        Ok(())
    }

    /// Decodes the first frame of `buf`: `Ok(Some((message, bytes consumed)))`, or
    /// `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// An oversized, truncated-header or unknown-tag frame; the caller should close the
    /// connection, since the stream cannot be resynchronized.
    pub fn decode(&self, buf: &[u8]) -> Result<Option<(Message, usize)>, FrameError> {
        let Some(len_bytes) = buf.get(..LEN_BYTES) else {
            return Ok(None);
        };
        let len =
            u32::from_le_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]) as usize;
        if len > self.max_body {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_body,
            });
        }
        if len < HEADER_BYTES {
            return Err(FrameError::TooShort { len });
        }
        let Some(body) = buf.get(LEN_BYTES..LEN_BYTES + len) else {
            return Ok(None);
        };
        if body[0] != TAG_MESSAGE {
            return Err(FrameError::UnknownTag { tag: body[0] });
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&body[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let msg = Message {
            op: u64_at(1),
            round: u64_at(9),
            payload: body[HEADER_BYTES..].to_vec(),
        };
        Ok(Some((msg, LEN_BYTES + len)))
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
        assert_eq!(c.decode(&buf), Ok(Some((m, buf.len()))));
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
                    b[4] = if case % 2 == 0 { TAG_MESSAGE } else { b[4] };
                }
            }
            if let Ok(Some((m, used))) = c.decode(&b) {
                assert!(used <= b.len());
                let mut again = Vec::new();
                c.encode(&m, &mut again).unwrap();
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
                    got.push(m);
                    buf.drain(..used);
                }
            }
            assert_eq!(got, msgs);
            assert!(buf.is_empty());
        }
    }
}
