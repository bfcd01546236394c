use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> f64 {
    if x > 0.0 { x.reveal() } else { 0.0 }
}

fn main() {}
