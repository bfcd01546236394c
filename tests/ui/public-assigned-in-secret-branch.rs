use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> f64 {
    let mut count = 0.0;
    if x > 0.0 {
        count = 1.0;
    }
    count
}

fn main() {}
