use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> f64 {
    let v: f64 = x.into();
    v
}

fn main() {}
