//! CPU time and memory of a process from /proc (Linux), for the server's cost
//! and the bot's own load.

use anyhow::{anyhow, Context};

/// CPU time and resident memory at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU time, seconds.
    pub cpu_s: f64,
    /// Resident set size, bytes.
    pub rss_bytes: u64,
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime (seconds) from the text of /proc/<pid>/stat.
pub fn parse_stat_cpu(stat: &str) -> anyhow::Result<f64> {
    // The command name may contain spaces: fields start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| anyhow!("malformed stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5); utime is 14, stime 15 → indexes 11 and 12 here.
    let utime: u64 = fields.get(11).ok_or_else(|| anyhow!("stat has no utime"))?.parse()?;
    let stime: u64 = fields.get(12).ok_or_else(|| anyhow!("stat has no stime"))?.parse()?;
    Ok((utime + stime) as f64 / clock_ticks())
}

/// VmRSS (bytes) from the text of /proc/<pid>/status.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Sample a process (`"self"` for this one).
pub fn sample(pid: &str) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("process {pid} is gone"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).with_context(|| format!("process {pid} is gone"))?;
    Ok(ProcSample { cpu_s: parse_stat_cpu(&stat)?, rss_bytes: parse_status_rss(&status).unwrap_or(0) })
}

/// CPU time of a process and all its threads' children is not needed: servers
/// here are single processes. Number of CPUs this process may run on.
pub fn allowed_cpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rss() {
        let stat = "1234 (simple sfu) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 100 1000000 2000";
        let ticks = clock_ticks();
        assert!((parse_stat_cpu(stat).expect("parses") - 300.0 / ticks).abs() < 1e-9);
        assert_eq!(parse_status_rss("Name:\tx\nVmRSS:\t  2048 kB\n"), Some(2 * 1024 * 1024));
        let me = sample("self").expect("own process");
        assert!(me.rss_bytes > 0);
    }
}
