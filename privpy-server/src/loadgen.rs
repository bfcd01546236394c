//! `privpy-server loadgen`: drives many concurrent clients against a running
//! cluster and reports throughput, latency percentiles, batch sizes and bytes.
//!
//! Workloads:
//! - `stats`: [`Client::call`] of the stock `stats` program on 8 fresh values
//!   (a tiny job); every answer is checked against the cleartext statistics.
//! - `mlp`, `lenet5`: [`Client::infer`] on the deployed stock models
//!   (`mnist-mlp`, `mnist-lenet5`; `privpy-server dev` deploys them, owned by its
//!   first client), one MNIST image per request; the weights are uploaded first (as
//!   the owner), and every prediction is checked against the cleartext engine's.
//!
//! Every client thread has its own connections (one identity may hold many).

use indicatif::{ProgressBar, ProgressStyle};
use privpy_ml::prelude::*;
use privpy_net::client::{Called, Client, ClientError};
use privpy_net::config::ClientConfig;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What to run.
pub struct Options {
    /// The client configuration to connect with.
    pub client: std::path::PathBuf,
    /// Concurrent clients.
    pub clients: usize,
    /// Requests in all.
    pub requests: usize,
    /// `stats`, `mlp` or `lenet5`.
    pub workload: String,
    /// Where the stock models are (`models/`).
    pub models: std::path::PathBuf,
}

/// One finished request.
struct Sample {
    latency: Duration,
    batch: u32,
    bytes: u64,
}

/// The cleartext answer a request must match, and how to send it.
#[derive(Clone)]
enum Work {
    Stats,
    Model {
        name: &'static str,
        images: Arc<Array2<f64>>,
        digits: Arc<Vec<f64>>,
    },
}

pub fn run(o: &Options) -> Result<(), String> {
    if o.clients == 0 || o.requests == 0 {
        return Err("--clients and --requests must be at least 1".into());
    }
    let cfg = ClientConfig::from_file(&o.client).map_err(|e| e.to_string())?;
    let work = match o.workload.as_str() {
        "stats" => Work::Stats,
        "mlp" => model_work(&cfg, &o.models, "mnist-mlp", "mnist-mlp.safetensors")?,
        "lenet5" => model_work(&cfg, &o.models, "mnist-lenet5", "mnist-lenet5.safetensors")?,
        other => return Err(format!("unknown workload {other:?}: stats, mlp or lenet5")),
    };
    println!(
        "connecting {} clients as {} ({} requests of {})",
        o.clients, cfg.name, o.requests, o.workload
    );
    let mut clients = Vec::new();
    for _ in 0..o.clients {
        clients.push(Client::connect(&cfg).map_err(|e| e.to_string())?);
    }
    let bar = ProgressBar::new(o.requests as u64);
    if let Ok(style) =
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    let next = AtomicUsize::new(0);
    let wrong = AtomicUsize::new(0);
    let failed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let samples: Mutex<Vec<Sample>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|sc| {
        for (k, mut c) in clients.into_iter().enumerate() {
            let (next, wrong, failed, samples, bar, work) =
                (&next, &wrong, &failed, &samples, &bar, work.clone());
            let total = o.requests;
            sc.spawn(move || {
                let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ (k as u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        return;
                    }
                    let t = Instant::now();
                    let outcome = one(&mut c, &work, i, &mut seed);
                    let latency = t.elapsed();
                    match outcome {
                        Ok((called, right)) => {
                            if !right {
                                wrong.fetch_add(1, Ordering::Relaxed);
                            }
                            let bytes: u64 = called
                                .stats
                                .iter()
                                .map(|s| s.bytes_sent.iter().sum::<u64>())
                                .sum();
                            if let Ok(mut s) = samples.lock() {
                                s.push(Sample {
                                    latency,
                                    batch: called.batch,
                                    bytes,
                                });
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.push(e.to_string());
                            }
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    let wall = started.elapsed();
    bar.finish_and_clear();
    let samples = samples
        .into_inner()
        .map_err(|_| "a client thread panicked")?;
    let failed = failed
        .into_inner()
        .map_err(|_| "a client thread panicked")?;
    report(o, &samples, &failed, wrong.load(Ordering::Relaxed), wall);
    if !failed.is_empty() || wrong.load(Ordering::Relaxed) > 0 {
        return Err(format!(
            "{} requests failed and {} answers were wrong",
            failed.len(),
            wrong.load(Ordering::Relaxed)
        ));
    }
    Ok(())
}

/// Uploads the model's weights as the configured client (the dev cluster's owner)
/// and computes the cleartext predictions of the shipped test images.
fn model_work(
    cfg: &ClientConfig,
    models: &Path,
    name: &'static str,
    file: &str,
) -> Result<Work, String> {
    let weights =
        privpy_ml::model::load_safetensors(&models.join(file)).map_err(|e| e.to_string())?;
    let test = privpy_ml::data::load_mnist(
        &privpy_ml::data::shipped("mnist/t10k-300-images-idx3-ubyte"),
        &privpy_ml::data::shipped("mnist/t10k-300-labels-idx1-ubyte"),
        None,
    )
    .map_err(|e| e.to_string())?;
    let mut owner = Client::connect(cfg).map_err(|e| e.to_string())?;
    let program = crate_programs(name)?;
    for (k, t) in &weights {
        owner
            .upload(k, t, &[])
            .map_err(|e| format!("uploading {k}: {e}"))?;
    }
    // The cleartext engine's predictions, from the same registered program.
    let mut cluster = LocalCluster::cleartext();
    let user = cluster.client(&cfg.name);
    for (k, t) in &weights {
        cluster.upload(&user, k, t).map_err(|e| e.to_string())?;
    }
    cluster
        .upload(&user, "images", &test.images)
        .map_err(|e| e.to_string())?;
    let registry = privpy_server::programs::stock();
    let p = registry
        .get(program)
        .ok_or_else(|| format!("no program {program}"))?;
    let out = cluster
        .run(|s| p.call(s, &cfg.name, &[]))
        .map_err(|e| e.to_string())?;
    let digits: Array1<f64> = out.open(&user, "digits").map_err(|e| e.to_string())?;
    Ok(Work::Model {
        name,
        images: Arc::new(test.images),
        digits: Arc::new(digits.to_vec()),
    })
}

fn crate_programs(model: &str) -> Result<&'static str, String> {
    privpy_server::programs::STOCK_MODELS
        .iter()
        .find(|(n, _, _)| *n == model)
        .map(|(_, p, _)| *p)
        .ok_or_else(|| format!("no stock model {model}"))
}

/// One request; whether its answer equals the cleartext one.
fn one(
    c: &mut Client,
    work: &Work,
    i: usize,
    seed: &mut u64,
) -> Result<(Called, bool), ClientError> {
    match work {
        Work::Stats => {
            let x: Array1<f64> = (0..8)
                .map(|_| {
                    // xorshift: fresh values per request, no dependency needed.
                    *seed ^= *seed << 13;
                    *seed ^= *seed >> 7;
                    *seed ^= *seed << 17;
                    (*seed % 2001) as f64 / 10.0 - 100.0
                })
                .collect();
            let called = c.call("stats", &[], &[("x", x.view().into_dyn())], &[])?;
            let sum: f64 = called.get("sum")?;
            Ok((called, (sum - x.sum()).abs() < 1e-3))
        }
        Work::Model {
            name,
            images,
            digits,
        } => {
            let k = i % images.nrows();
            let row = images.slice(s![k..k + 1, ..]).to_owned();
            let called = c.infer(name, &row)?;
            let got: Array1<f64> = called.get("digits")?;
            let right = got.len() == 1 && (got[0] - digits[k]).abs() < 1e-6;
            Ok((called, right))
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn report(o: &Options, samples: &[Sample], failed: &[String], wrong: usize, wall: Duration) {
    let mut lat: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{} requests of {} from {} concurrent clients in {:.2} s: {:.1} requests/s",
        samples.len(),
        o.workload,
        o.clients,
        wall.as_secs_f64(),
        samples.len() as f64 / wall.as_secs_f64()
    );
    println!(
        "latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&lat, 0.5)),
        ms(percentile(&lat, 0.95)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default())
    );
    let mut sizes: std::collections::BTreeMap<u32, usize> = std::collections::BTreeMap::new();
    for s in samples {
        *sizes.entry(s.batch).or_default() += 1;
    }
    let dist: Vec<String> = sizes.iter().map(|(b, n)| format!("{b}: {n}")).collect();
    println!(
        "batch sizes (requests in the job: requests): {}",
        dist.join(", ")
    );
    let per: f64 = samples
        .iter()
        .map(|s| s.bytes as f64 / f64::from(s.batch.max(1)))
        .sum::<f64>()
        / samples.len().max(1) as f64;
    println!("bytes per request (all four servers, the job's traffic / its batch): {per:.0}");
    println!("wrong answers: {wrong}; failed requests: {}", failed.len());
    for f in failed.iter().take(3) {
        println!("  failed: {f}");
    }
}
