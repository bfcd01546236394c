use privpy::prelude::*;

#[private]
fn f(x: Priv<Array1<f64>>) -> Priv<Array1<f64>> {
    let mut y = x.clone();
    while y > 1.0 {
        y = y * 0.5;
    }
    y
}

fn main() {}
