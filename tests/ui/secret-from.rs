use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> f64 {
    f64::from(x)
}

fn main() {}
