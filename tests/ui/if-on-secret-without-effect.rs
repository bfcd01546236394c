use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    if x > 0.0 {
        let _unused = x * 2.0;
    }
    x
}

fn main() {}
