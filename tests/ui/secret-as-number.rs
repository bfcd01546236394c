use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> f64 {
    x as f64
}

fn main() {}
