use privpy::prelude::*;

fn bump(n: &mut u32) -> f64 {
    *n += 1;
    1.0
}

#[private]
fn f(x: Priv<f64>, calls: &mut u32) -> Priv<f64> {
    x > 0.0 || x < bump(calls)
}

fn main() {}
