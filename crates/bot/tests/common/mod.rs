//! What the tests against the real server share: the `simplesfu` binary
//! (built by cargo when missing or stale), started on loopback with a free
//! port and killed on drop, and a bot run against it that returns the
//! bot's JSON report.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// target/debug/simplesfu, built by cargo if it is missing or stale.
fn server_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let bin = target.join("debug/simplesfu");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-p", "simplesfu", "--quiet"])
        .current_dir(workspace_root())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !built {
        eprintln!(
            "warning: `cargo build -p simplesfu` failed; using {} if it exists",
            bin.display()
        );
    }
    bin.exists().then_some(bin)
}

/// The server on loopback; None (after saying why) if it cannot be built.
pub fn start_server() -> Option<Server> {
    start_server_with(&[], &[])
}

/// The server on loopback with more arguments and environment variables.
#[allow(dead_code)] // not every test binary starts nodes of a cluster
pub fn start_server_with(args: &[&str], env: &[(&str, &str)]) -> Option<Server> {
    let Some(bin) = server_binary() else {
        eprintln!("SKIPPED: the simplesfu binary could not be built or found (run `cargo build -p simplesfu`)");
        return None;
    };
    let mut child = Command::new(bin)
        .args([
            "--http-listen",
            "127.0.0.1:0",
            "--rtc-listen-ip",
            "127.0.0.1",
            "--rtc-port",
            "0",
            "--log-level",
            "warn",
        ])
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the server starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("the server prints its address");
    let url = line
        .trim()
        .strip_prefix("simplesfu listening on ")
        .expect("the listening line")
        .to_string();
    Some(Server { child, url })
}

/// The server's `/health` at `url`, as JSON.
#[allow(dead_code)] // not every test binary reads it
pub fn health(url: &str) -> serde_json::Value {
    use simplesfu_bot::http::{self, HttpUrl};
    let url = HttpUrl::parse(&format!("{url}/health")).expect("health URL");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let r = rt
        .block_on(http::request("GET", &url, &[], b"", Duration::from_secs(5)))
        .expect("/health answers");
    assert_eq!(r.status, 200, "{}", r.describe());
    serde_json::from_slice(&r.body).expect("JSON health")
}

/// `simplesfu-bot run --server <url> --quiet <args>`, which must succeed
/// within 60 s; its JSON report.
pub fn run_bot(server: &Server, args: &[&str]) -> serde_json::Value {
    run_bot_at(&server.url, args)
}

/// Like [`run_bot`], with `--server` as given (several nodes: `a,b`).
pub fn run_bot_at(servers: &str, args: &[&str]) -> serde_json::Value {
    let json = std::env::temp_dir().join(format!(
        "simplesfu-bot-test-{}-{:?}.json",
        std::process::id(),
        std::thread::current().id()
    ));
    let started = Instant::now();
    let mut bot = Command::new(env!("CARGO_BIN_EXE_simplesfu-bot"))
        .args(["run", "--server", servers, "--quiet", "--json"])
        .arg(&json)
        .args(args)
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
    let report = serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report"))
        .expect("valid JSON");
    let _ = std::fs::remove_file(&json);
    report
}
