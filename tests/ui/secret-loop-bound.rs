use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>, n: Priv<f64>) -> Priv<f64> {
    let mut y = x.clone();
    for _ in 0..n {
        y = y * 2.0;
    }
    y
}

fn main() {}
