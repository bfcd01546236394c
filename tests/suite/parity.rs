//! The NumPy surface (paper Table 8 and indexing): one program, run on the cleartext
//! and four-party engines for every ring; structural results also checked against
//! ndarray directly.

use crate::common::*;
use ndarray::s;
use privpy::prelude::*;

const NAMES: [&str; 34] = [
    "slice",
    "item",
    "itemset",
    "put",
    "fill",
    "copy",
    "flatten",
    "squeeze",
    "swapaxes",
    "take",
    "compress",
    "repeat",
    "repeat_ax",
    "tile",
    "resize",
    "diag",
    "trace",
    "append",
    "concat",
    "stack",
    "cumsum",
    "cumprod",
    "prod",
    "ptp",
    "var",
    "std",
    "var_ax",
    "outer",
    "all",
    "any",
    "partition",
    "searchsorted",
    "zeros",
    "ones",
];

fn program(s: &Session) -> Result<()> {
    let x = s.input::<Array2<f64>>("x")?;
    let v = s.input::<Array1<f64>>("v")?;
    let out = |n: &str, p: Priv<ArrayD<f64>>| s.output("alice", n, &p);
    out("slice", x.slice(s![1..3, ..;2]).into_dyn())?;
    out("item", x.item(&[2, 1]).into_dyn())?;
    let mut y = x.copy();
    y.itemset(&[0, 0], &v.item(&[1]));
    out("itemset", y.into_dyn())?;
    let mut y = x.copy();
    y.put(&[1, 5, 7], &v);
    out("put", y.into_dyn())?;
    let mut y = v.copy();
    y.fill(&x.item(&[1, 1]));
    out("fill", y.into_dyn())?;
    out("copy", x.copy().into_dyn())?;
    out("flatten", x.flatten().into_dyn())?;
    out("squeeze", x.reshape([1, 4, 1, 3]).squeeze())?;
    out("swapaxes", x.swapaxes(0, 1).into_dyn())?;
    out("take", x.take(&[3, 0, 3], Axis(0)).into_dyn())?;
    out(
        "compress",
        x.compress(&[true, false, true], Axis(1)).into_dyn(),
    )?;
    out("repeat", v.repeat(2, None))?;
    out("repeat_ax", x.repeat(2, Some(Axis(1))))?;
    out("tile", v.tile(&[2, 2]))?;
    out("resize", v.resize(&[2, 5]))?;
    out("diag", x.diag().into_dyn())?;
    out("trace", x.trace().into_dyn())?;
    out(
        "append",
        x.append(&x.take(&[0], Axis(0)), Axis(0)).into_dyn(),
    )?;
    out("concat", concatenate(&[&x, &x], Axis(1))?)?;
    out("stack", stack(&[&v, &v, &v], Axis(1))?)?;
    out("cumsum", x.cumsum(Axis(1)).into_dyn())?;
    out("cumprod", x.cumprod(Axis(0)).into_dyn())?;
    out("prod", v.prod().into_dyn())?;
    out("ptp", x.ptp().into_dyn())?;
    out("var", x.var().into_dyn())?;
    out("std", x.std().into_dyn())?;
    out("var_ax", x.var_axis(Axis(0)))?;
    out("outer", v.outer(&v).into_dyn())?;
    out("all", x.all().into_dyn())?;
    out("any", (&x * 0.0).any().into_dyn())?;
    out("partition", v.partition(1).into_dyn())?;
    out(
        "searchsorted",
        v.sort().searchsorted(array![-1.0, 0.5, 10.0]),
    )?;
    out("zeros", s.zeros((2, 2)).into_dyn())?;
    out("ones", s.ones(3).into_dyn())
}

fn inputs() -> [(&'static str, ArrayD<f64>); 2] {
    let mut g = rng(12);
    let x = arr(&[4, 3], &mut g, 2.0)
        .mapv(|v| (v * 4.0).round() / 4.0 + if v == 0.0 { 0.5 } else { 0.0 });
    let v = array![1.5, -0.75, 2.0].into_dyn();
    [("x", x), ("v", v)]
}

#[test]
fn every_method_agrees_with_cleartext_on_every_ring() {
    let inputs = inputs();
    for (name, cfg) in presets() {
        let (p, q) = private_and_clear(cfg, &inputs, &NAMES, program);
        for (k, n) in NAMES.iter().enumerate() {
            let d = max_abs_diff(&p[k], &q[k]);
            let tol = if matches!(*n, "std" | "var" | "var_ax") {
                1e-3
            } else {
                1e-3_f64.min(cfg.ulp() * 2048.0)
            };
            assert!(d <= tol, "{name}: {n} differs by {d}");
        }
    }
}

#[test]
fn structural_methods_follow_numpy() {
    let inputs = inputs();
    let (q, _) = run_on(LocalCluster::cleartext(), &inputs, &NAMES, program).unwrap();
    let x = inputs[0]
        .1
        .clone()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap();
    let v = inputs[1]
        .1
        .clone()
        .into_dimensionality::<ndarray::Ix1>()
        .unwrap();
    let get = |n: &str| q[NAMES.iter().position(|m| *m == n).unwrap()].clone();
    assert_eq!(get("slice"), x.slice(s![1..3, ..;2]).to_owned().into_dyn());
    assert_eq!(get("item")[[]], x[[2, 1]]);
    assert_eq!(get("swapaxes"), x.t().to_owned().into_dyn());
    assert_eq!(get("take"), x.select(Axis(0), &[3, 0, 3]).into_dyn());
    assert_eq!(get("compress"), x.select(Axis(1), &[0, 2]).into_dyn());
    assert_eq!(
        get("repeat").iter().copied().collect::<Vec<_>>(),
        vec![1.5, 1.5, -0.75, -0.75, 2.0, 2.0]
    );
    assert_eq!(get("tile").shape(), &[2, 6]);
    assert_eq!(
        get("tile")
            .index_axis(Axis(0), 1)
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![1.5, -0.75, 2.0, 1.5, -0.75, 2.0]
    );
    assert_eq!(
        get("resize").iter().copied().collect::<Vec<_>>(),
        vec![1.5, -0.75, 2.0, 1.5, -0.75, 2.0, 1.5, -0.75, 2.0, 1.5]
    );
    assert_eq!(get("diag"), x.diag().to_owned().into_dyn());
    assert_eq!(get("trace")[[]], x.diag().sum());
    let mut cs = x.clone();
    cs.accumulate_axis_inplace(Axis(1), |&p, c| *c += p);
    assert_eq!(get("cumsum"), cs.into_dyn());
    assert_eq!(get("prod")[[]], v.iter().product::<f64>());
    let mut put = x.clone();
    put.as_slice_mut().unwrap()[1] = 1.5;
    put.as_slice_mut().unwrap()[5] = -0.75;
    put.as_slice_mut().unwrap()[7] = 2.0;
    assert_eq!(get("put"), put.into_dyn());
    assert_eq!(get("stack").shape(), &[3, 3]);
    assert_eq!(
        get("searchsorted").iter().copied().collect::<Vec<_>>(),
        vec![0.0, 1.0, 3.0]
    );
    assert_eq!(
        get("all")[[]],
        if x.iter().all(|&a| a != 0.0) {
            1.0
        } else {
            0.0
        }
    );
    assert_eq!(get("any")[[]], 0.0);
    let mean = x.mean().unwrap();
    let var = x.mapv(|a| (a - mean).powi(2)).mean().unwrap();
    assert!((get("var")[[]] - var).abs() < 1e-12);
}
