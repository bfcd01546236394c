use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    let mut y = x.clone();
    for _ in 0..3 {
        if y > 10.0 {
            break;
        }
        y = y * 2.0;
    }
    y
}

fn main() {}
