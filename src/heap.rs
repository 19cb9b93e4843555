//! The bytes the process has allocated and not yet freed, as the C library's allocator counts
//! them: what the program keeps, without the memory the allocator holds on to after a free
//! (per-thread arenas, untrimmed heap tops), which makes the resident size move in steps that
//! say nothing about the program. Read at each `GET /metrics`.

/// Bytes in use: glibc's `mallinfo2()` (heap chunks in use plus mmapped chunks), or `None`
/// where the C library is not glibc.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn in_use() -> Option<u64> {
    // SAFETY: `mallinfo2` takes no argument, only reads the allocator's own bookkeeping under
    // its locks, and returns a plain struct by value (glibc 2.33 and later).
    let info = unsafe { libc::mallinfo2() };
    Some(info.uordblks as u64 + info.hblkhd as u64)
}

/// Bytes in use: not known with this C library.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn in_use() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn an_allocation_kept_is_counted_and_a_freed_one_is_not() {
        // Other tests allocate and free at the same time (the count is the process's): an
        // 8 MiB step stands out of their noise in at least one of a few tries.
        let mut seen = Vec::new();
        for _ in 0..10 {
            let before = super::in_use().unwrap();
            let kept = vec![1u8; 8 << 20];
            let during = super::in_use().unwrap();
            drop(std::hint::black_box(kept));
            let after = super::in_use().unwrap();
            if during >= before + (6 << 20) && after + (6 << 20) <= during {
                return;
            }
            seen.push((before, during, after));
        }
        panic!("no 8 MiB step counted, (before, during, after): {seen:?}");
    }
}
