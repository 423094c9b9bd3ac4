//! A hub and its edge sites in NATS terms, on loopback: a hub `nats-server` (JetStream domain
//! `hub`, taking leaf nodes) and one leaf-node server per edge (JetStream domain = the edge's
//! name). Each edge reaches the hub's leaf port through a [`Link`] the test can cut and
//! restore, so a partition leaves both sides' servers running, as on a real site whose uplink
//! fails. Stopped when dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::wait::wait_for;

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// One `nats-server -c FILE`, restartable on its ports and store.
struct Process {
    child: Option<Child>,
    conf: PathBuf,
    client: u16,
    monitor: u16,
}

impl Process {
    fn start(conf: PathBuf, client: u16, monitor: u16) -> Self {
        let mut process = Self {
            child: None,
            conf,
            client,
            monitor,
        };
        process.spawn();
        process
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.conf.with_extension("log")).unwrap();
        self.child = Some(
            Command::new("nats-server")
                .arg("-c")
                .arg(&self.conf)
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start nats-server (scripts/setup.sh --test installs it)"),
        );
        wait_for(
            "nats-server's JetStream is healthy",
            Duration::from_millis(20),
            || match http_get(self.monitor, "/healthz") {
                Ok(body) if body.contains("ok") => Ok(()),
                Ok(body) => Err(body),
                Err(err) => Err(err.to_string()),
            },
        );
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A GET on a monitoring port; the body.
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text
        .split_once("\r\n\r\n")
        .map_or(text.clone(), |(_, body)| body.to_string()))
}

/// A TCP relay standing for an edge's uplink: cut, it drops every connection and refuses new
/// ones until restored.
pub struct Link {
    port: u16,
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Link {
    fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let live: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (cut_flag, sockets) = (cut.clone(), live.clone());
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                let Ok(down) = incoming else { continue };
                if cut_flag.load(Ordering::SeqCst) {
                    drop(down);
                    continue;
                }
                let Ok(up) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut live = sockets.lock().unwrap();
                live.push(down.try_clone().unwrap());
                live.push(up.try_clone().unwrap());
                drop(live);
                pump(down.try_clone().unwrap(), up.try_clone().unwrap());
                pump(up, down);
            }
        });
        Self { port, cut, live }
    }

    /// Cuts the link: both ends see their connection fail.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for socket in self.live.lock().unwrap().drain(..) {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Lets the edge connect again.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Both);
    });
}

struct Edge {
    name: String,
    server: Process,
    link: Link,
}

/// The hub's server and the edges' leaf nodes.
pub struct EdgeNats {
    hub: Process,
    edges: Vec<Edge>,
}

impl EdgeNats {
    /// Starts the hub's server and one leaf node per name in `edges`, stores under `dir`, and
    /// waits until every edge's leaf link is up.
    pub fn start(dir: &Path, edges: &[&str]) -> Self {
        let (client, monitor, leaf) = (free_port(), free_port(), free_port());
        let conf = dir.join("hub-nats.conf");
        let store = dir.join("hub-js");
        std::fs::write(
            &conf,
            format!(
                "listen: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\nserver_name: hub\n\
                 jetstream {{ store_dir: {store:?}, domain: hub }}\n\
                 leafnodes {{ listen: 127.0.0.1:{leaf}, advertise: \"127.0.0.1:1\" }}\n"
            ),
        )
        .unwrap();
        // The hub advertises a dead address for its leaf port: a leaf node adds what the hub
        // advertises to the URLs it reconnects to, and would go around a cut link otherwise.
        let hub = Process::start(conf, client, monitor);
        let edges = edges
            .iter()
            .map(|name| {
                let link = Link::start(leaf);
                let (client, monitor) = (free_port(), free_port());
                let conf = dir.join(format!("{name}-nats.conf"));
                let store = dir.join(format!("{name}-js"));
                std::fs::write(
                    &conf,
                    format!(
                        "listen: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
                         server_name: {name}\n\
                         jetstream {{ store_dir: {store:?}, domain: {name} }}\n\
                         leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{}\" }} ] }}\n",
                        link.port
                    ),
                )
                .unwrap();
                Edge {
                    name: name.to_string(),
                    server: Process::start(conf, client, monitor),
                    link,
                }
            })
            .collect();
        let nats = Self { hub, edges };
        for i in 0..nats.edges.len() {
            nats.wait_linked(i);
        }
        nats
    }

    /// Waits until edge `i`'s leaf node is connected to the hub.
    pub fn wait_linked(&self, i: usize) {
        let edge = &self.edges[i];
        wait_for(
            &format!("edge {}'s leaf node connects to the hub", edge.name),
            Duration::from_millis(50),
            || {
                let body = http_get(edge.server.monitor, "/leafz").map_err(|e| e.to_string())?;
                if body.contains("\"leafnodes\": 1") {
                    Ok(())
                } else {
                    Err(body)
                }
            },
        );
    }

    /// The hub server's `nats://` URL.
    pub fn hub_url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.hub.client)
    }

    /// Edge `i`'s leaf node's `nats://` URL.
    pub fn edge_url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.edges[i].server.client)
    }

    /// Edge `i`'s uplink.
    pub fn link(&self, i: usize) -> &Link {
        &self.edges[i].link
    }

    /// Kills edge `i`'s leaf node (`kill -9`) and starts it again on its ports and store.
    pub fn restart_edge(&mut self, i: usize) {
        let server = &mut self.edges[i].server;
        server.kill();
        server.spawn();
    }
}
