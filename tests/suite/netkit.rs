//! Helpers for the tests over real sockets, shared by the integration suite
//! (`tests/suite/net.rs`) and the process tests of `privpy-server`
//! (`privpy-server/tests/processes.rs`, which includes this file by path).
#![allow(dead_code)]

use privpy::net::client::Client;
use privpy::net::config::{ClientConfig, ClusterConfig};
use privpy::net::dev::write_dev_cluster;
use privpy::net::registry::Registry;
use privpy::net::server::{self, Listeners, ServerHandle};
use privpy::prelude::*;
use privpy::programs::stock;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// Six consecutive free ports on 127.0.0.1.
pub fn free_base() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    loop {
        let k = NEXT.fetch_add(1, Ordering::SeqCst);
        // Below the kernel's ephemeral range (32768–60999 by default), so that an
        // outgoing connection cannot take a port between this check and the bind.
        let base = 20_000
            + ((std::process::id() % 2000) as u16)
                .wrapping_mul(17)
                .wrapping_add(k.wrapping_mul(6))
                % 12_000;
        let all_free = (0..6).all(|d| TcpListener::bind(("127.0.0.1", base + d)).is_ok());
        if all_free {
            return base;
        }
    }
}

/// A cluster configuration in a temporary directory, and in-process servers.
pub struct Net {
    pub dir: PathBuf,
    pub cfg: ClusterConfig,
    pub servers: Vec<Option<ServerHandle>>,
    /// Each role's listeners, bound to port 0 before the configuration was written
    /// (taken by the first start; a restart binds the configured ports again).
    pub bound: Vec<Option<Listeners>>,
}

impl Net {
    /// Certificates for `clients`; the cluster accepts `accepted` (all when `None`).
    /// The in-process servers' listeners are bound to port 0 first, so no test races
    /// another process for a port.
    pub fn new(tag: &str, clients: &[&str], accepted: Option<&[&str]>, timeout_secs: f64) -> Net {
        let sockets: Vec<TcpListener> = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        let mut net = Self::configure_ports(tag, clients, accepted, timeout_secs, Some(&ports));
        let mut it = sockets.into_iter();
        let peers: Vec<TcpListener> = it.by_ref().take(4).collect();
        let mut client: Vec<Option<TcpListener>> = it.map(Some).collect();
        client.extend([None, None]);
        net.bound = peers
            .into_iter()
            .zip(client)
            .map(|(p, c)| Some(Listeners::from_std(p, c)))
            .collect();
        net
    }

    /// [`Net::new`] on six consecutive free ports that nothing holds: for servers
    /// run as separate processes, which bind the ports themselves.
    pub fn with_free_ports(
        tag: &str,
        clients: &[&str],
        accepted: Option<&[&str]>,
        timeout_secs: f64,
    ) -> Net {
        Self::configure_ports(tag, clients, accepted, timeout_secs, None)
    }

    fn configure_ports(
        tag: &str,
        clients: &[&str],
        accepted: Option<&[&str]>,
        timeout_secs: f64,
        ports: Option<&[u16]>,
    ) -> Net {
        // Unique per Net, even if two tests pick the same tag.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("privpy-net-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // With given ports: placeholders 1..=6, replaced below.
        let base = if ports.is_some() { 1 } else { free_base() };
        write_dev_cluster(&dir, base, clients, "default", None).unwrap();
        let set_ports = |text: String| -> String {
            let Some(ports) = ports else { return text };
            let mut t = text;
            for (k, p) in ports.iter().enumerate() {
                t = t.replace(
                    &format!("127.0.0.1:{}\"", k + 1),
                    &format!("127.0.0.1:{p}\""),
                );
            }
            t
        };
        for c in clients {
            let path = dir.join(format!("{c}.toml"));
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, set_ports(text)).unwrap();
        }
        let path = dir.join("cluster.toml");
        let mut text = set_ports(std::fs::read_to_string(&path).unwrap());
        text = text.replace(
            "timeout_secs = 30",
            &format!("timeout_secs = {timeout_secs}"),
        );
        if let Some(acc) = accepted {
            let line = text
                .lines()
                .find(|l| l.starts_with("clients = "))
                .unwrap()
                .to_string();
            let list: Vec<String> = acc.iter().map(|c| format!("{c:?}")).collect();
            text = text.replace(&line, &format!("clients = [{}]", list.join(", ")));
        }
        std::fs::write(&path, text).unwrap();
        let cfg = ClusterConfig::from_file(&path).unwrap();
        Net {
            dir,
            cfg,
            servers: (0..4).map(|_| None).collect(),
            bound: (0..4).map(|_| None).collect(),
        }
    }

    /// Starts `role`, retrying while a killed predecessor still holds the store.
    pub fn start(&mut self, role: Role, programs: Registry) {
        if let Some(l) = self.bound[role.index()].take() {
            let h = server::start_with(role, self.cfg.clone(), programs, l)
                .unwrap_or_else(|e| panic!("{role} did not start: {e}"));
            self.servers[role.index()] = Some(h);
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match server::start(role, self.cfg.clone(), programs.clone()) {
                Ok(h) => {
                    self.servers[role.index()] = Some(h);
                    return;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{role} did not start: {e}"),
            }
        }
    }

    pub fn start_all(&mut self) {
        for role in Role::ALL {
            self.start(role, stock());
        }
    }

    pub fn kill(&mut self, role: Role) {
        if let Some(h) = self.servers[role.index()].take() {
            h.kill();
        }
    }

    pub fn client_config(&self, name: &str) -> ClientConfig {
        ClientConfig::from_file(&self.dir.join(format!("{name}.toml"))).unwrap()
    }

    pub fn client(&self, name: &str) -> Client {
        Client::connect(&self.client_config(name)).unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for s in &mut self.servers {
            if let Some(h) = s.take() {
                h.kill();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Net {
    /// The log file of `role`'s server process.
    pub fn log(&self, role: Role) -> PathBuf {
        self.dir.join(format!("{}.log", role.name()))
    }

    /// A client of `name`, retrying while the cluster comes up (20 s at most).
    pub fn connect_retrying(&self, name: &str) -> Client {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match Client::connect(&self.client_config(name)) {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("cluster did not come up: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Restarts nothing; rewrites `cluster.toml` with `extra` lines at the top and
    /// reloads it (call before starting servers).
    pub fn configure(&mut self, extra: &str) {
        let path = self.dir.join("cluster.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{extra}\n{text}")).unwrap();
        self.cfg = ClusterConfig::from_file(&path).unwrap();
    }
}

impl Net {
    /// Appends `extra` to `cluster.toml` (tables such as `[[models]]`) and reloads it.
    pub fn configure_tail(&mut self, extra: &str) {
        let path = self.dir.join("cluster.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("{text}\n{extra}\n")).unwrap();
        self.cfg = ClusterConfig::from_file(&path).unwrap();
    }

    /// Serves `role`'s metrics on a free loopback port; returns its address.
    pub fn serve_metrics(&mut self, role: Role) -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        self.cfg.servers[role.index()].metrics_addr = Some(addr);
        addr
    }
}

/// One scrape of a metrics endpoint (HTTP/1.1 GET): the body.
pub fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

/// Scrapes until the sample `line_start` reads `want` (at most 5 s; metrics are
/// updated as a job ends, which may be just after its client got the answer), and
/// returns the last scrape.
pub fn scrape_until(addr: std::net::SocketAddr, line_start: &str, want: f64) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = scrape(addr);
        if sample(&text, line_start) == Some(want) || std::time::Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The value of the sample `line_start` (metric name with labels) in a scrape.
pub fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start) && l[line_start.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub fn rel_err(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    let d = (a - b).mapv(|v| v * v).sum().sqrt();
    d / b.mapv(|v| v * v).sum().sqrt().max(1e-12)
}

/// A registered program on the in-process engines: four threads, or cleartext.
pub fn run_local(
    cluster: LocalCluster,
    program: &str,
    inputs: &[(&str, ArrayD<f64>)],
    args: &[(String, f64)],
    outputs: &[&str],
) -> (Vec<ArrayD<f64>>, RunOutput) {
    let mut cluster = cluster;
    let alice = cluster.client("alice");
    for (n, v) in inputs {
        cluster.upload(&alice, n, v).unwrap();
    }
    let programs = stock();
    let p = programs.get(program).unwrap();
    let run = cluster.run(|s| p.call(s, "alice", args)).unwrap();
    let opened = outputs
        .iter()
        .map(|o| run.open::<ArrayD<f64>>(&alice, o).unwrap())
        .collect();
    (opened, run)
}
