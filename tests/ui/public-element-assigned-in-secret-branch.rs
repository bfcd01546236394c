use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>, mut w: Array1<f64>) -> Priv<f64> {
    let mut y = x.clone();
    if x > 0.0 {
        y = x * 2.0;
        w[0] = 1.0;
    }
    y * w[0]
}

fn main() {}
