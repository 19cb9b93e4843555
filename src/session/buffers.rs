//! Read buffers for sessions' pumps, lent while a pump has bytes to read and given back when it
//! waits with nothing buffered, so an idle session holds none. Each thread keeps a bounded pool
//! of small buffers: a busy session takes and gives back the same buffer for every request,
//! without the allocator.

use std::cell::RefCell;

use bytes::BytesMut;

/// The size a pump's buffer starts at; it grows (up to `read_buffer_size`) while a read fills it.
pub const SMALL: usize = 2048;
/// How many small buffers a thread keeps for reuse: at most 512 KiB per thread.
const KEEP: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer with room for at least `size` bytes: a pooled one for the small size.
pub fn take(size: usize) -> BytesMut {
    if size <= SMALL
        && let Some(buf) = POOL.with_borrow_mut(Vec::pop)
    {
        return buf;
    }
    BytesMut::with_capacity(size.max(SMALL))
}

/// Gives an empty buffer back: a small one is kept for reuse, a larger one is freed.
pub fn give(mut buf: BytesMut) {
    debug_assert!(buf.is_empty());
    buf.clear();
    // Reclaims the space consumed at the front; a buffer the pump owns alone, as here, is rewound
    // in place without allocating.
    buf.reserve(SMALL);
    if buf.capacity() > 2 * SMALL {
        return;
    }
    POOL.with_borrow_mut(|pool| {
        if pool.len() < KEEP {
            pool.push(buf);
        }
    });
}

/// Buffers this thread keeps for reuse.
#[cfg(test)]
pub fn pooled() -> usize {
    POOL.with_borrow(Vec::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn a_given_back_buffer_is_taken_again_without_allocating() {
        let mut buf = take(SMALL);
        buf.extend_from_slice(&[7; 100]);
        let ptr = buf.as_ptr();
        buf.advance(100);
        let before = pooled();
        give(buf);
        assert_eq!(pooled(), before + 1);
        let again = take(SMALL);
        assert_eq!(again.as_ptr(), ptr, "the same memory, rewound");
        assert!(again.capacity() >= SMALL && again.is_empty());
    }

    #[test]
    fn large_buffers_are_not_kept_and_the_pool_is_bounded() {
        let before = pooled();
        give(BytesMut::with_capacity(16 * SMALL));
        assert_eq!(pooled(), before, "a grown buffer is freed");
        for _ in 0..KEEP + 10 {
            give(BytesMut::with_capacity(SMALL));
        }
        assert_eq!(pooled(), KEEP);
        assert!(take(16 * SMALL).capacity() >= 16 * SMALL);
    }
}
