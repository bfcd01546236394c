use privpy::prelude::*;
use ndarray::s;

#[private]
fn f(x: Priv<Array1<f64>>, k: Priv<f64>) -> Priv<Array1<f64>> {
    x.slice(s![..k])
}

fn main() {}
