use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    let double = |v: f64| x * v;
    let mut y = x.clone();
    if x > 0.0 {
        y = double(2.0);
    }
    y
}

fn main() {}
