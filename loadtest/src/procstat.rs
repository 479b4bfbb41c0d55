//! CPU time and memory of a process, from `/proc` (Linux): what a load test or a benchmark
//! needs to report efficiency (CPU seconds per work done) of itself or of the server.

use std::io;

/// CPU time and resident memory of a process at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    /// User-mode CPU seconds since the process started (all threads).
    pub user_s: f64,
    /// Kernel-mode CPU seconds since the process started (all threads).
    pub system_s: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

impl ProcSample {
    /// User plus kernel CPU seconds.
    pub fn cpu_s(&self) -> f64 {
        self.user_s + self.system_s
    }
}

/// Clock ticks per second of `/proc/*/stat` times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// Samples process `pid`, or this process when `None`.
pub fn sample(pid: Option<u32>) -> io::Result<ProcSample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
    let (user_ticks, system_ticks) = parse_stat(&stat).ok_or_else(|| io::Error::other("unparseable /proc stat"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))?;
    let tps = ticks_per_second();
    Ok(ProcSample {
        user_s: user_ticks as f64 / tps,
        system_s: system_ticks as f64 / tps,
        rss_bytes: parse_vm_rss(&status).unwrap_or(0),
    })
}

/// (utime, stime) in clock ticks from the text of `/proc/PID/stat` (fields 14 and 15; the
/// command name, field 2, may hold spaces and parentheses, so fields are counted after its
/// last `)`).
pub fn parse_stat(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state): utime is field 14, i.e. the 12th from here
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// `VmRSS` in bytes from the text of `/proc/PID/status`.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1234 0 5 0 731 42 0 0 20 0 9 0 100 1000 200";
        assert_eq!(parse_stat(stat), Some((731, 42)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_rss() {
        assert_eq!(parse_vm_rss("Name:\tsfu\nVmRSS:\t   20480 kB\nVmSwap: 0 kB\n"), Some(20480 * 1024));
        assert_eq!(parse_vm_rss("Name:\tsfu\n"), None);
    }

    #[test]
    fn samples_itself() {
        let s = sample(None).expect("/proc/self");
        assert!(s.rss_bytes > 0);
        assert!(s.cpu_s() >= 0.0);
    }
}
