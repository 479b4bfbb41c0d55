//! Software prefetch: asks the CPU to bring memory into its cache ahead of use.
//!
//! The fan-out visits hundreds of subscribers per packet, and each one's state (downtrack,
//! connection, cipher) lives in its own allocation, cold by the time the next packet comes:
//! without help every visit waits for several misses one after the other, since each visit's
//! work is too long for the CPU to run ahead into the next one's loads. A prefetch is only a
//! hint: it never faults and changes no result, whatever the address.

/// Bytes per cache line of x86-64 CPUs (the only ones prefetched for).
const LINE: usize = 64;

/// Prefetches every cache line of `len` bytes from `ptr`.
#[inline(always)]
pub fn bytes(ptr: *const u8, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let first = ptr.wrapping_sub(ptr as usize % LINE);
        let lines = (ptr as usize % LINE + len).div_ceil(LINE);
        for i in 0..lines {
            // SAFETY: the intrinsic needs SSE, which every x86-64 CPU has; a prefetch is a hint
            // that never faults, whatever the address, and nothing is dereferenced here.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(first.wrapping_add(i * LINE).cast()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, len, LINE);
}

/// Prefetches all of `value` (one line for a field, every line of a struct).
#[inline(always)]
pub fn value<T: ?Sized>(value: &T) {
    bytes((value as *const T).cast(), std::mem::size_of_val(value));
}

/// Where `value` lies, as a plain number: a hint to warm later with [`at`], never a pointer
/// to read through.
#[inline(always)]
pub fn addr<T: ?Sized>(value: &T) -> usize {
    (value as *const T).cast::<u8>() as usize
}

/// Where `value` lies and its size (for values whose size only the value knows).
#[inline(always)]
pub fn span<T: ?Sized>(value: &T) -> (usize, usize) {
    (addr(value), std::mem::size_of_val(value))
}

/// Prefetches `len` bytes at an [`addr`] taken earlier (a stale one only wastes the prefetch).
#[inline(always)]
pub fn at(addr: usize, len: usize) {
    bytes(addr as *const u8, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetching_any_address_changes_nothing() {
        let data: Vec<u64> = (0..1000).collect();
        value(&data[..]);
        value(&data[3]);
        value(&());
        bytes(std::ptr::null(), 4096);
        bytes(usize::MAX as *const u8, 1);
        bytes(std::ptr::dangling(), 0);
        bytes(data.as_ptr().cast::<u8>().wrapping_add(1 << 40), 256);
        assert_eq!(data.iter().sum::<u64>(), 999 * 1000 / 2);
    }
}
