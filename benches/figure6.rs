//! The paper's Figure 6: 1,000 clients, each with its own certificate, upload a
//! 1,000-dimensional secret vector over TLS; the servers run one program over all of
//! them; each client opens its own 1,000-dimensional result.
//!
//! ```sh
//! cargo bench --bench figure6 [-- --clients 1000 --dim 1000 --threads 16 --preset default]
//! ```
//!
//! Four in-process servers on loopback (each with its own tokio runtime and store),
//! and the clients driven by `--threads` OS threads, all on this machine. Reported:
//! connection set-up (TLS to `S1` and `S2`), all uploads with connections already
//! open, the program, and all reveals, each as wall time for all clients, with the
//! share bytes per client. The program stacks the vectors (`v`, 1,000 × 1,000), computes
//! `r_i = v_i · 2 − mean_j v_j` and sends row `i` to client `i`.

use privpy::net::client::Client;
use privpy::net::config::{ClientConfig, ClusterConfig};
use privpy::net::dev::write_dev_cluster;
use privpy::net::registry::{Job, Program, Registry};
use privpy::net::server;
use privpy::prelude::*;
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

fn client_name(i: usize) -> String {
    format!("c{i:04}")
}

/// Runs `f` on every index in `0..n` with `threads` threads; the wall time.
fn parallel<T: Send>(
    items: &mut [T],
    threads: usize,
    f: impl Fn(usize, &mut T) + Sync,
) -> Duration {
    let t = Instant::now();
    let per = items.len().div_ceil(threads.max(1)).max(1);
    std::thread::scope(|s| {
        for (k, chunk) in items.chunks_mut(per).enumerate() {
            let f = &f;
            s.spawn(move || {
                for (j, item) in chunk.iter_mut().enumerate() {
                    f(k * per + j, item);
                }
            });
        }
    });
    t.elapsed()
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let n = arg("--clients", 1000);
    let dim = arg("--dim", 1000);
    let threads = arg("--threads", 16);
    let preset = std::env::args()
        .collect::<Vec<_>>()
        .windows(2)
        .find(|w| w[0] == "--preset")
        .map_or("default".to_string(), |w| w[1].clone());
    let dir = std::env::temp_dir().join(format!("privpy-figure6-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut names: Vec<String> = (0..n).map(client_name).collect();
    names.push("collector".into());
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let t = Instant::now();
    let base = 20_000 + (std::process::id() % 5_000) as u16 * 2;
    write_dev_cluster(&dir, base, &refs, &preset, None)?;
    eprintln!(
        "{} client certificates in {:.1} s",
        names.len(),
        t.elapsed().as_secs_f64()
    );
    // Room for every client's two connections.
    let path = dir.join("cluster.toml");
    let text = std::fs::read_to_string(&path)?;
    std::fs::write(&path, format!("max_connections = {}\n{text}", 4 * n + 64))?;
    let cluster = ClusterConfig::from_file(&path)?;

    let mut programs = Registry::new();
    programs.register(
        Program::new("figure6", "1", move |s: &Session, job: &Job| {
            let v = s.input::<Array2<f64>>("v")?;
            let clients = job.count("clients");
            let r = &v * 2.0 - v.mean_axis(Axis(0));
            for i in 0..clients {
                s.output(&client_name(i), "r", &r.slice(s![i, ..]))?;
            }
            Ok(())
        })
        .input("v", [None, None])
        .arg("clients", 0.0),
    );
    let servers: Vec<_> = Role::ALL
        .into_iter()
        .map(|r| server::start(r, cluster.clone(), programs.clone()))
        .collect::<Result<_, _>>()?;

    let config = |name: &str| ClientConfig::from_file(&dir.join(format!("{name}.toml")));
    let configs: Vec<ClientConfig> = (0..n)
        .map(|i| config(&client_name(i)))
        .collect::<Result<_, _>>()?;
    // Connection set-up: TLS to S1 and S2 for every client.
    let failures = Mutex::new(Vec::new());
    let mut clients: Vec<Option<Client>> = (0..n).map(|_| None).collect();
    let connect = parallel(&mut clients, threads, |i, c| {
        match Client::connect(&configs[i]) {
            Ok(cl) => *c = Some(cl),
            Err(e) => failures.lock().unwrap().push(format!("connect {i}: {e}")),
        }
    });
    let value =
        |i: usize| Array1::from_shape_fn(dim, |j| ((i * 31 + j * 7) % 1000) as f64 * 0.01 - 5.0);
    // Uploads over open connections; each grants the collector's job the vector.
    let upload = parallel(&mut clients, threads, |i, c| {
        if let Some(cl) = c.as_mut()
            && let Err(e) = cl.upload("v", value(i).insert_axis(Axis(0)), &["collector@figure6"])
        {
            failures.lock().unwrap().push(format!("upload {i}: {e}"));
        }
    });
    let errs = std::mem::take(&mut *failures.lock().unwrap());
    if !errs.is_empty() {
        return Err(format!("{} failures, first: {}", errs.len(), errs[0]).into());
    }
    let mut collector = Client::connect(&config("collector")?)?;
    let sources: Vec<String> = (0..n).map(|i| format!("{}/v", client_name(i))).collect();
    let srefs: Vec<&str> = sources.iter().map(String::as_str).collect();
    let t = Instant::now();
    let job = collector.run_with("figure6", &[("v", &srefs)], &[("clients", n as f64)])?;
    let program = t.elapsed();
    // Reveals: each client fetches and opens its own result.
    let want_mean: Array1<f64> =
        (0..n).map(value).fold(Array1::zeros(dim), |a, v| a + v) / n as f64;
    let worst = Mutex::new(0.0f64);
    let reveal = parallel(&mut clients, threads, |i, c| {
        let Some(cl) = c.as_mut() else { return };
        match cl.fetch::<Array1<f64>>(&job, "r") {
            Ok(r) => {
                let want = value(i) * 2.0 - &want_mean;
                let d = (&r - &want).iter().fold(0.0f64, |m, d| m.max(d.abs()));
                let mut w = worst.lock().unwrap();
                *w = w.max(d);
            }
            Err(e) => failures.lock().unwrap().push(format!("fetch {i}: {e}")),
        }
    });
    let errs = std::mem::take(&mut *failures.lock().unwrap());
    if !errs.is_empty() {
        return Err(format!("{} failures, first: {}", errs.len(), errs[0]).into());
    }
    // Share bytes each way per client: one share to (from) S1 and one to (from) S2.
    let ring_bytes = match collector.config().ring() {
        privpy::RingKind::Z64 => 8,
        privpy::RingKind::Z128 => 16,
        _ => 32,
    };
    let per_client = 2 * dim * ring_bytes;
    println!(
        "| clients | dim | preset | connect (all) | uploads (open connections) | program | reveals (open connections) | share bytes per client, each way | largest error |\n|---|---|---|---|---|---|---|---|---|\n| {n} | {dim} | {preset} | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {} | {:.1e} |",
        connect.as_secs_f64(),
        upload.as_secs_f64(),
        program.as_secs_f64(),
        reveal.as_secs_f64(),
        per_client,
        *worst.lock().unwrap()
    );
    drop(clients);
    for s in servers {
        s.shutdown();
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
