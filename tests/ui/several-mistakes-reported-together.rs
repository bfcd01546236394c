use privpy::prelude::*;

// The one file with several mistakes: every diagnostic is reported in one compile.
#[private]
fn f(x: Priv<Array1<f64>>, i: Priv<f64>) -> Priv<f64> {
    while x.sum() > 0.0 {}
    let v = x.sum() as f64;
    x[i] * v
}

fn main() {}
