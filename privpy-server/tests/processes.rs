//! The `privpy-server` binary as four processes on loopback: a frozen (SIGSTOP) server
//! is blamed after the silence limit while long steps are not failures; a killed
//! server stops the others with an error naming it, and the servers' logs hold no
//! secret or share.

#[path = "../../tests/suite/netkit.rs"]
mod netkit;

use netkit::*;
use privpy::net::client::ClientError;
use privpy::net::wire::RefusalKind;
use privpy::prelude::*;
use privpy::ring::{Ring, Z128};
use privpy::share::share_with;
use rand_chacha::ChaCha12Rng;
use rand_core::SeedableRng;
use std::time::{Duration, Instant};

/// Starts `role` as a `privpy-server` process logging at `level` to [`Net::log`].
fn spawn_process(net: &Net, role: Role, level: &str) -> std::process::Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(net.log(role))
        .unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_privpy-server"))
        .args(["--role", role.name(), "--config"])
        .arg(net.dir.join("cluster.toml"))
        .env("RUST_LOG", level)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap()
}

/// Four `privpy-server` processes; `Sa` is frozen (SIGSTOP) in the middle of a long
/// job. Heartbeats tell the others apart from it: every server, and the client,
/// blame `Sa` (not the server that waited on `Sa`'s messages) within about the
/// silence limit. A long local step on a live server is not a failure: a job
/// whose steps take several times the silence limit completes.
#[test]
fn hung_server_is_blamed_and_long_steps_are_not_failures() {
    let timeout = 1.0;
    let net = Net::with_free_ports("hang", &["alice"], None, timeout);
    let log = |role: Role| net.log(role);
    let mut procs: Vec<std::process::Child> = Role::ALL
        .into_iter()
        .map(|r| spawn_process(&net, r, "info"))
        .collect();
    let mut alice = net.connect_retrying("alice");
    // Long local steps: statistics of 4·10^6 elements (each server's local work per
    // step is several times the 1 s silence limit on this machine).
    let big = Array1::from_shape_fn(4_000_000, |i| (i % 1000) as f64 * 0.01 - 5.0);
    alice.upload("big", &big, &[]).unwrap();
    let t = Instant::now();
    let job = alice.run("stats", &[("x", &["big"])]).unwrap();
    let took = t.elapsed();
    let mean: ArrayD<f64> = alice.fetch(&job, "mean").unwrap();
    let want = big.sum() / big.len() as f64;
    assert!(
        (mean.sum() - want).abs() < 1e-3,
        "mean {} vs {want}",
        mean.sum()
    );
    eprintln!("stats on 4e6 elements took {took:?} with a 1 s silence limit");

    // A long run; Sa is frozen in the middle of it.
    let adult = privpy::data::load_libsvm(
        &privpy::data::shipped("adult/a9a-first-2000"),
        123,
        Some(300),
    )
    .unwrap();
    alice.upload("x", &adult.x, &[]).unwrap();
    alice.upload("y", &adult.y, &[]).unwrap();
    let runner = std::thread::spawn(move || {
        let r = alice.run_with(
            "logistic_regression",
            &[("x", &["x"]), ("y", &["y"])],
            &[("batch", 100.0), ("iterations", 100_000.0), ("lr", 1e-6)],
        );
        (r, alice)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let pid = procs[Role::Sa.index()].id().to_string();
    let stop = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap();
    assert!(stop.success());
    let frozen_at = Instant::now();
    let (result, _alice) = runner.join().unwrap();
    let detected = frozen_at.elapsed();
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    match result {
        Err(ClientError::Refused {
            kind: RefusalKind::Failed,
            lost: Some(Role::Sa),
            ..
        }) => {}
        other => panic!("the client must be told that Sa was lost: {other:?}"),
    }
    assert!(
        detected < Duration::from_secs_f64(timeout + 3.0),
        "detected after {detected:?}"
    );
    eprintln!("a frozen Sa was detected after {detected:?} (silence limit {timeout} s)");
    std::thread::sleep(Duration::from_millis(300));
    for role in [Role::S1, Role::S2, Role::Sb] {
        let text = std::fs::read_to_string(log(role)).unwrap();
        let failed = text
            .lines()
            .find(|l| l.contains("job failed"))
            .unwrap_or_else(|| panic!("{role} log: {text}"));
        assert!(
            failed.contains("Sa"),
            "{role} names the hung peer: {failed}"
        );
    }
    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// Four `privpy-server` processes. One is killed (SIGKILL) in the middle of a
/// program: the other three stop with an error naming it within the timeout, the
/// client is told, and after a restart the job re-runs from the stored inputs. The
/// servers' logs (at debug level) never contain a secret or a share.
#[test]
fn killed_server_process_stops_the_others_and_logs_hold_no_secrets() {
    let timeout = 4.0;
    let net = Net::with_free_ports("kill", &["alice"], None, timeout);
    let log = |role: Role| net.log(role);
    let spawn = |role: Role| spawn_process(&net, role, "debug");
    let mut procs: Vec<std::process::Child> = Role::ALL.into_iter().map(spawn).collect();
    let mut alice = net.connect_retrying("alice");

    // Inputs shared with a known generator, so the test knows every share.
    let cfg = alice.config();
    let mut rng = ChaCha12Rng::seed_from_u64(42);
    let secret = 987.654321;
    let adult = privpy::data::load_libsvm(
        &privpy::data::shipped("adult/a9a-first-2000"),
        123,
        Some(300),
    )
    .unwrap();
    let (x, y) = (adult.x, adult.y);
    let pin = Array1::from_elem(8, secret);
    let xs = share_with(&cfg, &x.view().into_dyn(), &mut rng).unwrap();
    let ys = share_with(&cfg, &y.view().into_dyn(), &mut rng).unwrap();
    let ps = share_with(&cfg, &pin.view().into_dyn(), &mut rng).unwrap();
    alice.upload_shares("x", &xs, &[]).unwrap();
    alice.upload_shares("pin", &ps, &[]).unwrap();
    let job = alice.run("stats", &[("x", &["pin"])]).unwrap();
    let [m1, m2] = alice.fetch_shares(job.id, "mean").unwrap();
    assert!((privpy::share::reconstruct(&cfg, &m1, &m2).unwrap().sum() - secret).abs() < 1e-6);
    alice.upload_shares("y", &ys, &[]).unwrap();

    // A long run; Sb dies in the middle of it.
    let runner = std::thread::spawn(move || {
        let t = Instant::now();
        let r = alice.run_with(
            "logistic_regression",
            &[("x", &["x"]), ("y", &["y"])],
            &[("batch", 100.0), ("iterations", 100_000.0), ("lr", 1e-6)],
        );
        (r, t.elapsed(), alice)
    });
    std::thread::sleep(Duration::from_millis(2500));
    let killed_at = Instant::now();
    procs[Role::Sb.index()].kill().unwrap();
    procs[Role::Sb.index()].wait().unwrap();
    let (result, _, mut alice) = runner.join().unwrap();
    let stopped_after = killed_at.elapsed();
    match result {
        Err(ClientError::Refused {
            kind: RefusalKind::Failed,
            lost: Some(Role::Sb),
            ..
        }) => {}
        other => panic!("the client's error names the lost server: {other:?}"),
    }
    assert!(
        stopped_after < Duration::from_secs_f64(timeout + 4.0),
        "no hang: {stopped_after:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    for role in [Role::S2, Role::Sa] {
        let text = std::fs::read_to_string(log(role)).unwrap();
        let failed = text
            .lines()
            .find(|l| l.contains("job failed"))
            .unwrap_or_else(|| panic!("{role} log: {text}"));
        assert!(
            failed.contains("Sb"),
            "{role} names the lost peer: {failed}"
        );
    }

    // Restart Sb; the job re-runs from the stored inputs.
    procs[Role::Sb.index()] = spawn(Role::Sb);
    let args = [("batch", 100.0), ("iterations", 3.0), ("lr", 0.5)];
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        match alice.run_with(
            "logistic_regression",
            &[("x", &["x"]), ("y", &["y"])],
            &args,
        ) {
            Ok(j) => break j,
            Err(e) if Instant::now() > deadline => panic!("re-run failed: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let [w1, w2] = alice.fetch_shares(job.id, "w").unwrap();
    let w = privpy::share::reconstruct(&cfg, &w1, &w2).unwrap();
    let owned: Vec<(String, f64)> = args.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let (clear, _) = run_local(
        LocalCluster::cleartext(),
        "logistic_regression",
        &[("x", x.clone().into_dyn()), ("y", y.clone().into_dyn())],
        &owned,
        &["w"],
    );
    assert!(
        rel_err(&w, &clear[0]) < 1e-6,
        "re-run equals cleartext: {w} vs {}",
        clear[0]
    );
    drop(alice);
    std::thread::sleep(Duration::from_millis(300));
    for p in &mut procs {
        let _ = p.kill();
        let _ = p.wait();
    }

    // Every share element (inputs and output), and the secret, in the notations a
    // log line might use.
    let mut needles = vec![
        "987.65".to_string(),
        "987654".to_string(),
        "9.87654".to_string(),
    ];
    for sh in xs.iter().chain(&ys).chain(&ps).chain([&w1, &w2, &m1, &m2]) {
        for e in Z128::read_le(&sh.to_bytes()).into_iter().take(200) {
            needles.push(e.0.to_string());
            needles.push(format!("{:x}", e.0));
        }
    }
    needles.retain(|n| n.len() >= 5);
    let mut lines = 0;
    for role in Role::ALL {
        let text = std::fs::read_to_string(log(role)).unwrap();
        assert!(text.contains("job starting"), "{role} logged the jobs");
        lines += text.lines().count();
        for n in &needles {
            assert!(!text.contains(n.as_str()), "{n} leaked into {role}'s log");
        }
    }
    assert!(lines > 20, "the logs are not empty ({lines} lines)");
    let s1_log = std::fs::read_to_string(log(Role::S1)).unwrap();
    assert!(
        s1_log.contains("bytes_len"),
        "debug logs show request sizes, not contents"
    );
}

/// `privpy-server dev`: prints "ready" only once all four servers listen; a second
/// `dev` on the same ports is refused and leaves the running cluster's certificates
/// alone; SIGTERM to `dev` alone stops all four servers (no orphans).
#[test]
fn dev_is_ready_refuses_a_second_cluster_and_forwards_sigterm() {
    use std::io::{BufRead, BufReader};
    let dir = std::env::temp_dir().join(format!("privpy-dev-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = free_base();
    let dev = |d: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_privpy-server"))
            .args(["dev", "--dir"])
            .arg(d)
            .args(["--base-port", &base.to_string(), "--clients", "alice"])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut first = dev(&dir);
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let t = Instant::now();
    let ready = loop {
        match lines.next() {
            Some(Ok(l)) if l.starts_with("ready") => break l,
            Some(Ok(_)) => {}
            other => panic!("dev ended before ready: {other:?}"),
        }
    };
    // Every port listens once "ready" is printed.
    for p in base..base + 6 {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", p)).is_ok(),
            "port {p} not listening after {ready:?}"
        );
    }
    eprintln!("ready after {:?}", t.elapsed());
    let cert = std::fs::read(dir.join("certs/s1.pem")).unwrap();
    // A second dev over the running cluster is refused, and changes nothing.
    let status = dev(&dir).wait().unwrap();
    assert!(!status.success());
    assert_eq!(std::fs::read(dir.join("certs/s1.pem")).unwrap(), cert);
    // The cluster works.
    let cfg = privpy::net::config::ClientConfig::from_file(&dir.join("alice.toml")).unwrap();
    let mut alice = privpy::net::client::Client::connect(&cfg).unwrap();
    alice.upload("x", array![1.0, 2.0], &[]).unwrap();
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    let sum: f64 = alice.fetch(&job, "sum").unwrap();
    assert!((sum - 3.0).abs() < 1e-6);
    drop(alice);
    // SIGTERM to dev only.
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &first.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t = Instant::now();
    let status = loop {
        if let Some(s) = first.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "dev did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    // No server is left behind: every port can be bound again.
    for p in base..base + 6 {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "port {p} still held after dev stopped"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
