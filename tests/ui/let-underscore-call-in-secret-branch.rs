use privpy::prelude::*;

fn record() -> u32 {
    1
}

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    let mut y = x.clone();
    if x > 0.0 {
        let _ = record();
        y = x * 2.0;
    }
    y
}

fn main() {}
