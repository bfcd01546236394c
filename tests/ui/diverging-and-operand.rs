use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    x > 0.0 && panic!("negative")
}

fn main() {}
