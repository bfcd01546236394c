use privpy::prelude::*;

#[private]
fn f(x: Priv<Array1<f64>>, k: Priv<f64>) -> Priv<Array1<f64>> {
    x.slice(ndarray::s![..k])
}

fn main() {}
