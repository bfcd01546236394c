//! Private k-means (k = 5) by two data owners: on Credit Card (28 PCA features and
//! Amount) when the full data set is available (`$PRIVPY_DATA` or `../shared/data`),
//! else on the Adult slice shipped in `data/`. Prints the private and cleartext
//! centroids' distance and the time per instance.
//!
//! `cargo run --release --example kmeans [-- --rows 2000 --iterations 5]`

use privpy::data::{data_dir, load_creditcard, load_libsvm, shipped};
use privpy::ml::{kmeans, rows};
use privpy::prelude::*;
use std::time::Instant;

fn arg(name: &str, default: usize) -> usize {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let n_rows = arg("--rows", 2000);
    let iterations = arg("--iterations", 5);
    let (name, x) = match data_dir()
        .map(|d| d.join("creditcard/creditcard.csv.gz"))
        .filter(|p| p.exists())
    {
        Some(p) => {
            let c = load_creditcard(&p, Some(n_rows))?;
            // Standardize Amount (column 28), which dwarfs the PCA features.
            let mut x = c.x.slice(s![.., ..29]).to_owned();
            let amount = x.column(28).to_owned();
            let (m, sd) = (amount.mean().unwrap_or(0.0), amount.std(0.0).max(1e-9));
            x.column_mut(28).mapv_inplace(|v| (v - m) / sd);
            ("Credit Card", x)
        }
        None => {
            let a = load_libsvm(&shipped("adult/a9a-first-2000"), 123, Some(n_rows))?;
            ("Adult (shipped slice)", a.x.slice(s![.., ..123]).to_owned())
        }
    };
    let (n, d) = x.dim();
    let half = n / 2;
    println!(
        "k-means, k = 5, on {name}: {n} rows x {d} features, owners hold {half} and {} rows; {iterations} iterations",
        n - half
    );
    let program = |s: &Session| {
        let x = rows(s, &["xa", "xb"])?;
        let c0 = x.slice(s![..5, ..]);
        s.output("analyst", "centroids", &kmeans(x, c0, iterations))
    };
    let run = |mut c: LocalCluster| -> privpy::Result<(Array2<f64>, RunOutput)> {
        let (a, b, an) = (c.client("alice"), c.client("bob"), c.client("analyst"));
        c.upload(&a, "xa", x.slice(s![..half, ..]).to_owned())?;
        c.upload(&b, "xb", x.slice(s![half.., ..]).to_owned())?;
        let out = c.run(program)?;
        Ok((out.open(&an, "centroids")?, out))
    };
    let t = Instant::now();
    let (private, out) = run(LocalCluster::new(Config::default()))?;
    let secs = t.elapsed().as_secs_f64();
    let (clear, _) = run(LocalCluster::cleartext())?;
    let dist = (&private - &clear)
        .mapv(f64::abs)
        .fold(0.0f64, |m, &v| m.max(v));
    println!(
        "private: {:.2} s ({:.3} ms per instance per iteration), {} MB between servers, {} rounds",
        secs,
        secs * 1e3 / (n * iterations) as f64,
        out.stats().total_bytes() / 1_000_000,
        out.stats().rounds()
    );
    println!("largest difference between private and cleartext centroids: {dist:.2e}");
    for (k, row) in private.rows().into_iter().enumerate() {
        let shown: Vec<String> = row.iter().take(4).map(|v| format!("{v:>7.3}")).collect();
        println!("centroid {k}: [{} …]", shown.join(", "));
    }
    Ok(())
}
