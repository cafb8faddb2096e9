//! CPU time and memory of a process, of its named threads and of its
//! process tree from /proc (Linux), for the server's cost (split into media
//! workers and the rest) and the bot's own load.

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
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("malformed stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3 of stat(5); utime is 14, stime 15 → indexes 11 and 12 here.
    let utime: u64 = fields
        .get(11)
        .ok_or_else(|| anyhow!("stat has no utime"))?
        .parse()?;
    let stime: u64 = fields
        .get(12)
        .ok_or_else(|| anyhow!("stat has no stime"))?
        .parse()?;
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
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("process {pid} is gone"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    Ok(ProcSample {
        cpu_s: parse_stat_cpu(&stat)?,
        rss_bytes: parse_status_rss(&status).unwrap_or(0),
    })
}

/// Thread ids of `pid` whose name starts with `prefix` (simplesfu names its
/// media threads `worker-N`).
pub fn threads_named(pid: u32, prefix: &str) -> anyhow::Result<Vec<u32>> {
    let dir = format!("/proc/{pid}/task");
    let mut tids = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("could not list {dir}"))? {
        let entry = entry?;
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        if comm.trim_end().starts_with(prefix) {
            if let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                tids.push(tid);
            }
        }
    }
    tids.sort_unstable();
    Ok(tids)
}

/// CPU seconds (user + system) of the threads of `pid` whose name starts
/// with `prefix` (simplesfu's media workers are `worker-N`). A thread that
/// exits between two reads is missing from the later one: use it for
/// threads that live as long as the process.
pub fn threads_cpu_s(pid: u32, prefix: &str) -> anyhow::Result<f64> {
    let mut total = 0.0;
    for tid in threads_named(pid, prefix)? {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")) {
            total += parse_stat_cpu(&stat)?;
        }
    }
    Ok(total)
}

/// The parent pid from the text of /proc/<pid>/stat.
pub fn parse_stat_ppid(stat: &str) -> Option<u32> {
    // After the command name: state, then ppid.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Every living descendant of `pid` (children, their children, ...), found
/// by the parent pid of each process in /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(parent) = std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .and_then(|s| parse_stat_ppid(&s))
            {
                parents.push((child, parent));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &parents {
            if parent == p && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found.sort_unstable();
    found
}

/// A process and its descendants at one moment (the original Node.js server
/// forwards in its `mediasoup-worker` child processes).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TreeSample {
    /// The whole tree: CPU and RSS summed (shared pages count once per process).
    pub total: ProcSample,
    /// The descendants' CPU seconds alone.
    pub descendants_cpu_s: f64,
}

/// Sample `pid` and every descendant living now. A child that exits
/// between two samples takes its CPU time with it: use it for children that
/// live as long as the process.
pub fn sample_tree(pid: u32) -> anyhow::Result<TreeSample> {
    let mut tree = TreeSample {
        total: sample(&pid.to_string())?,
        descendants_cpu_s: 0.0,
    };
    for child in descendants(pid) {
        // A child may exit while we read: skip it.
        if let Ok(s) = sample(&child.to_string()) {
            tree.total.cpu_s += s.cpu_s;
            tree.total.rss_bytes += s.rss_bytes;
            tree.descendants_cpu_s += s.cpu_s;
        }
    }
    Ok(tree)
}

/// Number of CPUs this process may run on.
pub fn allowed_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_and_rss() {
        let stat = "1234 (simple sfu) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 100 1000000 2000";
        let ticks = clock_ticks();
        assert!((parse_stat_cpu(stat).expect("parses") - 300.0 / ticks).abs() < 1e-9);
        assert_eq!(
            parse_status_rss("Name:\tx\nVmRSS:\t  2048 kB\n"),
            Some(2 * 1024 * 1024)
        );
        let me = sample("self").expect("own process");
        assert!(me.rss_bytes > 0);
    }

    #[test]
    fn a_process_tree_counts_its_children() {
        assert_eq!(
            parse_stat_ppid("4321 (mediasoup-worke r) S 1234 4321 4321 0 -1 0"),
            Some(1234)
        );
        // `timeout` runs a spinning shell as its child (and ends it in 20 s
        // whatever happens here): the tree's CPU includes the child's.
        let mut shell = std::process::Command::new("timeout")
            .args(["20", "sh", "-c", "while :; do :; done"])
            .spawn()
            .expect("timeout");
        let pid = shell.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut tree = TreeSample::default();
        while tree.descendants_cpu_s == 0.0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tree = sample_tree(pid).expect("sampled");
        }
        let children = descendants(pid);
        for child in &children {
            // SAFETY: kill(2) on the spinning child this test started.
            unsafe { libc::kill(*child as i32, libc::SIGKILL) };
        }
        let _ = shell.kill();
        let _ = shell.wait();
        assert_eq!(children.len(), 1, "{children:?}");
        assert!(tree.descendants_cpu_s > 0.0, "{tree:?}");
        assert!(tree.total.cpu_s >= tree.descendants_cpu_s, "{tree:?}");
        assert!(tree.total.rss_bytes > 0);
    }

    #[test]
    fn finds_threads_by_name() {
        // The name is set inside the new thread before its closure runs.
        let (started, wait_started) = std::sync::mpsc::channel();
        let (stop, wait_stop) = std::sync::mpsc::channel::<()>();
        let handle = std::thread::Builder::new()
            .name("worker-test-7".into())
            .spawn(move || {
                let _ = started.send(());
                let _ = wait_stop.recv();
            })
            .expect("thread");
        wait_started.recv().expect("started");
        let tids = threads_named(std::process::id(), "worker-test").expect("listed");
        assert_eq!(tids.len(), 1, "{tids:?}");
        assert!(threads_named(std::process::id(), "no-such-thread")
            .expect("listed")
            .is_empty());
        let _ = stop.send(());
        handle.join().expect("joined");
    }

    #[test]
    fn named_threads_cpu_is_part_of_the_process_cpu() {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::Builder::new()
            .name("spin-test".into())
            .spawn(move || {
                // Burn CPU until told to stop.
                while stop_rx.try_recv().is_err() {
                    std::hint::black_box(0u64.wrapping_add(1));
                }
            })
            .expect("thread");
        let pid = std::process::id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut spun = 0.0;
        while spun == 0.0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
            spun = threads_cpu_s(pid, "spin-test").expect("read");
        }
        let all = sample("self").expect("own process").cpu_s;
        let _ = stop_tx.send(());
        spinner.join().expect("joined");
        assert!(
            spun > 0.0 && spun <= all,
            "thread {spun} s within process {all} s"
        );
        assert_eq!(threads_cpu_s(pid, "no-such-thread").expect("read"), 0.0);
    }
}
