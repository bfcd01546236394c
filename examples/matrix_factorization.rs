//! Private matrix factorization (rank 5) of a rating matrix whose rows (users) are
//! held by two data owners: MovieLens 100K (943 × 1,682) when available
//! (`$PRIVPY_DATA` or `../shared/data`; MovieLens may not be redistributed, so it is
//! never shipped), else a generated low-rank matrix of the same shape.
//!
//! `cargo run --release --example matrix_factorization [-- --iterations 10]`

use privpy::data::{data_dir, load_movielens};
use privpy::ml::{matrix_factorization, rows};
use privpy::prelude::*;
use std::time::Instant;

fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let iterations = a
        .iter()
        .position(|x| x == "--iterations")
        .and_then(|i| a.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let (name, r, mask) = match data_dir()
        .map(|d| d.join("movielens-100k/u.data.gz"))
        .filter(|p| p.exists())
    {
        Some(p) => {
            let ratings = load_movielens(&p)?;
            let (r, m) = ratings.dense();
            ("MovieLens 100K", r, m)
        }
        None => {
            let (m, n) = (943, 1682);
            let u =
                Array2::from_shape_fn((m, 5), |(i, j)| ((i * 3 + j * 7) % 11) as f64 * 0.1 + 0.2);
            let v =
                Array2::from_shape_fn((n, 5), |(i, j)| ((i * 5 + j * 3) % 13) as f64 * 0.08 + 0.1);
            let mask = Array2::from_shape_fn((m, n), |(i, j)| {
                if (i * 31 + j * 17) % 16 == 0 {
                    1.0
                } else {
                    0.0
                }
            });
            ("a generated rank-5 matrix", &u.dot(&v.t()) * &mask, mask)
        }
    };
    let (m, n) = r.dim();
    let half = m / 2;
    println!(
        "matrix factorization, rank 5, {name}: {m} x {n}, {} ratings; {iterations} iterations",
        mask.sum()
    );
    let mean = r.sum() / mask.sum();
    let u0 = Array2::from_shape_fn((m, 5), |(i, j)| {
        (mean / 5.0).sqrt() * (0.9 + ((i + 3 * j) % 5) as f64 * 0.05)
    });
    let v0 = Array2::from_shape_fn((n, 5), |(i, j)| {
        (mean / 5.0).sqrt() * (0.9 + ((2 * i + j) % 5) as f64 * 0.05)
    });
    let program = |s: &Session| {
        let (u, v) = matrix_factorization(
            rows(s, &["ra", "rb"])?,
            rows(s, &["ma", "mb"])?,
            s.input("u0")?,
            s.input("v0")?,
            iterations,
            0.0002,
            0.01,
        );
        s.output("owner", "u", &u)?;
        s.output("owner", "v", &v)
    };
    let run = |mut c: LocalCluster| -> privpy::Result<(Array2<f64>, Array2<f64>, RunOutput)> {
        let (ua, ub, o) = (c.client("users_a"), c.client("users_b"), c.client("owner"));
        c.upload(&ua, "ra", r.slice(s![..half, ..]).to_owned())?;
        c.upload(&ua, "ma", mask.slice(s![..half, ..]).to_owned())?;
        c.upload(&ub, "rb", r.slice(s![half.., ..]).to_owned())?;
        c.upload(&ub, "mb", mask.slice(s![half.., ..]).to_owned())?;
        c.upload(&o, "u0", &u0)?;
        c.upload(&o, "v0", &v0)?;
        let out = c.run(program)?;
        Ok((out.open(&o, "u")?, out.open(&o, "v")?, out))
    };
    let t = Instant::now();
    // One private call runs every iteration: a spinner shows it is working.
    let spinner = indicatif::ProgressBar::new_spinner().with_message(format!(
        "training privately ({iterations} iterations on four servers)"
    ));
    spinner.enable_steady_tick(std::time::Duration::from_millis(100));
    let trained = run(LocalCluster::new(Config::default()));
    spinner.finish_and_clear();
    let (u, v, out) = trained?;
    let secs = t.elapsed().as_secs_f64();
    let (uc, vc, _) = run(LocalCluster::cleartext())?;
    let rmse = |u: &Array2<f64>, v: &Array2<f64>| {
        (((u.dot(&v.t()) - &r) * &mask).mapv(|d| d * d).sum() / mask.sum()).sqrt()
    };
    println!(
        "private: {:.2} s ({:.1} ms per iteration), {} MB between servers, {} rounds",
        secs,
        secs * 1e3 / iterations as f64,
        out.stats().total_bytes() / 1_000_000,
        out.stats().rounds()
    );
    println!(
        "training RMSE: start {:.4}, private {:.4}, cleartext {:.4}",
        rmse(&u0, &v0),
        rmse(&u, &v),
        rmse(&uc, &vc)
    );
    Ok(())
}
