use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    let mut y = x.clone();
    if x > 0.0 {
        return x;
    }
    y
}

fn main() {}
