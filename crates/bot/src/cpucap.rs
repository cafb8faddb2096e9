//! Cap the CPU of a server's media worker threads, each at a fraction of one
//! core, with the cgroup (v1) `cpu` controller: one cgroup per thread, CFS
//! quota `fraction × period` per 10 ms period.
//!
//! What for: "how much more load do two workers hold than one" needs as many
//! free cores as workers plus the bot's own. On a machine with fewer cores,
//! giving every worker the same small CPU budget measures the same thing —
//! whether load held grows with the number of workers (placement, pipes,
//! no shared lock) — without running out of cores: 2 workers capped at 0.2
//! of a core each against 1 worker capped at 0.2. The short period keeps
//! throttling pauses (at most period − quota) far below the latency limit.

use crate::procfs::threads_named;
use anyhow::{anyhow, bail, Context};
use std::path::{Path, PathBuf};

/// The cgroup v1 `cpu` hierarchy.
const V1_CPU: &str = "/sys/fs/cgroup/cpu";
/// CFS period, µs.
const PERIOD_US: u64 = 10_000;

/// The per-thread cgroups made for one server; removed on drop (after the
/// server has exited, when they are empty).
#[derive(Debug)]
pub struct CpuCap {
    dirs: Vec<PathBuf>,
}

impl CpuCap {
    /// How many threads were capped.
    pub fn threads(&self) -> usize {
        self.dirs.len()
    }
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        for dir in &self.dirs {
            // Tasks leave the cgroup when they exit; give the kernel a moment.
            for _ in 0..50 {
                if std::fs::remove_dir(dir).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    }
}

/// The quota (µs per `PERIOD_US`) for a fraction of a core.
pub fn quota_us(fraction: f64) -> anyhow::Result<u64> {
    if !(fraction > 0.0 && fraction <= 1.0) {
        bail!("the worker CPU cap must be a fraction of a core in (0, 1], not {fraction}");
    }
    // The kernel refuses quotas below 1 ms.
    Ok(((fraction * PERIOD_US as f64).round() as u64).max(1_000))
}

/// Put each of `expected` threads of `pid` named `worker-*` in a cgroup of
/// its own capped at `fraction` of a core. Waits up to 5 s for the threads.
pub fn cap_workers(pid: u32, expected: usize, fraction: f64) -> anyhow::Result<CpuCap> {
    let root = Path::new(V1_CPU);
    if !root.join("cpu.cfs_quota_us").exists() {
        bail!(
            "capping worker CPU needs the cgroup v1 cpu controller at {V1_CPU} (with cpu.cfs_quota_us) and root; \
             this machine does not have it: run without --worker-cpu, on a machine with a free core per worker"
        );
    }
    let quota = quota_us(fraction)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let tids = loop {
        let tids = threads_named(pid, "worker-")?;
        if tids.len() >= expected || std::time::Instant::now() > deadline {
            break tids;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    if tids.len() != expected {
        bail!(
            "expected {expected} worker threads in process {pid}, found {}",
            tids.len()
        );
    }
    let mut cap = CpuCap { dirs: Vec::new() };
    for tid in tids {
        let dir = root.join(format!("simplesfu-bench-{pid}-{tid}"));
        std::fs::create_dir(&dir).with_context(|| format!("could not create {}", dir.display()))?;
        cap.dirs.push(dir.clone());
        let write = |file: &str, value: String| {
            std::fs::write(dir.join(file), &value).map_err(|e| {
                anyhow!(
                    "could not write {value} to {}: {e}",
                    dir.join(file).display()
                )
            })
        };
        write("cpu.cfs_period_us", PERIOD_US.to_string())?;
        write("cpu.cfs_quota_us", quota.to_string())?;
        write("tasks", tid.to_string())?;
    }
    Ok(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_is_a_share_of_the_period() {
        assert_eq!(quota_us(0.25).expect("valid"), 2_500);
        assert_eq!(quota_us(1.0).expect("valid"), 10_000);
        // Below the kernel's 1 ms minimum: clamped.
        assert_eq!(quota_us(0.01).expect("valid"), 1_000);
        assert!(quota_us(0.0).is_err());
        assert!(quota_us(1.5).is_err());
        assert!(quota_us(f64::NAN).is_err());
    }
}
