//! obsbox's own resident memory: once it has started, it lets go of the
//! pages of its program that only start-up used.
//!
//! Most of what obsbox has resident at rest is pages of its own binary,
//! code and read-only data, mapped while it started: the argument parser,
//! opening SQLite and reading the settings, rendering the children's
//! configurations, the relocation table a static-pie binary reads once. The
//! kernel maps them 64 KiB at a time (fault-around), whether the
//! neighbouring code is used or not, and they stay mapped for the life of
//! the process. After start-up obsbox unmaps them (`MADV_DONTNEED` on its
//! read-only, file-backed mappings of the binary): they stay in the page
//! cache, where the kernel reclaims them like any file data when memory is
//! short, and the pages later work needs come back on first use (a minor
//! fault while they are cached).

use std::ops::Range;

/// Unmaps the pages of obsbox's binary that were never written (code and
/// read-only data); returns how many KiB were resident in them.
pub fn release_start_up_pages() -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let mut released = 0;
    for mapping in releasable(&smaps, &exe.to_string_lossy()) {
        // SAFETY: the range is a whole mapping of obsbox's binary that is
        // private, not writable and holds no anonymous (written) page:
        // dropping its pages only means reading the same bytes from the file
        // again when they are next used.
        let rc = unsafe {
            libc::madvise(
                mapping.range.start as *mut libc::c_void,
                mapping.range.end - mapping.range.start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            released += mapping.rss_kb;
        }
    }
    released
}

/// A mapping [`releasable`] found.
#[derive(Debug, PartialEq)]
struct Mapping {
    range: Range<usize>,
    rss_kb: u64,
}

/// The mappings in `smaps` (as /proc/self/smaps reads) of the file `exe`
/// that are private, not writable, resident in part, and hold no anonymous
/// page. A writable mapping, or one made read-only after it was written (the
/// relocated data of a position-independent binary, `RELRO`), is left alone:
/// its pages differ from the file's.
fn releasable(smaps: &str, exe: &str) -> Vec<Mapping> {
    struct Candidate {
        range: Range<usize>,
        ours: bool,
        rss_kb: u64,
        /// `None` until its line is read.
        anonymous_kb: Option<u64>,
    }
    let mut found = Vec::new();
    let mut current: Option<Candidate> = None;
    let mut finish = |candidate: Option<Candidate>| {
        if let Some(c) = candidate.filter(|c| c.ours && c.rss_kb > 0 && c.anonymous_kb == Some(0)) {
            found.push(Mapping {
                range: c.range,
                rss_kb: c.rss_kb,
            });
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-').and_then(|(s, e)| {
            Some((
                usize::from_str_radix(s, 16).ok()?,
                usize::from_str_radix(e, 16).ok()?,
            ))
        }) {
            finish(current.take());
            let perms = fields.next().unwrap_or("");
            current = Some(Candidate {
                range: start..end,
                ours: path_of(line) == exe && !perms.contains('w') && perms.ends_with('p'),
                rss_kb: 0,
                anonymous_kb: None,
            });
            continue;
        }
        let Some(candidate) = current.as_mut() else {
            continue;
        };
        let kb = || fields.clone().next().and_then(|n| n.parse::<u64>().ok());
        match first {
            "Rss:" => candidate.rss_kb = kb().unwrap_or(0),
            "Anonymous:" => candidate.anonymous_kb = kb(),
            _ => {}
        }
    }
    finish(current);
    found
}

/// The path of a mapping's header line in smaps: what follows its first
/// five fields (range, permissions, offset, device, inode); it may hold spaces.
fn path_of(header: &str) -> &str {
    let mut rest = header;
    for _ in 0..5 {
        rest = rest.trim_start();
        rest = rest.find(char::is_whitespace).map_or("", |at| &rest[at..]);
    }
    rest.trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Abridged from a static-pie obsbox's /proc/self/smaps.
    const SMAPS: &str = "\
55555b8b0000-55555b9e9000 rw-p 00000000 00:00 0                          [heap]
Size:               1252 kB
Rss:                1204 kB
Anonymous:          1204 kB
7f7d66400000-7f7d667a2000 r--p 00000000 08:01 123 /usr/bin/obs box
Size:               3720 kB
Rss:                1984 kB
Anonymous:             0 kB
7f7d667a2000-7f7d67095000 r-xp 003a1000 08:01 123 /usr/bin/obs box
Size:               9164 kB
Rss:                7180 kB
Anonymous:             0 kB
7f7d67095000-7f7d67110000 r--p 00c93000 08:01 123 /usr/bin/obs box
Size:                492 kB
Rss:                 492 kB
Anonymous:           492 kB
7f7d67110000-7f7d6711a000 rw-p 00d0e000 08:01 123 /usr/bin/obs box
Size:                 40 kB
Rss:                  40 kB
Anonymous:            40 kB
7f7d6711a000-7f7d6711c000 r--p 00000000 08:01 124 /usr/bin/obs box.old
Rss:                   8 kB
Anonymous:             0 kB
7f7d67200000-7f7d67210000 r-xp 00000000 08:01 125 /usr/lib/libc.so.6
Rss:                  64 kB
Anonymous:             0 kB
7f7d67220000-7f7d67230000 r--s 00000000 08:01 123 /usr/bin/obs box
Rss:                  64 kB
Anonymous:             0 kB
7f7d67240000-7f7d67250000 r-xp 00000000 08:01 123 /usr/bin/obs box
Rss:                   0 kB
Anonymous:             0 kB
7f7d67260000-7f7d67270000 r-xp 00000000 08:01 123 /usr/bin/obs box
Rss:                  64 kB
7f7d672b8000-7f7d672ba000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn only_unwritten_private_read_only_mappings_of_the_binary_are_released() {
        assert_eq!(
            releasable(SMAPS, "/usr/bin/obs box"),
            vec![
                // Read-only data, and code; not the relocated data (it has
                // anonymous pages), the writable data, another file, a
                // shared mapping, a mapping with nothing resident.
                Mapping {
                    range: 0x7f7d66400000..0x7f7d667a2000,
                    rss_kb: 1984,
                },
                Mapping {
                    range: 0x7f7d667a2000..0x7f7d67095000,
                    rss_kb: 7180,
                },
                // No Anonymous line: the kernel always writes one, but
                // without it nothing says the pages are the file's.
            ]
        );
        assert_eq!(releasable(SMAPS, "/usr/bin/other"), vec![]);
        assert_eq!(releasable("", "/usr/bin/obs box"), vec![]);
    }
}
