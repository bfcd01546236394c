use privpy::prelude::*;

fn helper(v: &Priv<f64>) -> Priv<f64> {
    v * 2.0
}

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    let mut y = x.clone();
    if x > 0.0 {
        y = helper(&x);
    }
    y
}

fn main() {}
