use privpy::prelude::*;

struct Total {
    sum: Priv<f64>,
}

#[private]
fn f(x: Priv<f64>, out: &mut Total) -> Priv<f64> {
    let mut y = x.clone();
    if x > 0.0 {
        y = x * 2.0;
        out.sum = x;
    }
    y
}

fn main() {}
