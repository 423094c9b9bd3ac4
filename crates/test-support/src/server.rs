//! A real `kindling serve` process on a real port, for end-to-end tests.
//!
//! The server is started with `--listen 127.0.0.1:0`; the harness reads the address it prints
//! and then polls `/readyz` until the node has loaded its functions. Its log goes to a file
//! in the test's directory, printed when a test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to start and load its functions before a test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `kindling serve`.
pub struct Server {
    binary: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
    data_dir: PathBuf,
    log: PathBuf,
}

impl Server {
    /// Starts `binary serve` on a free port with its data in `data_dir`, plus `args`, and
    /// waits until it is ready.
    pub fn start(binary: &Path, data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let server = Self::spawn(binary, data_dir, args, envs);
        server.wait_ready();
        server
    }

    /// Starts `binary serve` as [`Server::start`] does, returning once it has bound its port,
    /// ready or not.
    pub fn spawn(binary: &Path, data_dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Self {
        let log = data_dir.with_extension("log");
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("open the server log");
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("KINDLING_LOG", "info,kindling=debug")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::piped())
            .stderr(log_file);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("spawn kindling serve");

        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => {
                    let status = child.wait().ok();
                    panic!(
                        "kindling serve exited ({status:?}) before printing its address; log:\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
            };
            if let Some(url) = line
                .strip_prefix("kindling: listening on http://")
                .or_else(|| line.strip_prefix("kindling: listening on https://"))
            {
                break url
                    .trim()
                    .parse()
                    .expect("a socket address after `listening on`");
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});

        Self {
            binary: binary.to_path_buf(),
            child: Some(child),
            addr,
            data_dir: data_dir.to_path_buf(),
            log,
        }
    }

    /// Restarts the server on the same data directory (a new port).
    pub fn restart(mut self, args: &[&str], envs: &[(&str, &str)]) -> Self {
        self.stop();
        Self::start(&self.binary.clone(), &self.data_dir.clone(), args, envs)
    }

    /// The address the server bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// The log the server has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The node's first admin token (from `admin.token` in its data directory), if it made one.
    pub fn token(&self) -> Option<String> {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .ok()
            .map(|t| t.trim().to_string())
    }

    /// `Authorization: Bearer ...` with the node's admin token, for raw HTTP requests to the
    /// admin API.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token().unwrap_or_default())
    }

    /// Runs the CLI against this server as its admin: `kindling ARGS`, with `KINDLING_SERVER`
    /// and `KINDLING_DATA_DIR` pointing at it (so the CLI finds the admin token as a user's
    /// would).
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_with(args, &[])
    }

    /// Runs the CLI with extra environment variables (`KINDLING_TOKEN`, say).
    pub fn cli_with(&self, args: &[&str], envs: &[(&str, &str)]) -> CliOutput {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("KINDLING_SERVER", self.url(""))
            .env("KINDLING_DATA_DIR", &self.data_dir)
            .env_remove("KINDLING_TOKEN")
            .env_remove("KINDLING_JSON");
        for (key, value) in envs {
            command.env(key, value);
        }
        let output = command.output().expect("run the kindling CLI");
        CliOutput::from(output)
    }

    /// Kills the server with SIGKILL, as a crash or an OOM kill would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the server to shut down (SIGTERM) and waits for it to exit.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        signal(child.id(), "TERM");
        child.wait().ok()
    }

    /// Sends SIGTERM without waiting; [`Server::wait`] collects the exit.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            signal(child.id(), "TERM");
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.take()?.wait().ok()
    }

    fn wait_ready(&self) {
        let started = Instant::now();
        let mut delay = Duration::from_millis(5);
        loop {
            if let Ok(200) = get_status(self.addr, "/readyz") {
                return;
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "kindling serve did not become ready within {START_TIMEOUT:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("--- kindling serve log ---\n{}", self.log());
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

/// A plain HTTP/1.1 GET that returns the status code.
pub fn get_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))
}

/// What a CLI run printed and how it exited.
#[derive(Debug)]
pub struct CliOutput {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "the CLI failed: {self:#?}");
        &self.stdout
    }

    /// Parses stdout as JSON, asserting success.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|err| panic!("not JSON ({err}): {self:#?}"))
    }
}

impl From<Output> for CliOutput {
    fn from(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
