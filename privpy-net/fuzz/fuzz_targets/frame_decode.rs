//! `cargo +nightly fuzz run frame_decode` (from privpy-net/): the frame decoder on
//! arbitrary bytes must never panic, and what it decodes must re-encode exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use privpy_net::frame::FrameCodec;

fuzz_target!(|data: &[u8]| {
    let codec = FrameCodec::new(1 << 16);
    let mut rest = data;
    while let Ok(Some((msg, used))) = codec.decode(rest) {
        let mut again = Vec::new();
        codec.encode(&msg, &mut again).expect("a decoded frame is within the limit");
        assert_eq!(again, rest[..used]);
        rest = &rest[used..];
    }
});
