use privpy::prelude::*;

#[private(crate = 3)]
fn f(x: Priv<f64>) -> Priv<f64> {
    x
}

fn main() {}
