//! Helpers shared by the test modules.

use privpy::prelude::*;
use rand_chacha::ChaCha12Rng;
use rand_core::{Rng, SeedableRng};

/// The three presets of DESIGN §4, with a name for messages.
pub fn presets() -> [(&'static str, Config); 3] {
    [
        ("fast/Z64", Config::fast()),
        ("default/Z128", Config::default()),
        ("paper/Z256", Config::paper()),
    ]
}

/// Uploads `inputs` for client "alice", runs `program` on `cluster`, and opens the
/// outputs named in `outputs`.
pub fn run_on<F>(
    mut cluster: LocalCluster,
    inputs: &[(&str, ArrayD<f64>)],
    outputs: &[&str],
    program: F,
) -> Result<(Vec<ArrayD<f64>>, RunOutput)>
where
    F: Fn(&Session) -> Result<()> + Sync,
{
    let alice = cluster.client("alice");
    for (name, v) in inputs {
        cluster.upload(&alice, name, v)?;
    }
    let run = cluster.run(program)?;
    let opened = outputs
        .iter()
        .map(|n| run.open::<ArrayD<f64>>(&alice, n))
        .collect::<Result<Vec<_>>>()?;
    Ok((opened, run))
}

/// Runs `program` privately with `cfg` and on the cleartext engine; returns both
/// sets of outputs.
pub fn private_and_clear<F>(
    cfg: Config,
    inputs: &[(&str, ArrayD<f64>)],
    outputs: &[&str],
    program: F,
) -> (Vec<ArrayD<f64>>, Vec<ArrayD<f64>>)
where
    F: Fn(&Session) -> Result<()> + Sync,
{
    let private = run_on(
        LocalCluster::new(cfg).with_seed(11),
        inputs,
        outputs,
        &program,
    )
    .unwrap_or_else(|e| panic!("private run failed: {e}"))
    .0;
    let clear = run_on(LocalCluster::cleartext(), inputs, outputs, &program)
        .unwrap_or_else(|e| panic!("cleartext run failed: {e}"))
        .0;
    (private, clear)
}

/// Largest absolute difference between two arrays of the same shape.
pub fn max_abs_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// `n` values spread over `(-scale, scale)`, with zeros, ±1 and both signs.
pub fn values(rng: &mut ChaCha12Rng, n: usize, scale: f64) -> Vec<f64> {
    let mut v: Vec<f64> = (0..n)
        .map(|_| (rng.next_u64() as f64 / u64::MAX as f64 * 2.0 - 1.0) * scale)
        .collect();
    if n >= 4 {
        v[0] = 0.0;
        v[1] = 1.0;
        v[2] = -1.0;
        v[3] = -scale * 0.999;
    }
    v
}

/// A deterministic generator for test data.
pub fn rng(seed: u64) -> ChaCha12Rng {
    ChaCha12Rng::seed_from_u64(seed)
}

/// An array of the given shape filled from `values`.
pub fn arr(shape: &[usize], rng: &mut ChaCha12Rng, scale: f64) -> ArrayD<f64> {
    let n = shape.iter().product();
    ArrayD::from_shape_vec(shape.to_vec(), values(rng, n, scale)).expect("shape")
}
