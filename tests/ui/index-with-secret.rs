use privpy::prelude::*;

#[private]
fn f(x: Priv<Array1<f64>>, i: Priv<f64>) -> Priv<f64> {
    x[i]
}

fn main() {}
