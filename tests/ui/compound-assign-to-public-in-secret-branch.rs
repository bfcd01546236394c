use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    let mut y = x.clone();
    let mut count = 0;
    if x > 0.0 {
        y = x * 2.0;
        count += 1;
    }
    y * count as f64
}

fn main() {}
