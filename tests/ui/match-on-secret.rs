use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>) -> Priv<f64> {
    match x {
        _ => x,
    }
}

fn main() {}
