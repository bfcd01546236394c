//! Quickstart: the paper's logistic function (Figure 2) on a secret array.
//!
//! Alice secret-shares an array to four servers. The servers compute the logistic
//! function by Euler's method (only additions and multiplications, so it runs on the
//! arithmetic protocols alone), and only Alice can open the result. The same function
//! also runs on the cleartext engine, and the program prints both side by side.
//!
//! Run with `cargo run --release --example quickstart`.

use privpy::prelude::*;

/// The logistic function `1 / (1 + e^-x)` by Euler's method on
/// `y' = x · y · (1 - y)`, `y(0) = 1/2`, integrated from 0 to 1 in `steps` steps.
/// Written once, for secrets; the cleartext engine runs the same code.
fn logistic(s: &Session, x: &Priv<Array1<f64>>, steps: usize) -> Result<Priv<Array1<f64>>> {
    let h = x / steps as f64;
    let mut y = s.constant(Array1::from_elem(x.len(), 0.5))?;
    for _ in 0..steps {
        y = &y + &h * &y * (1.0 - &y);
    }
    Ok(y)
}

fn main() -> Result<()> {
    let x = Array1::linspace(-6.0, 6.0, 13);
    let steps = 128;
    let program = |s: &Session| {
        let x = s.input::<Array1<f64>>("x")?;
        s.output("alice", "y", &logistic(s, &x, steps)?)
    };

    // Four servers (threads of this process) on shares in Z_2^128 with 32 fractional bits.
    let mut cluster = LocalCluster::new(Config::default());
    let alice = cluster.client("alice");
    cluster.upload(&alice, "x", &x)?;
    let run = cluster.run(program)?;
    let private: Array1<f64> = run.open(&alice, "y")?;

    // The same program on the cleartext engine.
    let mut clear = LocalCluster::cleartext();
    let alice_c = clear.client("alice");
    clear.upload(&alice_c, "x", &x)?;
    let cleartext: Array1<f64> = clear.run(program)?.open(&alice_c, "y")?;

    println!(
        "{:>6}  {:>14}  {:>14}  {:>10}  {:>12}",
        "x", "private", "cleartext", "diff", "true sigmoid"
    );
    for k in 0..x.len() {
        println!(
            "{:>6.2}  {:>14.10}  {:>14.10}  {:>10.2e}  {:>12.8}",
            x[k],
            private[k],
            cleartext[k],
            (private[k] - cleartext[k]).abs(),
            1.0 / (1.0 + (-x[k]).exp())
        );
    }
    let st = run.stats();
    println!(
        "\n{} multiplications in {} rounds; {} bytes between servers; {:.1} ms",
        2 * steps,
        st.rounds(),
        st.total_bytes(),
        run.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
