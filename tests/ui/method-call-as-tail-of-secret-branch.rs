use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>, log: &mut Vec<u8>) -> Priv<f64> {
    let mut y = x.clone();
    if x > 0.0 {
        y = x * 2.0;
        log.push(1)
    }
    y
}

fn main() {}
