//! ICE-TCP at the file descriptor limit: `accept` fails at once while
//! connections wait in the backlog, and the listener stays readable, so a
//! loop that retried at once would spin the worker thread. It backs off
//! instead, and takes the waiting connections once descriptors are free.
//!
//! Alone in its file: it lowers the process's descriptor limit.

mod common;

use common::*;
use simplesfu_engine::{IceTcpLimits, WorkerSettings, WorkerStats};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);
/// The pause after a failed accept, as the engine documents it.
const BACKOFF: Duration = Duration::from_millis(100);
const CLIENTS: usize = 6;

fn nofile() -> libc::rlimit {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit we own.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
        0,
        "getrlimit"
    );
    limit
}

fn set_nofile(limit: libc::rlimit) {
    // SAFETY: setrlimit reads one rlimit we own.
    assert_eq!(
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) },
        0,
        "setrlimit"
    );
}

fn highest_open_fd() -> u64 {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .expect("some descriptor is open")
}

fn stats_until(sfu: &Sfu, done: impl Fn(&WorkerStats) -> bool) -> WorkerStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = sfu.block(sfu.worker.stats()).expect("worker runs");
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn at_the_descriptor_limit_the_listener_backs_off_and_recovers() {
    let sfu = Sfu::start_with(WorkerSettings {
        ice_tcp_limits: IceTcpLimits {
            max_unauthenticated_per_source: 1000,
            auth_timeout: Duration::from_secs(60),
            ..IceTcpLimits::default()
        },
        ..WorkerSettings::new("worker-0", LOOPBACK, 0, LOOPBACK)
    });
    let server = sfu.worker.tcp_addr().expect("ICE-TCP is on");
    // The worker thread builds its runtime (descriptors of its own) before it answers.
    sfu.block(sfu.worker.stats()).expect("worker runs");
    let saved = nofile();

    // Every descriptor number below the new limit is taken: by what the
    // process had, and by placeholders the test frees one at a time.
    set_nofile(libc::rlimit {
        rlim_cur: highest_open_fd() + 16,
        rlim_max: saved.rlim_max,
    });
    let mut placeholders = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        placeholders.push(file);
    }
    // Each freed number goes to a client socket or to the server's accept;
    // either way the numbers run out with connections left in the backlog.
    let mut clients = Vec::new();
    while clients.len() < CLIENTS {
        let Some(placeholder) = placeholders.pop() else {
            break;
        };
        drop(placeholder);
        if let Ok(stream) = std::net::TcpStream::connect_timeout(&server, Duration::from_secs(1)) {
            clients.push(stream);
        }
    }
    assert_eq!(
        clients.len(),
        CLIENTS,
        "the clients connected (the kernel completes the handshake)"
    );

    let failing = stats_until(&sfu, |s| s.tcp_accept_errors > 0);
    assert!(
        failing.tcp_accept_errors > 0,
        "accept fails at the descriptor limit"
    );
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let later = stats_until(&sfu, |_| true);
    let window = started.elapsed();
    let retries = later.tcp_accept_errors - failing.tcp_accept_errors;
    let allowed = (window.as_millis() / BACKOFF.as_millis()) as u64 + 2;
    assert!(
        retries <= allowed,
        "{retries} failed accepts in {window:?}: one per back-off at most ({allowed})"
    );

    set_nofile(saved);
    let recovered = stats_until(&sfu, |s| s.tcp_connections == clients.len() as u64);
    assert_eq!(
        recovered.tcp_connections,
        clients.len() as u64,
        "the waiting connections are taken once descriptors are free"
    );
}
