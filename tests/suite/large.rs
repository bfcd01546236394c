//! `LargeArray`: secret matrices whose shares stay in files, checked against the
//! in-memory engine and the cleartext computation on arrays just above the memory
//! budget.

use privpy::prelude::*;
use privpy::{LargeArray, ShapeError};

const BUDGET: u64 = 1 << 20;
const N: usize = 4_000;
const D: usize = 40;

/// A deterministic data set with values in [-2, 2].
fn data(n: usize, d: usize, salt: u64) -> Array2<f64> {
    Array2::from_shape_fn((n, d), |(i, j)| {
        let h = (i as u64 * 2654435761 + j as u64 * 40503 + salt * 97) % 10_007;
        h as f64 / 2_501.75 - 2.0
    })
}

fn blocks(x: &Array2<f64>, rows: usize) -> impl Iterator<Item = Array2<f64>> + '_ {
    (0..x.nrows())
        .step_by(rows)
        .map(move |s| x.slice(s![s..(s + rows).min(x.nrows()), ..]).to_owned())
}

fn close(name: &str, got: &ArrayD<f64>, want: &ArrayD<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{name}: shape");
    let err = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(err <= tol, "{name}: max error {err} > {tol}");
}

/// Everything the program computes, by name, from a large `x` (and `y`, same shape).
const OUTS: [&str; 13] = [
    "batch", "centred", "scaled", "sum_xy", "squares", "xw", "xp", "xtg", "xtl", "colsum",
    "rowmean", "large", "mean",
];

fn large_program(
    s: &Session,
    x: &LargeArray,
    y: &LargeArray,
    w: &Priv<Array2<f64>>,
    g: &Priv<Array2<f64>>,
) -> Result<()> {
    let p = Array2::from_shape_fn((D, 2), |(i, j)| (i + j) as f64 / 40.0 - 0.5);
    let scale = Array1::from_shape_fn(D, |j| 0.25 + j as f64 / 80.0);
    s.output("alice", "batch", &x.rows(1_000..1_700)?)?;
    let centred = x.sub(x.mean_axis(Axis(0))?)?;
    assert!(centred.is_on_disk() || s.role().is_some_and(|r| !r.is_primary()));
    s.output("alice", "centred", &centred.rows(3_700..4_000)?)?;
    s.output("alice", "scaled", &x.mul(&scale)?.rows(3_500..4_000)?)?;
    s.output("alice", "sum_xy", &(x + y).sum_axis(Axis(1))?)?;
    s.output(
        "alice",
        "squares",
        &x.map(|c| Ok(c * c))?.sum_axis(Axis(0))?,
    )?;
    let xw = x.dot(w)?;
    s.output("alice", "xw", &xw.load()?)?;
    s.output("alice", "xp", &x.dot(&p)?.load()?)?;
    s.output("alice", "xtg", &x.t_dot(g)?)?;
    s.output("alice", "xtl", &x.t_dot(&xw)?)?;
    s.output("alice", "colsum", &x.sum_axis(Axis(0))?)?;
    s.output("alice", "rowmean", &x.mean_axis(Axis(1))?)?;
    s.output_large("alice", "large", &centred)?;
    assert_eq!((x.ndim(), x.len(), x.is_empty()), (2, N * D, false));
    s.output("alice", "mean", &x.mean()?)?;
    Ok(())
}

/// The same computation on in-memory secrets.
fn memory_program(
    s: &Session,
    x: &Priv<Array2<f64>>,
    y: &Priv<Array2<f64>>,
    w: &Priv<Array2<f64>>,
    g: &Priv<Array2<f64>>,
) -> Result<()> {
    let p = Array2::from_shape_fn((D, 2), |(i, j)| (i + j) as f64 / 40.0 - 0.5);
    let scale = Array1::from_shape_fn(D, |j| 0.25 + j as f64 / 80.0);
    s.output("alice", "batch", &x.slice(s![1_000..1_700, ..]))?;
    let centred = x - &x.mean_axis(Axis(0));
    s.output("alice", "centred", &centred.slice(s![3_700..4_000, ..]))?;
    s.output("alice", "scaled", &(x * &scale).slice(s![3_500..4_000, ..]))?;
    s.output("alice", "sum_xy", &(x + y).sum_axis(Axis(1)))?;
    s.output("alice", "squares", &(x * x).sum_axis(Axis(0)))?;
    let xw = x.dot(w);
    s.output("alice", "xw", &xw)?;
    s.output("alice", "xp", &x.dot(&p))?;
    s.output("alice", "xtg", &x.t().dot(g))?;
    s.output("alice", "xtl", &x.t().dot(&xw))?;
    s.output("alice", "colsum", &x.sum_axis(Axis(0)))?;
    s.output("alice", "rowmean", &x.mean_axis(Axis(1)))?;
    s.output("alice", "large", &centred)?;
    s.output("alice", "mean", &x.mean())?;
    Ok(())
}

fn cleartext(
    x: &Array2<f64>,
    y: &Array2<f64>,
    w: &Array2<f64>,
    g: &Array2<f64>,
) -> Vec<ArrayD<f64>> {
    let p = Array2::from_shape_fn((D, 2), |(i, j)| (i + j) as f64 / 40.0 - 0.5);
    let scale = Array1::from_shape_fn(D, |j| 0.25 + j as f64 / 80.0);
    let mean = x.mean_axis(Axis(0)).expect("rows");
    let xw = x.dot(w);
    vec![
        x.slice(s![1_000..1_700, ..]).to_owned().into_dyn(),
        (x - &mean)
            .slice(s![3_700..4_000, ..])
            .to_owned()
            .into_dyn(),
        (x * &scale)
            .slice(s![3_500..4_000, ..])
            .to_owned()
            .into_dyn(),
        (x + y).sum_axis(Axis(1)).into_dyn(),
        (x * x).sum_axis(Axis(0)).into_dyn(),
        xw.clone().into_dyn(),
        x.dot(&p).into_dyn(),
        x.t().dot(g).into_dyn(),
        x.t().dot(&xw).into_dyn(),
        x.sum_axis(Axis(0)).into_dyn(),
        x.mean_axis(Axis(1)).expect("cols").into_dyn(),
        (x - &mean).into_dyn(),
        ndarray::arr0(x.mean().expect("elements")).into_dyn(),
    ]
}

/// The stated tolerance of each output, from fixed-point error bounds: `t` terms
/// each within a few units in the last place (encoding of the inputs and public
/// factors, one truncation per product, one more per chunk for `t_dot`), and for
/// results of results a relative error of 64 units of the largest magnitude.
fn tolerance(name: &str, want: &ArrayD<f64>, colsum: f64, ulp: f64) -> f64 {
    let max = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let ulps = match name {
        "batch" => 1.0,
        // The mean's public factor 1/4000 is encoded with f bits: |Σx|·ulp.
        "centred" | "large" => colsum + 4.0,
        "scaled" => 4.0,
        "sum_xy" => 2.0 * D as f64 * 2.0,
        "squares" | "xtg" => N as f64 * 8.0,
        "xw" | "xp" => D as f64 * 8.0,
        "colsum" => N as f64 * 2.0,
        // 1/40 encoded with f bits, times a row sum of up to 80.
        "rowmean" => 2.0 * D as f64 + 4.0,
        // A sum of 160,000 encoded values, then 1/160000 encoded with f bits
        // (its relative error reaches 2^-f / (1/160000)): relative to |Σx|.
        "mean" => 4.0 + colsum * D as f64,
        // A product of a product: relative error.
        "xtl" => N as f64 * 8.0 + 64.0 * max,
        _ => unreachable!("unknown output {name}"),
    };
    ulps * ulp + 1e-9
}

fn run_large(
    cluster: LocalCluster,
    x: &Array2<f64>,
    y: &Array2<f64>,
    w: &Array2<f64>,
    g: &Array2<f64>,
) -> Vec<ArrayD<f64>> {
    let mut c = cluster;
    let alice = c.client("alice");
    c.upload_rows(&alice, "x", D, blocks(x, 700))
        .expect("upload x");
    c.upload_rows(&alice, "y", D, blocks(y, 1_500))
        .expect("upload y");
    c.upload(&alice, "w", w).expect("upload w");
    c.upload(&alice, "g", g).expect("upload g");
    let out = c
        .run(|s| {
            let (x, y) = (s.large_input("x")?, s.large_input("y")?);
            assert_eq!(x.shape(), [N, D]);
            // 4,000 × 40 elements: just above the 1 MiB budget in every preset.
            assert!(x.chunk_rows() < N / 4);
            large_program(s, &x, &y, &s.input("w")?, &s.input("g")?)
        })
        .unwrap_or_else(|e| panic!("large run: {e}"));
    OUTS.iter()
        .map(|n| out.open::<ArrayD<f64>>(&alice, n).expect("open"))
        .collect()
}

#[test]
fn large_arrays_match_the_in_memory_engine_just_above_the_budget() {
    let (x, y) = (data(N, D, 1), data(N, D, 2));
    let w = data(D, 3, 3);
    let g = data(N, 3, 4);
    let want = cleartext(&x, &y, &w, &g);
    for (preset, cfg) in [("fast", Config::fast()), ("default", Config::default())] {
        let large = run_large(
            LocalCluster::new(cfg.with_memory_budget(BUDGET)).with_seed(5),
            &x,
            &y,
            &w,
            &g,
        );
        // The in-memory engine, with room for everything.
        let mut c = LocalCluster::new(cfg).with_seed(5);
        let alice = c.client("alice");
        for (n, v) in [("x", &x), ("y", &y), ("w", &w), ("g", &g)] {
            c.upload(&alice, n, v).expect("upload");
        }
        let out = c
            .run(|s| {
                memory_program(
                    s,
                    &s.input("x")?,
                    &s.input("y")?,
                    &s.input("w")?,
                    &s.input("g")?,
                )
            })
            .expect("in-memory run");
        let ulp = cfg.ulp();
        let colsum = x
            .sum_axis(Axis(0))
            .iter()
            .fold(0.0f64, |m, v| m.max(v.abs()));
        for (k, name) in OUTS.iter().enumerate() {
            let mem: ArrayD<f64> = out.open(&alice, name).expect("open");
            let tol = tolerance(name, &want[k], colsum, ulp);
            close(
                &format!("{preset} {name} (large vs cleartext)"),
                &large[k],
                &want[k],
                tol,
            );
            close(
                &format!("{preset} {name} (in memory vs cleartext)"),
                &mem,
                &want[k],
                tol,
            );
        }
    }
    // The cleartext engine runs the same program on files too.
    let clear = run_large(
        LocalCluster::cleartext().with_memory_budget(BUDGET),
        &x,
        &y,
        &w,
        &g,
    );
    for (k, name) in OUTS.iter().enumerate() {
        close(&format!("cleartext {name}"), &clear[k], &want[k], 1e-9);
    }
}

#[test]
fn large_arrays_refuse_what_would_not_fit_and_bad_arguments() {
    let x = data(N, D, 7);
    let mut c = LocalCluster::new(Config::fast().with_memory_budget(BUDGET)).with_seed(3);
    let alice = c.client("alice");
    // A NaN in the third block: named by its row in the whole matrix; nothing stored.
    let mut bad = x.clone();
    bad[[1_234, 5]] = f64::NAN;
    let e = c
        .upload_rows(&alice, "x", D, blocks(&bad, 500))
        .unwrap_err();
    match e {
        Error::Encode {
            source: privpy::EncodeError::NaN { index },
            ..
        } => assert_eq!(index, vec![1_234, 5]),
        other => panic!("expected a NaN error, got {other:?}"),
    }
    let e = c
        .upload_rows(&alice, "x", D, [data(10, D, 1), data(10, D + 1, 1)])
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(matches!(
        c.upload_rows(&alice, "x", 0, std::iter::empty())
            .unwrap_err(),
        Error::InvalidArgument { .. }
    ));
    // Nothing was stored by the failed uploads: the name is free.
    c.upload_rows(&alice, "x", D, blocks(&x, 999))
        .expect("upload");
    assert!(matches!(
        c.upload_rows(&alice, "x", D, blocks(&x, 999)).unwrap_err(),
        Error::DuplicateInput { .. }
    ));
    let bob = LocalCluster::new(Config::fast()).client("bob");
    assert!(matches!(
        c.upload_rows(&bob, "z", D, blocks(&x, 999)).unwrap_err(),
        Error::UnknownClient { .. }
    ));
    let checks = |s: &Session| -> Result<()> {
        let over =
            |r: Result<()>| matches!(&r, Err(e) if matches!(e.root(), Error::OverBudget { .. }));
        assert!(over(s.input::<Array2<f64>>("x").map(drop)));
        let x = s.large_input("x")?;
        assert!(over(x.load().map(drop)));
        assert!(over(x.batches(N).map(drop)));
        assert!(matches!(
            x.rows(3_990..4_001),
            Err(Error::IndexOutOfBounds { .. })
        ));
        assert!(matches!(x.batches(0), Err(Error::InvalidArgument { .. })));
        let short = Array1::<f64>::zeros(D - 1);
        assert!(matches!(
            x.add(&short),
            Err(Error::Shape(ShapeError::Broadcast { .. }))
        ));
        let wrong = s.constant(Array2::<f64>::zeros((D + 1, 2)))?;
        assert!(matches!(
            x.dot(&wrong),
            Err(Error::Shape(ShapeError::Dot { .. }))
        ));
        assert!(matches!(
            x.t_dot(&wrong),
            Err(Error::Shape(ShapeError::Dot { .. }))
        ));
        assert!(matches!(
            x.sum_axis(Axis(2)),
            Err(Error::Shape(ShapeError::Axis { .. }))
        ));
        // A function that is not row-wise is refused.
        let e = x.map(|c| Ok(c.slice(s![0..1, ..]))).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
        // Batches cover every row once, in order.
        let mut seen = 0;
        for b in x.batches(1_500)? {
            let (rows, xb) = b?;
            assert_eq!(rows.start, seen);
            assert_eq!(xb.shape(), &[rows.len(), D]);
            seen = rows.end;
        }
        assert_eq!(seen, N);
        Ok(())
    };
    c.run(checks).expect("checks");
    // Operators stop the program as Priv's do; the run returns the error.
    let e = c
        .run(|s| {
            let x = s.large_input("x")?;
            let short = Array1::<f64>::zeros(D - 1);
            let y = &x + &short;
            s.output("alice", "never", &y.sum()?)
        })
        .unwrap_err();
    assert!(
        matches!(e.root(), Error::Shape(ShapeError::Broadcast { .. })),
        "{e:?}"
    );
}

#[test]
fn large_array_files_are_encrypted_and_deleted() {
    let dir = std::env::temp_dir().join(format!("privpy-large-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // A distinctive cleartext value: its bytes must not appear in any file.
    let marker = 1234.5678;
    let x = Array2::from_elem((2_000, 100), marker);
    let files = |d: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    };
    {
        let mut c = LocalCluster::cleartext()
            .with_memory_budget(BUDGET)
            .with_data_dir(&dir);
        let alice = c.client("alice");
        c.upload_rows(&alice, "x", 100, blocks(&x, 300))
            .expect("upload");
        let stored = files(&dir);
        assert_eq!(stored.len(), 2, "one file per primary server");
        let needle = marker.to_le_bytes();
        for f in &stored {
            let bytes = std::fs::read(f).expect("read");
            assert_eq!(bytes.len(), 2_000 * 100 * 8);
            assert!(
                !bytes.windows(8).any(|w| w == needle),
                "{} holds the cleartext",
                f.display()
            );
        }
        // An intermediate result over a quarter of the budget goes to a file too,
        // and is deleted with its last handle.
        c.run(|s| {
            let x = s.large_input("x")?;
            let y = x.mul(2.0)?;
            assert!(y.is_on_disk());
            assert_eq!(files(&dir).len(), 3);
            drop(y);
            assert_eq!(files(&dir).len(), 2);
            Ok(())
        })
        .expect("run");
    }
    assert!(files(&dir).is_empty(), "the cluster's files outlive it");
    let _ = std::fs::remove_dir_all(&dir);
}
