//! The same operations over loopback TLS (four `privpy-net` servers, one process)
//! and over the in-process channels of `LocalCluster`; and the round-trip time of a
//! 10-byte message between two servers over each transport.
//!
//! Over TLS, each measurement is one job that repeats the operation `iters` times;
//! as for the in-process runs, the time runs from the first server's start of the
//! loop inside the program to the last server's end of it (the servers run in this
//! process and report through a shared span), without the job's set-up (connecting
//! the four servers, loading inputs). Bytes and rounds per operation are printed beside each benchmark.
//!
//! `cargo bench --bench net`

mod common;

use common::{cluster_with, no_setup, timed_run};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use privpy::net::client::Client;
use privpy::net::config::{ClientConfig, ClusterConfig};
use privpy::net::dev::write_dev_cluster;
use privpy::net::link::{Conn, NetTransport};
use privpy::net::mux::Link;
use privpy::net::registry::{Job, Program, Registry};
use privpy::net::server::{self, ServerHandle};
use privpy::net::tls::{ServerTls, dev_certificates, dial_name};
use privpy::prelude::*;
use privpy::transport::{Message, Transport, channel_mesh};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The last job's loop span over all four servers (they run in this process): the
/// earliest start and the latest end.
static SPAN: Mutex<(Option<Instant>, Option<Instant>)> = Mutex::new((None, None));

fn timed(
    s: &Session,
    job: &Job,
    op: impl Fn(&Priv<Array1<f64>>, &Priv<Array1<f64>>),
) -> Result<()> {
    let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
    let t = Instant::now();
    for _ in 0..job.count("reps") {
        op(&x, &y);
    }
    let end = Instant::now();
    let mut span = SPAN.lock().expect("no poisoning");
    span.0 = Some(span.0.map_or(t, |a| a.min(t)));
    span.1 = Some(span.1.map_or(end, |b| b.max(end)));
    Ok(())
}

fn programs() -> Registry {
    let mut r = Registry::new();
    r.register(
        Program::new("mul", "1", |s: &Session, job: &Job| {
            timed(s, job, |x, y| {
                std::hint::black_box(x * y);
            })
        })
        .input("x", [None])
        .input("y", [None])
        .arg("reps", 1.0),
    );
    r.register(
        Program::new("lt", "1", |s: &Session, job: &Job| {
            timed(s, job, |x, y| {
                std::hint::black_box(x.lt(y));
            })
        })
        .input("x", [None])
        .input("y", [None])
        .arg("reps", 1.0),
    );
    r
}

struct TlsCluster {
    dir: PathBuf,
    servers: Vec<ServerHandle>,
    client: Client,
}

impl TlsCluster {
    fn new(preset: &str, base: u16) -> TlsCluster {
        let dir =
            std::env::temp_dir().join(format!("privpy-bench-net-{preset}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write_dev_cluster(&dir, base, &["alice"], preset, None).expect("dev cluster");
        let cfg = ClusterConfig::from_file(&dir.join("cluster.toml")).expect("config");
        let servers = Role::ALL
            .into_iter()
            .map(|r| server::start(r, cfg.clone(), programs()).expect("server starts"))
            .collect();
        let client = Client::connect(
            &ClientConfig::from_file(&dir.join("alice.toml")).expect("client config"),
        )
        .expect("client connects");
        TlsCluster {
            dir,
            servers,
            client,
        }
    }

    /// The loop time of a job with `reps` repetitions, from the first server's start
    /// to the last server's end, and the job's traffic (all servers).
    fn job(&mut self, program: &str, reps: u64) -> (Duration, u64, u64) {
        *SPAN.lock().expect("no poisoning") = (None, None);
        let job = self
            .client
            .run_with(
                program,
                &[("x", &["x"]), ("y", &["y"])],
                &[("reps", reps as f64)],
            )
            .expect("job runs");
        let bytes = job.stats.iter().map(|s| s.total_bytes_sent()).sum();
        let rounds = job.stats.iter().map(|s| s.rounds).max().unwrap_or(0);
        let span = match *SPAN.lock().expect("no poisoning") {
            (Some(a), Some(b)) => b - a,
            _ => Duration::ZERO,
        };
        (span, bytes, rounds)
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        for s in self.servers.drain(..) {
            s.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ops(c: &mut Criterion) {
    for (preset, cfg, base) in [
        ("fast", Config::fast(), 27_300),
        ("default", Config::default(), 27_310),
    ] {
        let mut net = TlsCluster::new(preset, base);
        for n in [1usize, 100_000] {
            let x = ArrayD::from_shape_fn(vec![n], |i| (i[0] % 1000) as f64 * 0.001 - 0.5);
            let y = x.mapv(|v| 0.25 - v);
            net.client.upload("x", &x, &[]).expect("upload");
            net.client.upload("y", &y, &[]).expect("upload");
            let local = cluster_with(cfg, &[("x", x), ("y", y)]);
            for program in ["mul", "lt"] {
                let (_, b0, r0) = net.job(program, 0);
                let (_, b1, r1) = net.job(program, 1);
                eprintln!(
                    "{program}/n={n}/{preset}: TLS {} bytes in {} rounds per operation",
                    b1 - b0,
                    r1 - r0,
                );
                let mut g = c.benchmark_group(format!("{program}/n={n}/{preset}"));
                g.throughput(Throughput::Elements(n as u64));
                if n > 1 {
                    g.sample_size(10).measurement_time(Duration::from_secs(8));
                }
                let op = |s: &Session| {
                    let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
                    if program == "mul" {
                        std::hint::black_box(&x * &y);
                    } else {
                        std::hint::black_box(x.lt(&y));
                    }
                    Ok(())
                };
                g.bench_function(BenchmarkId::from_parameter("channels"), |b| {
                    b.iter_custom(|iters| timed_run(&local, iters, no_setup, op).0)
                });
                g.bench_function(BenchmarkId::from_parameter("tls"), |b| {
                    b.iter_custom(|iters| net.job(program, iters).0)
                });
                g.finish();
            }
        }
    }
}

/// Two servers' transports over one TLS connection (S1 dials S2).
fn tls_pair(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (NetTransport, NetTransport) {
    dev_certificates(dir, &[]).expect("certificates");
    let p = |f: &str| dir.join(f);
    let tls1 = ServerTls::new(
        &p("s1.pem"),
        &p("s1.key"),
        &p("server-ca.pem"),
        &p("server-ca.pem"),
    )
    .expect("tls");
    let tls2 = ServerTls::new(
        &p("s2.pem"),
        &p("s2.key"),
        &p("server-ca.pem"),
        &p("server-ca.pem"),
    )
    .expect("tls");
    let (c1, c2) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accept = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            tcp.set_nodelay(true).expect("nodelay");
            let s = tokio_rustls::TlsAcceptor::from(tls2.peer_acceptor)
                .accept(tcp)
                .await
                .expect("handshake");
            Conn::new(tokio_rustls::TlsStream::Server(s), 1 << 20)
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let s = tokio_rustls::TlsConnector::from(tls1.peer_connector)
            .connect(dial_name(Role::S2), tcp)
            .await
            .expect("handshake");
        (
            Conn::new(tokio_rustls::TlsStream::Client(s), 1 << 20),
            accept.await.expect("accepted"),
        )
    });
    let t = Duration::from_secs(10);
    let _in_rt = rt.enter();
    let l1 = Link::start(c1, Role::S2, t, None);
    let l2 = Link::start(c2, Role::S1, t, None);
    let (s1, s2) = (l1.open(1).expect("open"), l2.open(1).expect("open"));
    let t1 = NetTransport::new(Role::S1, [None, Some(s1), None, None], t, rt.handle());
    let t2 = NetTransport::new(Role::S2, [Some(s2), None, None, None], t, rt.handle());
    (t1, t2)
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip/10_bytes");
    let msg = || Message {
        op: 0,
        round: 0,
        payload: vec![7; 10],
    };
    let ping = |a: &mut dyn Transport, b: &mut dyn Transport, iters: u64| -> Duration {
        std::thread::scope(|sc| {
            sc.spawn(|| {
                for _ in 0..iters {
                    let m = b.recv(Role::S1).expect("ping");
                    b.send(Role::S1, m).expect("pong");
                }
            });
            let t = Instant::now();
            for _ in 0..iters {
                a.send(Role::S2, msg()).expect("send");
                a.recv(Role::S2).expect("recv");
            }
            t.elapsed()
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("privpy-bench-rtt-{}", std::process::id()));
    let (mut t1, mut t2) = tls_pair(&rt, &dir);
    g.bench_function("tls", |b| {
        b.iter_custom(|iters| ping(&mut t1, &mut t2, iters))
    });
    let [mut a, mut b2, _, _] = channel_mesh(Duration::from_secs(10));
    g.bench_function("channels", |b| {
        b.iter_custom(|iters| ping(&mut a, &mut b2, iters))
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, round_trip, ops);
criterion_main!(benches);
