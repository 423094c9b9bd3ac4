//! Three (or more) real `nats-server` processes clustered on loopback with JetStream, for
//! cluster-mode tests: each can be killed (`kill -9`) and started again on its ports and store.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::server::get_status;
use crate::wait::wait_for;

struct Member {
    child: Option<Child>,
    args: Vec<String>,
    client: u16,
    monitor: u16,
    log: PathBuf,
}

/// A NATS cluster whose servers route to each other; stopped when dropped.
pub struct NatsCluster {
    members: Vec<Member>,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

impl NatsCluster {
    /// Starts `size` servers with their stores under `dir`, and waits until JetStream is
    /// healthy on every one (a meta leader is elected).
    pub fn start(dir: &Path, size: usize) -> Self {
        let ports: Vec<(u16, u16, u16)> = (0..size)
            .map(|_| (free_port(), free_port(), free_port()))
            .collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route, _)| format!("nats://127.0.0.1:{route}"))
            .collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, route, monitor))| {
                let store = dir.join(format!("nats-{i}"));
                std::fs::create_dir_all(&store).unwrap();
                let args = vec![
                    "-js".to_string(),
                    "-a".into(),
                    "127.0.0.1".into(),
                    "-p".into(),
                    client.to_string(),
                    "-m".into(),
                    monitor.to_string(),
                    "-n".into(),
                    format!("nats-{i}"),
                    "--cluster_name".into(),
                    "kindling-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{route}"),
                    "--routes".into(),
                    routes.join(","),
                    "-sd".into(),
                    store.display().to_string(),
                ];
                Member {
                    child: None,
                    args,
                    client: *client,
                    monitor: *monitor,
                    log: dir.join(format!("nats-{i}.log")),
                }
            })
            .collect();
        let mut cluster = Self { members };
        for i in 0..size {
            cluster.spawn(i);
        }
        for i in 0..size {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let member = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .expect("open the nats-server log");
        let child = Command::new("nats-server")
            .args(&member.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server (scripts/setup.sh --test installs it)");
        member.child = Some(child);
    }

    /// Waits until server `i` reports JetStream healthy: every stream and consumer it holds
    /// is current.
    pub fn wait_healthy(&self, i: usize) {
        self.wait_health(i, "/healthz", "JetStream healthy");
    }

    /// Waits until server `i`'s JetStream is current with the meta leader (its streams and
    /// consumers may still be catching up: with nats-server 2.9.10 the full check was seen
    /// to stay 503 for minutes for the queue's consumer on a restarted server, while the
    /// cluster served).
    pub fn wait_joined(&self, i: usize) {
        self.wait_health(
            i,
            "/healthz?js-server-only=true",
            "JetStream current with the meta leader",
        );
    }

    fn wait_health(&self, i: usize, path: &str, what: &str) {
        let addr = format!("127.0.0.1:{}", self.members[i].monitor)
            .parse()
            .unwrap();
        wait_for(
            &format!("nats-server {i} to report {what}"),
            Duration::from_millis(50),
            || match get_status(addr, path) {
                Ok(200) => Ok(()),
                Ok(code) => Err(format!(
                    "status {code}; its log ends:\n{}",
                    self.log_tail(i)
                )),
                Err(err) => Err(err.to_string()),
            },
        );
    }

    fn log_tail(&self, i: usize) -> String {
        let log = self.log(i);
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Every server's client URL, comma-separated (what `--cluster` takes).
    pub fn urls(&self) -> String {
        (0..self.members.len())
            .map(|i| self.url(i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Server `i`'s client URL.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.members[i].client)
    }

    /// Kills server `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts server `i` again on its ports and store, and waits until it has joined the
    /// meta group (which needs a quorum of the others up).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_joined(i);
    }

    /// Kills every server.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts every server again, then waits until all have joined the meta group (what
    /// the cluster's clients need next is theirs to wait for).
    pub fn restart_all(&mut self) {
        self.kill_all();
        for i in 0..self.members.len() {
            self.spawn(i);
        }
        for i in 0..self.members.len() {
            self.wait_joined(i);
        }
    }

    /// Server `i`'s log.
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(&self.members[i].log).unwrap_or_default()
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        self.kill_all();
        if std::thread::panicking() {
            for i in 0..self.members.len() {
                eprintln!("--- nats-server {i} log ---\n{}", self.log(i));
            }
        }
    }
}
