//! The bot against the real simplesfu binary over loopback: one publisher and
//! two subscribers for about 3 s; both subscribers must receive the video.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// target/debug/simplesfu, built by cargo if it is missing or stale.
fn server_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug/simplesfu");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-p", "simplesfu", "--quiet"])
        .current_dir(workspace_root())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !built {
        eprintln!("warning: `cargo build -p simplesfu` failed; using {} if it exists", bin.display());
    }
    bin.exists().then_some(bin)
}

fn start_server(bin: &Path) -> (Server, String) {
    let mut child = Command::new(bin)
        .args(["--http-listen", "127.0.0.1:0", "--rtc-listen-ip", "127.0.0.1", "--rtc-port", "0", "--log-level", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("the server prints its address");
    let url = line.trim().strip_prefix("simplesfu listening on ").expect("the listening line").to_string();
    (server, url)
}

#[test]
fn one_publisher_two_subscribers_receive_video_with_little_loss() {
    let Some(bin) = server_binary() else {
        eprintln!("SKIPPED: the simplesfu binary could not be built or found (run `cargo build -p simplesfu`)");
        return;
    };
    let (_server, url) = start_server(&bin);
    let json = std::env::temp_dir().join(format!("simplesfu-bot-test-{}.json", std::process::id()));
    let started = Instant::now();
    let mut bot = Command::new(env!("CARGO_BIN_EXE_simplesfu-bot"))
        .args(["run", "--server", &url, "--publishers", "1", "--subscribers", "2", "--duration", "3", "--quiet", "--json"])
        .arg(&json)
        .spawn()
        .expect("the bot starts");
    let status = loop {
        if let Some(s) = bot.try_wait().expect("wait for the bot") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = bot.kill();
            panic!("the bot did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the bot failed: {status}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).expect("valid JSON");
    let _ = std::fs::remove_file(&json);

    assert_eq!(report["peers_joined"], 3, "{report:#}");
    assert_eq!(report["expected_streams"], 2, "two subscribers, one video each");
    assert_eq!(report["receiving_streams"], 2, "both subscribers receive video: {report:#}");
    assert_eq!(report["receivers_without_media"], 0);
    let video = &report["video"];
    assert!(video["packets"].as_u64().unwrap_or(0) > 2 * 100, "about 200 packets/s for 3 s each: {video:#}");
    let loss = video["loss_pct"].as_f64().expect("loss");
    assert!(loss < 5.0, "video loss {loss}% is too high: {video:#}");
    assert!(video["latency"]["p50_ms"].as_f64().expect("latency") > 0.0);
}
