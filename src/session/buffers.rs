//! Read buffers for sessions' pumps, lent while a pump has bytes to read and given back when it
//! waits with nothing buffered, so an idle session holds none. Each thread keeps a bounded pool
//! of buffers: a busy session takes and gives back a buffer for every request without the
//! allocator.

use std::cell::RefCell;

use bytes::BytesMut;

/// The size a pump's buffer starts at; it grows (up to `read_buffer_size`) while a read fills it.
pub const SMALL: usize = 2048;
/// How many small buffers a thread keeps for reuse: 512 KiB per thread.
const KEEP_SMALL: usize = 256;
/// How many grown buffers a thread keeps (16 KiB each by default: 512 KiB per thread).
const KEEP_LARGE: usize = 32;

#[derive(Default)]
struct Pool {
    small: Vec<BytesMut>,
    large: Vec<BytesMut>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::default();
}

/// An empty buffer with room for at least `size` bytes, from the pool when it has one.
pub fn take(size: usize) -> BytesMut {
    let pooled = POOL.with_borrow_mut(|pool| {
        if size <= SMALL {
            pool.small.pop()
        } else {
            let i = pool.large.iter().position(|b| b.capacity() >= size)?;
            Some(pool.large.swap_remove(i))
        }
    });
    pooled.unwrap_or_else(|| BytesMut::with_capacity(size.max(SMALL)))
}

/// Gives an empty buffer back for reuse; beyond the pool's bounds, or grown past twice
/// `read_size` (by a message larger than the read buffer: a 40 MiB query), it is freed, so a
/// few large messages cannot leave their size behind in every thread's pool.
pub fn give(mut buf: BytesMut, read_size: usize) {
    debug_assert!(buf.is_empty());
    if buf.capacity() > 2 * read_size.max(SMALL) {
        return;
    }
    buf.clear();
    // Reclaims the space consumed at the front; a buffer the pump owns alone, as here, is rewound
    // in place without allocating.
    buf.reserve(SMALL);
    POOL.with_borrow_mut(|pool| {
        let (list, keep) = if buf.capacity() <= 2 * SMALL {
            (&mut pool.small, KEEP_SMALL)
        } else {
            (&mut pool.large, KEEP_LARGE)
        };
        if list.len() < keep {
            list.push(buf);
        }
    });
}

/// Buffers this thread keeps for reuse: small, grown.
#[cfg(test)]
pub fn pooled() -> (usize, usize) {
    POOL.with_borrow(|p| (p.small.len(), p.large.len()))
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
        give(buf, SMALL);
        assert_eq!(pooled().0, before.0 + 1);
        let again = take(SMALL);
        assert_eq!(again.as_ptr(), ptr, "the same memory, rewound");
        assert!(again.capacity() >= SMALL && again.is_empty());
    }

    #[test]
    fn grown_buffers_are_kept_apart_and_both_pools_are_bounded() {
        let large = BytesMut::with_capacity(8 * SMALL);
        let ptr = large.as_ptr();
        give(large, 8 * SMALL);
        assert_eq!(pooled().1, 1);
        assert_eq!(
            take(SMALL).capacity(),
            SMALL,
            "a small request gets a small buffer"
        );
        let again = take(8 * SMALL);
        assert_eq!(again.as_ptr(), ptr);
        assert!(take(16 * SMALL).capacity() >= 16 * SMALL);
        for _ in 0..KEEP_SMALL + 10 {
            give(BytesMut::with_capacity(SMALL), 8 * SMALL);
            give(BytesMut::with_capacity(8 * SMALL), 8 * SMALL);
        }
        assert_eq!(pooled(), (KEEP_SMALL, KEEP_LARGE));
    }

    #[test]
    fn a_buffer_grown_by_a_large_message_is_freed_not_pooled() {
        let before = pooled();
        give(BytesMut::with_capacity(40 << 20), 16 * 1024);
        give(BytesMut::with_capacity(64 * 1024), 16 * 1024);
        assert_eq!(pooled(), before, "neither kept");
        give(BytesMut::with_capacity(32 * 1024), 16 * 1024);
        assert_eq!(pooled().1, before.1 + 1, "a grown read buffer is kept");
    }
}
