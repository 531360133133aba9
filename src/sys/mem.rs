//! Pages the daemon hands back once it has started.
//!
//! Owns: dropping the mappings of file pages that only start-up used. The
//! kernel maps a file's pages around each fault (64 KiB on Linux), so
//! start-up, which runs most of the binary once (the configuration, the
//! ruleset, the first restore) and reads its relocations and symbol
//! tables, leaves nearly all of its code and constants and much of
//! libc's in the resident set. The pages stay in the page cache, shared
//! and reclaimable; only this process's mappings of them go, and what the
//! loop runs afterwards maps its own pages again with a minor fault.

/// Drops this process's mappings of read-only file pages (code, constants,
/// symbol tables) that were never written (relocations and a debugger's
/// breakpoints make private copies: such a mapping is left alone), then gives the heap start-up freed back. Returns the
/// KiB that left the resident set, for the log.
pub fn drop_startup_pages() -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut dropped = 0;
    for m in read_only_mappings(&smaps) {
        // SAFETY: the range is a whole mapping of this process, read-only,
        // file-backed and private, with no anonymous (written) page: after
        // MADV_DONTNEED the next access reads the same bytes from the file.
        let r = unsafe { libc::madvise(m.start as *mut libc::c_void, m.len, libc::MADV_DONTNEED) };
        if r == 0 {
            dropped += m.rss_kib;
        }
    }
    trim_heap();
    dropped
}

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

/// One read-only mapping of a file, as /proc/self/smaps lists it.
#[derive(Debug, PartialEq, Eq)]
struct ReadOnly {
    start: usize,
    len: usize,
    rss_kib: u64,
}

/// The read-only (or read and execute), private, file-backed mappings
/// with resident pages and no anonymous ones.
fn read_only_mappings(smaps: &str) -> Vec<ReadOnly> {
    let mut out = Vec::new();
    let mut cur: Option<(ReadOnly, bool)> = None;
    let finish = |cur: Option<(ReadOnly, bool)>, out: &mut Vec<ReadOnly>| {
        if let Some((c, true)) = cur
            && c.rss_kib > 0
        {
            out.push(c);
        }
    };
    for line in smaps.lines() {
        if let Some(c) = header(line) {
            finish(cur.take(), &mut out);
            cur = c.map(|c| (c, true));
        } else if let Some((c, clean)) = cur.as_mut() {
            let mut f = line.split_whitespace();
            let (key, kib) = (f.next(), f.next().and_then(|v| v.parse::<u64>().ok()));
            match (key, kib) {
                (Some("Rss:"), Some(k)) => c.rss_kib = k,
                (Some("Anonymous:"), Some(k)) if k > 0 => *clean = false,
                _ => {}
            }
        }
    }
    finish(cur, &mut out);
    out
}

/// A mapping's header line: `Some(Some(mapping))` for a read-only private
/// mapping of a file, `Some(None)` for any other mapping, `None` for a
/// field line.
fn header(line: &str) -> Option<Option<ReadOnly>> {
    let mut f = line.split_whitespace();
    let range = f.next()?;
    let (lo, hi) = range.split_once('-')?;
    let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16)) else {
        return None;
    };
    let perms = f.next()?;
    let (_offset, _dev, inode) = (f.next()?, f.next()?, f.next()?);
    let path = f.next().unwrap_or("");
    let read_only =
        matches!(perms, "r-xp" | "r--p") && inode != "0" && path.starts_with('/') && hi > lo;
    Some(read_only.then(|| ReadOnly {
        start: lo,
        len: hi - lo,
        rss_kib: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55d594a2b000-55d594b0d000 r-xp 0004f000 fe:00 5784222                    /usr/sbin/rupnpd
Size:                904 kB
Rss:                 904 kB
Anonymous:             0 kB
55d594b0d000-55d594b18000 r--p 00130000 fe:00 5784222                    /usr/sbin/rupnpd
Rss:                  44 kB
Anonymous:            44 kB
7f9164d7f000-7f9164ed5000 r-xp 00026000 fe:00 326279                     /usr/lib/libc.so.6
Rss:                1284 kB
Anonymous:             4 kB
7f9164ed5000-7f9164f28000 r--p 0017c000 fe:00 326279                     /usr/lib/libc.so.6
Rss:                 172 kB
Anonymous:             0 kB
7f9164f2c000-7f9164f2e000 rw-p 001d3000 fe:00 326279                     /usr/lib/libc.so.6
Rss:                   8 kB
Anonymous:             0 kB
7f9164f3e000-7f9164f55000 r-xp 00003000 fe:00 326426                     /usr/lib/libgcc_s.so.1
Rss:                   0 kB
Anonymous:             0 kB
7f9164f6c000-7f9164f6e000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
7f9164f6f000-7f9164f95000 r-xp 00001000 fe:00 325843                     /usr/lib/ld-linux-x86-64.so.2
Rss:                 152 kB
Anonymous:             0 kB
";

    #[test]
    fn only_clean_resident_read_only_pages_of_files() {
        assert_eq!(
            read_only_mappings(SMAPS),
            vec![
                ReadOnly {
                    start: 0x55d5_94a2_b000,
                    len: 0xe2000,
                    rss_kib: 904
                },
                // the relocated constants have written pages, libc's code
                // a breakpoint: left alone.
                ReadOnly {
                    start: 0x7f91_64ed_5000,
                    len: 0x53000,
                    rss_kib: 172
                },
                // libc's data is writable; libgcc has nothing resident;
                // the vdso is no file.
                ReadOnly {
                    start: 0x7f91_64f6_f000,
                    len: 0x26000,
                    rss_kib: 152
                },
            ]
        );
    }

    #[test]
    fn garbage_is_no_mapping() {
        assert!(read_only_mappings("zz-yy r-xp 0 0 1 /x\nRss: 4 kB\n").is_empty());
        assert!(read_only_mappings("").is_empty());
    }
}
