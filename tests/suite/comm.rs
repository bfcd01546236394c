//! Communication accounting: bytes and rounds per operation.

use crate::common::*;
use privpy::Role::{S1, S2, Sa, Sb};
use privpy::prelude::*;

fn two_inputs(cfg: Config, n: usize) -> LocalCluster {
    let mut g = rng(8);
    let mut c = LocalCluster::new(cfg).with_seed(2);
    let alice = c.client("alice");
    c.upload(&alice, "x", arr(&[n], &mut g, 5.0)).unwrap();
    c.upload(&alice, "y", arr(&[n], &mut g, 5.0)).unwrap();
    c
}

#[test]
fn elementwise_mul_sends_6n_elements_in_2_rounds() {
    for (name, cfg) in presets() {
        let bytes = cfg.ring().bytes() as u64;
        for n in [1usize, 1000] {
            let run = two_inputs(cfg, n)
                .run(|s| {
                    let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
                    s.output("alice", "z", &(&x * &y))
                })
                .unwrap();
            let st = run.stats();
            let n = n as u64;
            assert_eq!(st.total_bytes(), 6 * n * bytes, "{name}");
            assert_eq!(st.rounds(), 2, "{name}");
            // The links of Protocol 1, element by element.
            for (from, to) in [(S1, Sa), (S1, Sb), (S2, Sa), (S2, Sb), (Sa, S2), (Sb, S1)] {
                assert_eq!(st.link_bytes(from, to), n * bytes, "{name} {from}->{to}");
            }
            // One message per link per round, whatever n.
            assert_eq!(st.total_messages(), 6, "{name}");
        }
    }
}

#[test]
fn public_operations_send_nothing() {
    for (_, cfg) in presets() {
        let run = two_inputs(cfg, 500)
            .run(|s| {
                let x = s.input::<Array1<f64>>("x")?;
                let y = s.input::<Array1<f64>>("y")?;
                let w = Array2::from_elem((500, 3), 0.5);
                let z = (&x * 3.5 + 1.0 - &y) / 2.0;
                let v = z.dot(&w);
                let total = v.sum() + x.mean();
                s.output("alice", "z", &total)
            })
            .unwrap();
        assert_eq!(run.stats().total_bytes(), 0);
        assert_eq!(run.stats().rounds(), 0);
    }
}

#[test]
fn matrix_product_sends_both_operands_twice_and_result_twice() {
    let (m, k, n) = (5u64, 7u64, 3u64);
    for (name, cfg) in presets() {
        let mut g = rng(1);
        let mut c = LocalCluster::new(cfg);
        let alice = c.client("alice");
        c.upload(&alice, "a", arr(&[m as usize, k as usize], &mut g, 1.0))
            .unwrap();
        c.upload(&alice, "b", arr(&[k as usize, n as usize], &mut g, 1.0))
            .unwrap();
        let run = c
            .run(|s| {
                let (a, b) = (s.input::<Array2<f64>>("a")?, s.input::<Array2<f64>>("b")?);
                s.output("alice", "c", &a.dot(&b))
            })
            .unwrap();
        let bytes = cfg.ring().bytes() as u64;
        assert_eq!(
            run.stats().total_bytes(),
            (2 * m * k + 2 * k * n + 2 * m * n) * bytes,
            "{name}"
        );
        assert_eq!(run.stats().rounds(), 2);
    }
}

#[test]
fn sequential_multiplications_add_rounds_and_session_stats_see_them() {
    let run = two_inputs(Config::default(), 10)
        .run(|s| {
            let (x, y) = (s.input::<Array1<f64>>("x")?, s.input::<Array1<f64>>("y")?);
            let before = s.stats();
            let z = &(&x * &y) * &x;
            let d = s.stats().since(&before);
            // S1 and S2 each see the 4 rounds of two chained multiplications.
            if s.role().is_some_and(|r| r.is_primary()) {
                assert_eq!(d.rounds, 4);
            }
            let w = x.reveal();
            assert_eq!(w.len(), 10);
            s.output("alice", "z", &z)
        })
        .unwrap();
    // Two multiplications and one reveal (S1, S2 to everyone: one round).
    assert_eq!(run.stats().rounds(), 5);
    assert_eq!(run.stats().total_bytes(), (12 * 10 + 6 * 10) * 16);
}

/// Emulated links (`LocalCluster::with_link`): each round costs at least the
/// one-way delay, a large message at least its size over the bandwidth, and
/// results do not change.
#[test]
fn emulated_links_impose_delay_and_bandwidth() {
    use privpy::transport::LinkProfile;
    use std::time::{Duration, Instant};
    let profile = LinkProfile {
        delay: Duration::from_millis(4),
        bits_per_sec: 80e6,
    };
    let x = ArrayD::from_shape_fn(vec![20_000], |i| (i[0] % 97) as f64 * 0.25 - 12.0);
    let run = |link: Option<LinkProfile>| {
        let mut c = LocalCluster::new(Config::fast())
            .with_seed(2)
            .with_link(link);
        let alice = c.client("alice");
        c.upload(&alice, "x", &x).unwrap();
        let span = std::sync::Mutex::new(Duration::ZERO);
        let out = c
            .run(|s| {
                let x = s.input::<Array1<f64>>("x")?;
                let t = Instant::now();
                let y = &x * &x; // 2 rounds, 8 bytes per element on each link
                let e = t.elapsed();
                let mut sp = span.lock().unwrap();
                *sp = (*sp).max(e);
                s.output("alice", "y", &y)
            })
            .unwrap();
        let y: Array1<f64> = out.open(&alice, "y").unwrap();
        let t = *span.lock().unwrap();
        (y, t)
    };
    let (direct, _) = run(None);
    let (emulated, t) = run(Some(profile));
    assert_eq!(direct, emulated, "the link changes timing only");
    // Two rounds of 4 ms, and 160 kB over 80 Mbit/s (16 ms) in the first round.
    let floor = 2 * profile.delay + profile.transfer_time(20_000 * 8);
    assert!(t >= floor, "{t:?} < {floor:?}");
    assert!(t < floor * 10, "{t:?}");
}
