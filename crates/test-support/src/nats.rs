//! A real `nats-server` with JetStream (Debian's, installed by `scripts/setup.sh --test`) on a
//! free port, for tests of the NATS triggers and of a cluster node cut off from NATS; stopped
//! when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait::wait_for;

/// A running `nats-server -js`.
pub struct NatsServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts one with its JetStream store in `dir` and waits until it answers `PING`.
    pub fn start(dir: &Path) -> Self {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().unwrap().port()
        };
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let server = Self {
            child: spawn(addr, dir),
            addr,
            dir: dir.to_path_buf(),
        };
        server.wait_ready();
        server
    }

    /// Kills the server (SIGKILL), keeping its port and store for [`NatsServer::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on its port and store, and waits until it answers `PING`.
    pub fn restart(&mut self) {
        self.kill();
        self.child = spawn(self.addr, &self.dir);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        wait_for(
            "nats-server answers PING",
            Duration::from_millis(20),
            || self.ping().map_err(|err| err.to_string()),
        );
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    fn ping(&self) -> std::io::Result<()> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?; // INFO {...}
        stream.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")?;
        line.clear();
        reader.read_line(&mut line)?;
        if line.starts_with("PONG") {
            Ok(())
        } else {
            Err(std::io::Error::other(line))
        }
    }
}

fn spawn(addr: SocketAddr, dir: &Path) -> Child {
    Command::new("nats-server")
        .args([
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            &addr.port().to_string(),
            "-sd",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server (scripts/setup.sh --test installs it)")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
