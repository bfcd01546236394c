//! Training at the paper's scale (issue #15 item 2): logistic regression by
//! mini-batch SGD over a secret MovieLens-shaped matrix kept on disk as a
//! [`privpy::LargeArray`], beside the same program on an in-memory slice.
//!
//! ```text
//! cargo bench --bench scale -- [--rows 200000] [--slice 20000] [--batch 1000]
//!                              [--budget-mib 256] [--dir DIR] [--gen FILE]
//! cargo bench --bench scale -- --net CLIENT.toml [--rows N] [--batch 1000]
//! ```
//!
//! With `--net`, the same data go to a running cluster (four `privpy-server`
//! processes, for example those of `privpy-server dev --preset fast --quota-mib
//! 16384 --memory-budget-mib 256`: the default quota is 1 GiB per client) through
//! `Client::upload_rows`, and the stock program `logistic_regression_large` trains
//! on them; the benchmark then reports each server process's peak resident memory
//! (Linux `VmHWM` of the local processes).
//!
//! **The data set** is generated, so nothing large is committed: `--gen FILE`
//! writes it (`f64` little-endian, row-major: each row its 5,048 features, then
//! its label) and exits; otherwise the benchmark generates the same rows block by
//! block as it uploads them. It has the shape of MovieLens 1M, 5,048 movies
//! wide: each row is one user's ratings, a rank-8 preference model plus noise,
//! observed with MovieLens 1M's density (4.47%) and a long-tailed popularity;
//! ratings are centred and scaled to `(r - 3) / 2` in `[-1, 1]`, zero where the
//! user did not rate. The label says whether the user likes a held-out movie
//! (its rating above 3.5), which the model predicts from the other ratings.
//!
//! **What is reported**: upload time, time per instance for one epoch of
//! batches of `--batch` rows on the large array (shares in files under `--dir`,
//! memory budget `--budget-mib`) and on an in-memory slice of `--slice` rows
//! (same program, same batches), their ratio (target ≤ 1.5), the process's peak
//! resident memory during the large run (the four servers are threads of this
//! process, so each server's peak is below it; target < 1 GiB), bytes and
//! messages per instance, the linear extrapolation to 10^6 rows, and the
//! trained weights against the same SGD in cleartext `f64`.

use indicatif::{ProgressBar, ProgressStyle};
use ndarray::{Array1, Array2};
use privpy::prelude::*;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};
use std::time::Instant;

const COLS: usize = 5_048;
const RANK: usize = 8;
/// MovieLens 1M: 1,000,209 ratings of 3,706 movies by 6,040 users.
const DENSITY: f64 = 0.0447;
const BLOCK: usize = 1_000;
const LR: f64 = 0.5;

/// The generator: item factors and popularity, fixed by the seed.
struct Gen {
    items: Array2<f64>,
    target: Array1<f64>,
    popularity: Vec<f64>,
}

fn normal(rng: &mut ChaCha12Rng) -> f64 {
    let u1 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let u2 = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * (u1 + 1e-300).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn unit(rng: &mut ChaCha12Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

impl Gen {
    fn new() -> Gen {
        let mut rng = ChaCha12Rng::seed_from_u64(0x5eed);
        let scale = 1.0 / (RANK as f64).sqrt();
        let items = Array2::from_shape_fn((COLS, RANK), |_| normal(&mut rng) * scale);
        let target = Array1::from_shape_fn(RANK, |_| normal(&mut rng) * scale);
        // Zipf-like popularity, scaled to the mean density.
        let raw: Vec<f64> = (0..COLS)
            .map(|j| 1.0 / (j as f64 + 10.0).powf(0.8))
            .collect();
        let mean = raw.iter().sum::<f64>() / COLS as f64;
        let popularity = raw.iter().map(|p| (p / mean * DENSITY).min(1.0)).collect();
        Gen {
            items,
            target,
            popularity,
        }
    }

    /// Rows `start..start + n` (features, labels); the same rows whatever the blocks.
    fn block(&self, start: usize, n: usize) -> (Array2<f64>, Array2<f64>) {
        let mut x = Array2::zeros((n, COLS));
        let mut y = Array2::zeros((n, 1));
        for i in 0..n {
            let mut rng = ChaCha12Rng::seed_from_u64(((start + i) as u64) << 8 | 1);
            let user: Vec<f64> = (0..RANK).map(|_| normal(&mut rng)).collect();
            let activity = (0.6 * normal(&mut rng)).exp() / (0.18f64).exp();
            let mut row = x.row_mut(i);
            for j in 0..COLS {
                if unit(&mut rng) < self.popularity[j] * activity {
                    let pref: f64 = (0..RANK).map(|k| user[k] * self.items[[j, k]]).sum();
                    let r = (3.6 + 1.2 * pref + 0.5 * normal(&mut rng))
                        .round()
                        .clamp(1.0, 5.0);
                    row[j] = (r - 3.0) / 2.0;
                }
            }
            let t: f64 = (0..RANK).map(|k| user[k] * self.target[k]).sum();
            y[[i, 0]] = f64::from(3.6 + 1.2 * t + 0.5 * normal(&mut rng) > 3.5);
        }
        (x, y)
    }

    fn blocks(&self, rows: usize) -> impl Iterator<Item = (Array2<f64>, Array2<f64>)> + '_ {
        (0..rows)
            .step_by(BLOCK)
            .map(move |s| self.block(s, BLOCK.min(rows - s)))
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn num(name: &str, default: usize) -> usize {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Peak resident memory of this process (Linux `VmHWM`), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Resets the peak (Linux: writing 5 to `clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{what:>10} [{{bar:40}}] {{pos}}/{{len}} rows {{per_sec}} eta {{eta}}"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// One epoch of the private program; (weights, seconds, bytes, rounds).
fn train(
    cluster: &LocalCluster,
    alice: &privpy::Client,
    rows: usize,
    batch: usize,
    what: &str,
) -> (Array1<f64>, f64, u64, u64) {
    let pb = bar(rows as u64, what);
    let t = Instant::now();
    let out = cluster
        .run(|s| {
            let (x, y) = (s.large_input("x")?, s.large_input("y")?);
            let w0 = s.zeros(COLS);
            let primary = s.role() == Some(Role::S1);
            let mut tick = |done: usize| {
                if primary {
                    pb.set_position(done as u64);
                }
            };
            let w = privpy::ml::logistic_regression_epoch(&x, &y, w0, batch, LR, &mut tick)?;
            s.output("alice", "w", &w)
        })
        .unwrap_or_else(|e| panic!("{what} training failed: {e}"));
    let secs = t.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let w: Array1<f64> = out.open(alice, "w").expect("open w");
    let st = out.stats();
    let bytes: u64 = st
        .servers
        .iter()
        .map(|s| s.bytes_sent.iter().sum::<u64>())
        .sum();
    let msgs: u64 = st.servers[0].messages_sent.iter().sum();
    (w, secs, bytes, msgs)
}

/// The same SGD in cleartext `f64`, with the same sigmoid precision goal.
fn clear_sgd(data: &Gen, rows: usize, batch: usize) -> Array1<f64> {
    let mut w = Array1::zeros(COLS);
    for s in (0..rows).step_by(batch) {
        let (x, y) = data.block(s, batch.min(rows - s));
        let z = x.dot(&w);
        let p = z.mapv(|v| 1.0 / (1.0 + (-v).exp()));
        let g = x.t().dot(&(p - y.column(0)));
        w = w - g * (LR / x.nrows() as f64);
    }
    w
}

/// Peak resident memory (MiB) of each local `privpy-server --role R` process.
fn server_peaks() -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let Ok(cmd) = std::fs::read(p.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(role) = args
            .iter()
            .position(|a| a == "--role")
            .and_then(|i| args.get(i + 1))
        else {
            continue;
        };
        if !args.first().is_some_and(|a| a.contains("privpy-server")) {
            continue;
        }
        let status = std::fs::read_to_string(p.path().join("status")).unwrap_or_default();
        if let Some(kb) = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
        {
            out.push((role.clone(), kb / 1024.0));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The `--net` mode: upload to a running cluster and train there.
fn over_the_network(client_toml: &str, data: &Gen, rows: usize, batch: usize) {
    use privpy::net::client::Client;
    use privpy::net::config::ClientConfig;
    let cfg = ClientConfig::from_file(std::path::Path::new(client_toml)).expect("client config");
    let mut c = Client::connect(&cfg).expect("connect");
    println!(
        "scale over the network: {rows} × {COLS}, batch {batch}, {:?} ring",
        c.config().ring()
    );
    let t = Instant::now();
    let pb = bar(rows as u64, "upload");
    let mut done = 0;
    let labels: std::cell::RefCell<Vec<Array2<f64>>> = Default::default();
    c.upload_rows(
        "x",
        [rows, COLS],
        data.blocks(rows).map(|(x, y)| {
            done += x.nrows();
            pb.set_position(done as u64);
            labels.borrow_mut().push(y);
            x
        }),
        &[],
    )
    .expect("upload x");
    c.upload_rows("y", [rows, 1], labels.take(), &[])
        .expect("upload y");
    pb.finish_and_clear();
    println!(
        "upload: {:.1} s; peak RSS after it (MiB): {:?}",
        t.elapsed().as_secs_f64(),
        server_peaks()
    );
    let t = Instant::now();
    let job = c
        .run_with(
            "logistic_regression_large",
            &[("x", &["x"]), ("y", &["y"])],
            &[("batch", batch as f64), ("epochs", 1.0), ("lr", LR)],
        )
        .expect("training");
    let secs = t.elapsed().as_secs_f64();
    let w: Array1<f64> = c.fetch(&job, "w").expect("fetch w");
    let bytes: u64 = job.stats.iter().map(|s| s.total_bytes_sent()).sum();
    println!(
        "trained: {rows} rows in {secs:.1} s = {:.3} ms per instance, {:.0} kB per instance (all servers)",
        secs / rows as f64 * 1e3,
        bytes as f64 / rows as f64 / 1e3
    );
    println!("peak RSS per server process (MiB): {:?}", server_peaks());
    let w_clear = clear_sgd(data, rows, batch);
    let err = w
        .iter()
        .zip(&w_clear)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("weights: max |private - cleartext| = {err:.2e}");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench` probes benches with --list
    }
    let rows = num("--rows", 200_000);
    let slice = num("--slice", 20_000).min(rows);
    let batch = num("--batch", 1_000);
    let budget = (num("--budget-mib", 256) as u64) << 20;
    let data = Gen::new();
    if let Some(client) = arg("--net") {
        over_the_network(&client, &data, rows, batch);
        return;
    }
    if let Some(path) = arg("--gen") {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        let pb = bar(rows as u64, "generate");
        for (k, (x, y)) in data.blocks(rows).enumerate() {
            for (xr, yr) in x.rows().into_iter().zip(y.rows()) {
                for v in xr.iter().chain(yr.iter()) {
                    f.write_all(&v.to_le_bytes()).expect("write");
                }
            }
            pb.set_position(((k + 1) * BLOCK).min(rows) as u64);
        }
        pb.finish_and_clear();
        println!("wrote {rows} × {} rows to {path}", COLS + 1);
        return;
    }
    let dir = std::path::PathBuf::from(arg("--dir").unwrap_or_else(|| "target/scale-data".into()));
    let cfg = Config::fast().with_memory_budget(budget);
    println!(
        "scale: {rows} × {COLS} MovieLens-shaped (density {DENSITY}), batch {batch}, fast preset, budget {} MiB, files in {}",
        budget >> 20,
        dir.display()
    );

    // The large run: shares in files, read batch by batch.
    reset_peak();
    let mut big = LocalCluster::new(cfg).with_data_dir(&dir);
    let alice = big.client("alice");
    let t = Instant::now();
    let pb = bar(rows as u64, "upload");
    let mut done = 0;
    let labels: std::cell::RefCell<Vec<Array2<f64>>> = Default::default();
    big.upload_rows(
        &alice,
        "x",
        COLS,
        data.blocks(rows).map(|(x, y)| {
            done += x.nrows();
            pb.set_position(done as u64);
            labels.borrow_mut().push(y);
            x
        }),
    )
    .expect("upload x");
    big.upload_rows(&alice, "y", 1, labels.take())
        .expect("upload y");
    pb.finish_and_clear();
    let upload = t.elapsed().as_secs_f64();
    let disk = (rows * (COLS + 1) * 8 * 2) as f64 / 1e9;
    println!("upload: {upload:.1} s ({disk:.1} GB of shares on disk, two servers)");
    let (w_big, secs, bytes, rounds) = train(&big, &alice, rows, batch, "large");
    let peak = peak_rss_mib().unwrap_or(f64::NAN);
    drop(big);
    let per = secs / rows as f64;
    println!(
        "large array: {rows} rows in {secs:.1} s = {:.3} ms per instance; {:.0} kB per instance, {} rounds ({:.0} per batch); peak RSS {peak:.0} MiB (whole process: four servers and the client)",
        per * 1e3,
        bytes as f64 / rows as f64 / 1e3,
        rounds,
        rounds as f64 / rows.div_ceil(batch) as f64,
    );

    // The same program on an in-memory slice.
    let mut small = LocalCluster::new(Config::fast().with_memory_budget(4 << 30));
    let alice2 = small.client("alice");
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (x, y) in data.blocks(slice) {
        xs.push(x);
        ys.push(y);
    }
    let xv: Vec<_> = xs.iter().map(|a| a.view()).collect();
    let yv: Vec<_> = ys.iter().map(|a| a.view()).collect();
    let x = ndarray::concatenate(ndarray::Axis(0), &xv).expect("rows");
    let y = ndarray::concatenate(ndarray::Axis(0), &yv).expect("rows");
    drop((xs, ys));
    small.upload(&alice2, "x", &x).expect("upload slice");
    small.upload(&alice2, "y", &y).expect("upload labels");
    drop((x, y));
    let (_, msecs, mbytes, mrounds) = train(&small, &alice2, slice, batch, "in memory");
    let mper = msecs / slice as f64;
    println!(
        "in memory: {slice} rows in {msecs:.1} s = {:.3} ms per instance; {:.0} kB per instance, {mrounds} rounds",
        mper * 1e3,
        mbytes as f64 / slice as f64 / 1e3,
    );
    println!(
        "ratio large / in memory: {:.2} (target ≤ 1.5); extrapolated to 10^6 rows: {:.0} s per epoch",
        per / mper,
        per * 1e6
    );
    // Fidelity: the private weights against cleartext SGD on the same batches.
    let w_clear = clear_sgd(&data, rows, batch);
    let err = w_big
        .iter()
        .zip(&w_clear)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let norm = w_clear.iter().map(|v| v.abs()).fold(0.0, f64::max);
    println!("weights: max |private - cleartext| = {err:.2e} (largest weight {norm:.2e})");
}
