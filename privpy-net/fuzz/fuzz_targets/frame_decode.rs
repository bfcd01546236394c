//! `cargo +nightly fuzz run frame_decode` (from privpy-net/): the frame decoder and
//! the control-message decoder on arbitrary bytes must never panic, and what they
//! decode must re-encode exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privpy_net::frame::{Frame, FrameCodec};
use privpy_net::wire::Control;

fuzz_target!(|data: &[u8]| {
    // The whole input as one control message.
    if let Ok(c) = Control::decode(data) {
        assert_eq!(c.encode(), data);
    }
    // The whole input as a stream of frames.
    let codec = FrameCodec::new(1 << 16);
    let mut rest = data;
    while let Ok(Some((frame, used))) = codec.decode(rest) {
        let mut again = Vec::new();
        codec.encode_frame(&frame, &mut again).expect("a decoded frame is within the limit");
        assert_eq!(again, rest[..used]);
        if let Frame::Control(body) = &frame {
            if let Ok(c) = Control::decode(body) {
                assert_eq!(&c.encode(), body);
            }
        }
        rest = &rest[used..];
    }
});
