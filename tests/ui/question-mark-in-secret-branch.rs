use privpy::prelude::*;

#[private]
fn f(x: Priv<f64>, s: &Session) -> privpy::Result<Priv<f64>> {
    let mut y = x.clone();
    if x > 0.0 {
        y = s.constant(1.0)?;
    }
    Ok(y)
}

fn main() {}
