//! How the process's memory is handed back to the system under glibc.
//!
//! Owns: the allocator's settings and its trim. musl, the router's libc,
//! returns freed memory by itself; glibc needs to be told.

/// Asks glibc's allocator to give large blocks back as soon as they are
/// freed: each allocation of 64 KiB or more (the mapping table, the lease
/// text, netlink buffers) gets its own mapping, so the table that a
/// growing map or vector leaves behind is unmapped instead of staying in
/// the heap, and no second arena (64 MiB of address space, its own pages)
/// is made for the short-lived threads. musl does both by itself.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters, under its
    // lock.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Gives freed heap back to the system: glibc keeps it otherwise (after
/// libnftables' cache or a large batch). musl returns it by itself.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and trims the allocator's own state.
    unsafe {
        libc::malloc_trim(0);
    }
}
