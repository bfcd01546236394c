//! Reuse of large message buffers.
//!
//! A comparison of 10^5 elements moves 100–400 MB of labels and tables; allocated
//! fresh for every operation, such buffers are mapped and unmapped by the allocator
//! each time, and the first touch of every page faults (a fifth of the time of a
//! bulk comparison). Buffers of at least [`MIN_POOLED`] bytes are handed back here
//! once their contents are consumed and taken again by the next sender.
//!
//! The pool keeps at most [`MAX_POOLED_BYTES`] in all. A buffer is cleared when it
//! is returned, so safe code never sees its old contents.

use std::sync::Mutex;

/// Smaller buffers come from the allocator directly.
const MIN_POOLED: usize = 1 << 20;
/// Most bytes the pool keeps.
const MAX_POOLED_BYTES: usize = 1 << 30;

static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Removes and returns the smallest buffer of `pool` with room for `len` elements.
fn take_fitting<T>(pool: &mut Vec<Vec<T>>, len: usize) -> Option<Vec<T>> {
    let best = pool
        .iter()
        .enumerate()
        .filter(|(_, b)| b.capacity() >= len)
        .min_by_key(|(_, b)| b.capacity())
        .map(|(k, _)| k)?;
    Some(pool.swap_remove(best))
}

/// Adds `buf` to `pool`, then drops the smallest buffers while the pool holds more
/// than `max` elements of capacity.
fn keep<T>(pool: &mut Vec<Vec<T>>, buf: Vec<T>, max: usize) {
    pool.push(buf);
    while pool.iter().map(Vec::capacity).sum::<usize>() > max {
        let smallest = pool
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| b.capacity())
            .map(|(k, _)| k);
        match smallest {
            Some(k) => drop(pool.swap_remove(k)),
            None => break,
        }
    }
}

/// An empty buffer with room for `capacity` bytes.
pub(crate) fn take(capacity: usize) -> Vec<u8> {
    if capacity >= MIN_POOLED
        && let Ok(mut pool) = POOL.lock()
        && let Some(buf) = take_fitting(&mut pool, capacity)
    {
        return buf;
    }
    Vec::with_capacity(capacity)
}

/// Returns a buffer whose contents are no longer needed.
pub(crate) fn give(mut buf: Vec<u8>) {
    if buf.capacity() < MIN_POOLED || buf.capacity() > MAX_POOLED_BYTES {
        return;
    }
    buf.clear();
    if let Ok(mut pool) = POOL.lock() {
        keep(&mut pool, buf, MAX_POOLED_BYTES);
    }
}

/// Word buffers of at least this many words are kept for reuse ([`take_words`]).
const MIN_POOLED_WORDS: usize = 1 << 14;
/// Most words the pool keeps (256 MiB).
const MAX_POOLED_WORDS: usize = 1 << 25;

/// Spare word buffers (bit planes of the four-party comparison), for any thread:
/// the servers of a [`crate::LocalCluster`] run each session on fresh threads, and a
/// networked server each job, so a per-thread pool would start empty every time.
static WORDS: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());

/// `len` zero words, in a buffer reused from the pool when one is large enough
/// (its pages already mapped), else freshly allocated.
pub(crate) fn take_words(len: usize) -> Vec<u64> {
    if len >= MIN_POOLED_WORDS
        && let Ok(mut pool) = WORDS.lock()
        && let Some(mut v) = take_fitting(&mut pool, len)
    {
        drop(pool);
        v.clear();
        v.resize(len, 0);
        return v;
    }
    vec![0; len]
}

/// Returns a word buffer whose contents are no longer needed.
pub(crate) fn give_words(buf: Vec<u64>) {
    if buf.capacity() < MIN_POOLED_WORDS || buf.capacity() > MAX_POOLED_WORDS {
        return;
    }
    if let Ok(mut pool) = WORDS.lock() {
        keep(&mut pool, buf, MAX_POOLED_WORDS);
    }
}
