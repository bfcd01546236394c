//! The networked deployment over real sockets on loopback: TLS 1.3 links between the
//! four servers, the client library, the share store, access control, and faults
//! (dead and killed servers, bad certificates, malformed frames, wrong shapes,
//! mismatched program versions). The tests that run the `privpy-server` binary as
//! four processes are in `privpy-server/tests/processes.rs`.

use crate::netkit::*;
use ndarray::Ix1;
use privpy::net::client::{Client, ClientError};
use privpy::net::config::ClusterConfig;
use privpy::net::frame::FrameCodec;
use privpy::net::link::read_frame;
use privpy::net::registry::Program;
use privpy::net::server;
use privpy::net::tls::{client_tls, dial_name};
use privpy::net::wire::{Control, RefusalKind, Reply, Request};
use privpy::prelude::*;
use privpy::programs::stock;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The same engine over TLS as over channels: identical traffic per server and
/// rounds, and results equal to cleartext; two data owners' row slices are stacked.
#[test]
fn networked_runs_match_cleartext_and_the_in_process_engine() {
    let mut net = Net::new("parity", &["alice", "bob"], None, 20.0);
    net.start_all();
    let mut alice = net.client("alice");
    let mut bob = net.client("bob");
    assert_eq!(alice.config(), Config::default());

    let x = array![3.5, -1.25, 8.0, 2.75, 1e3, -7.5].into_dyn();
    alice.upload("x", &x, &[]).unwrap();
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    let names: Vec<&str> = job.outputs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["sum", "mean", "var", "max"]);
    let got: Vec<ArrayD<f64>> = ["sum", "mean", "var", "max"]
        .iter()
        .map(|n| alice.fetch(&job, n).unwrap())
        .collect();
    let (clear, _) = run_local(
        LocalCluster::cleartext(),
        "stats",
        &[("x", x.clone())],
        &[],
        &["sum", "mean", "var", "max"],
    );
    let (_, local) = run_local(
        LocalCluster::new(Config::default()),
        "stats",
        &[("x", x.clone())],
        &[],
        &[],
    );
    for (g, c) in got.iter().zip(&clear) {
        assert!(rel_err(g, c) < 1e-7, "private {g} vs cleartext {c}");
    }
    for role in Role::ALL {
        let (tls, chan) = (
            &job.stats[role.index()],
            &local.stats().servers[role.index()],
        );
        assert_eq!(
            tls.bytes_sent, chan.bytes_sent,
            "{role}: same engine, same traffic"
        );
        assert_eq!(tls.rounds, chan.rounds, "{role}: same rounds");
    }
    assert!(job.stats[Role::S1.index()].total_bytes_sent() > 0);

    // Logistic regression on rows of two owners, bob's shared with alice's jobs.
    let adult = privpy::data::load_libsvm(
        &privpy::data::shipped("adult/a9a-first-2000"),
        123,
        Some(200),
    )
    .unwrap();
    let (xa, xb) = (
        adult.x.slice(s![..120, ..]).to_owned(),
        adult.x.slice(s![120.., ..]).to_owned(),
    );
    let (ya, yb) = (
        adult.y.slice(s![..120]).to_owned(),
        adult.y.slice(s![120..]).to_owned(),
    );
    alice.upload("xa", &xa, &[]).unwrap();
    alice.upload("ya", &ya, &[]).unwrap();
    bob.upload("xb", &xb, &["alice"]).unwrap();
    bob.upload("yb", &yb, &["alice"]).unwrap();
    let args = [("batch", 50.0), ("iterations", 4.0), ("lr", 0.5)];
    let job = alice
        .run_with(
            "logistic_regression",
            &[("x", &["xa", "bob/xb"]), ("y", &["ya", "bob/yb"])],
            &args,
        )
        .unwrap();
    let w: Array1<f64> = alice.fetch(&job, "w").unwrap();
    let owned: Vec<(String, f64)> = args.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    let (clear, _) = run_local(
        LocalCluster::cleartext(),
        "logistic_regression",
        &[
            ("x", adult.x.clone().into_dyn()),
            ("y", adult.y.clone().into_dyn()),
        ],
        &owned,
        &["w"],
    );
    assert_eq!(w.len(), 124);
    assert!(
        rel_err(&w.into_dyn(), &clear[0]) < 1e-6,
        "LR weights within 1e-6 of cleartext"
    );
}

/// Owners, readers and fetches: a client cannot overwrite, use or open what is not
/// its own, and an output is gone once fetched.
#[test]
fn access_control_on_uploads_inputs_and_outputs() {
    let mut net = Net::new("access", &["alice", "bob"], None, 20.0);
    net.start_all();
    let mut alice = net.client("alice");
    let mut bob = net.client("bob");
    let x = array![1.0, 2.0, 4.0];
    alice.upload("x", &x, &[]).unwrap();
    // Bob's refusals say nothing about alice's data beyond the names he asked for.
    let kind = |e: ClientError| match e {
        ClientError::Refused { kind, reason, .. } => {
            assert!(
                !reason.contains("belongs") && !reason.contains("shared with"),
                "a refusal reveals another client's data: {reason}"
            );
            kind
        }
        other => panic!("expected a refusal, got {other}"),
    };
    // Names live in their owner's namespace: bob's "x" is "bob/x", not alice's.
    bob.upload("x", array![0.0, 0.0, 0.0], &[]).unwrap();
    let existing = bob.run("stats", &[("x", &["alice/x"])]).unwrap_err();
    let missing = bob.run("stats", &[("x", &["alice/y"])]).unwrap_err();
    assert_eq!(
        existing.to_string().replace("alice/x", "N"),
        missing.to_string().replace("alice/y", "N"),
        "an existing input not shared with bob looks exactly like a missing one"
    );
    assert_eq!(kind(existing), RefusalKind::NotFound, "not shared with bob");
    assert_eq!(kind(missing), RefusalKind::NotFound);
    let err = bob.run("stats", &[("x", &["a/b/c"])]).unwrap_err();
    assert_eq!(kind(err), RefusalKind::Invalid);
    let bobs = bob.run("stats", &[("x", &["x"])]).unwrap();
    assert_eq!(bob.fetch::<f64>(&bobs, "sum").unwrap(), 0.0, "bob's own x");
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    let err = bob.fetch::<f64>(&job, "sum").unwrap_err();
    assert_eq!(kind(err), RefusalKind::NotFound);
    assert!(
        bob.outputs().unwrap().iter().all(|(j, _, _)| *j != job.id),
        "bob sees none of alice's outputs"
    );
    let waiting = alice.outputs().unwrap();
    assert!(
        waiting.iter().any(|(j, n, _)| *j == job.id && n == "sum"),
        "{waiting:?}"
    );
    let sum: f64 = alice.fetch(&job, "sum").unwrap();
    assert!(
        (sum - 7.0).abs() < 1e-6,
        "bob's attempts changed nothing: {sum}"
    );
    let err = alice.fetch::<f64>(&job, "sum").unwrap_err();
    assert_eq!(refusal(err), RefusalKind::NotFound, "deleted once fetched");
    let err = bob.upload("a/b", array![1.0], &[]).unwrap_err();
    assert_eq!(kind(err), RefusalKind::Invalid);
    let err = alice.upload("y", array![1.0], &["mallory"]).unwrap_err();
    assert_eq!(refusal(err), RefusalKind::Invalid, "not a client");

    // Grants name a program (and optionally its version): bob may use alice's g in
    // stats, and in no other program; a grant for another version does not count.
    let v = privpy::programs::VERSION;
    let g = Array1::from_shape_fn(40, |i| i as f64 * 0.1);
    let m = Array2::from_shape_fn((40, 3), |(i, j)| (i * 3 + j) as f64 * 0.1);
    alice.upload("g", &g, &["bob@stats"]).unwrap();
    alice.upload("m", &m, &["bob@stats"]).unwrap();
    alice
        .upload("k", &m, &[&format!("bob@kmeans:{v}")])
        .unwrap();
    alice
        .upload("h", &m, &[&format!("bob@kmeans:{v}.old")])
        .unwrap();
    let job = bob.run("stats", &[("x", &["alice/g"])]).unwrap();
    let sum: f64 = bob.fetch(&job, "sum").unwrap();
    assert!((sum - g.sum()).abs() < 1e-6, "{sum} vs {}", g.sum());
    bob.upload("c0", Array2::from_elem((2, 3), 0.5), &[])
        .unwrap();
    let mut km = |x: &str| {
        bob.run_with(
            "kmeans",
            &[("x", &[x]), ("c0", &["c0"])],
            &[("iterations", 1.0)],
        )
    };
    assert!(km("alice/k").is_ok(), "granted for this version of kmeans");
    let other_program = km("alice/m").unwrap_err();
    assert_eq!(
        kind(other_program),
        RefusalKind::NotFound,
        "granted for stats only"
    );
    let other_version = km("alice/h").unwrap_err();
    assert_eq!(
        kind(other_version),
        RefusalKind::NotFound,
        "granted for another version"
    );
    for bad in ["bob@", "@stats", "bob@stats:", "bob@nosuchprogram"] {
        let err = alice.upload("z", array![1.0], &[bad]).unwrap_err();
        assert_eq!(refusal(err), RefusalKind::Invalid, "grant {bad:?}");
    }
}

/// Wrong shapes, unknown programs and arguments, NaN: refused with the reason,
/// before any server computes; the cluster keeps working.
#[test]
fn bad_requests_are_refused_with_reasons() {
    let mut net = Net::new("badreq", &["alice"], None, 20.0);
    net.start_all();
    let mut alice = net.client("alice");
    alice
        .upload("img", Array2::<f64>::zeros((2, 783)), &[])
        .unwrap();
    let bindings: Vec<(&str, &[&str])> = vec![
        ("images", &["img"]),
        ("w1", &["img"]),
        ("b1", &["img"]),
        ("w2", &["img"]),
        ("b2", &["img"]),
        ("w3", &["img"]),
        ("b3", &["img"]),
    ];
    let err = alice.run("mlp_predict", &bindings).unwrap_err().to_string();
    assert!(
        err.contains("must have shape [_, 784], got [2, 783]"),
        "{err}"
    );
    let err = alice.run("nope", &[]).unwrap_err().to_string();
    assert!(err.contains("no program \"nope\""), "{err}");
    let err = alice.run("stats", &[]).unwrap_err().to_string();
    assert!(err.contains("exactly once"), "{err}");
    alice.upload("v", array![1.0, 2.0], &[]).unwrap();
    let err = alice
        .run_with("stats", &[("x", &["v"])], &[("speed", 1.0)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no argument \"speed\""), "{err}");
    let err = alice
        .run("stats", &[("x", &["missing"])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("no input named \"missing\""), "{err}");
    let err = alice
        .upload("n", array![1.0, f64::NAN], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN"), "{err}");
    let err = alice
        .run_with(
            "logistic_regression",
            &[("x", &["img"]), ("y", &["v"])],
            &[("batch", 0.0)],
        )
        .unwrap_err();
    assert_eq!(
        refusal(err),
        RefusalKind::Invalid,
        "batch must be at least 2"
    );
    let job = alice.run("stats", &[("x", &["v"])]).unwrap();
    assert!((alice.fetch::<f64>(&job, "mean").unwrap() - 1.5).abs() < 1e-6);
}

/// A server with another version of a program refuses the job at session start;
/// after it is replaced, the same stored inputs run.
#[test]
fn program_version_mismatch_is_refused_at_session_start() {
    let mut net = Net::new("version", &["alice"], None, 10.0);
    for role in [Role::S1, Role::S2, Role::Sa] {
        net.start(role, stock());
    }
    let mut other = stock();
    other.register(Program::new("stats", "0.0.0-other", |_, _| Ok(())).input("x", [None]));
    net.start(Role::Sb, other);
    let mut alice = net.client("alice");
    alice.upload("x", array![2.0, 4.0], &[]).unwrap();
    let err = alice
        .run("stats", &[("x", &["x"])])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Sb refused the job") && err.contains("version \"0.0.0-other\""),
        "{err}"
    );
    net.kill(Role::Sb);
    net.start(Role::Sb, stock());
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    assert!((alice.fetch::<f64>(&job, "mean").unwrap() - 3.0).abs() < 1e-6);
}

/// A dead server is named within the timeout; restarted servers (S1 and S2
/// included) find the stored inputs and unfetched outputs, and the job re-runs.
#[test]
fn dead_server_is_named_and_restarts_lose_nothing() {
    let timeout = 3.0;
    let mut net = Net::new("restart", &["alice"], None, timeout);
    for role in [Role::S1, Role::S2, Role::Sa] {
        net.start(role, stock());
    }
    let mut alice = net.client("alice");
    alice.upload("x", array![1.0, 2.0, 6.0], &[]).unwrap();
    let t = Instant::now();
    let err = alice
        .run("stats", &[("x", &["x"])])
        .unwrap_err()
        .to_string();
    assert!(err.contains("Sb"), "the error names the dead server: {err}");
    assert!(
        t.elapsed() < Duration::from_secs_f64(timeout + 3.0),
        "bounded: {:?}",
        t.elapsed()
    );
    net.start(Role::Sb, stock());
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    drop(alice);
    // Restart every server: inputs and the unfetched output survive.
    for role in Role::ALL {
        net.kill(role);
    }
    net.start_all();
    let mut alice = net.client("alice");
    assert!((alice.fetch::<f64>(&job, "sum").unwrap() - 9.0).abs() < 1e-6);
    let again = alice.run("stats", &[("x", &["x"])]).unwrap();
    assert!((alice.fetch::<f64>(&again, "max").unwrap() - 6.0).abs() < 1e-6);
}

/// The refusal kind of a client error (panics on any other error).
fn refusal(e: ClientError) -> RefusalKind {
    match e {
        ClientError::Refused { kind, .. } => kind,
        other => panic!("expected a refusal, got {other}"),
    }
}

/// Atomic uploads: S1 or S2 killed at each step of an upload, a run and a fetch.
/// A job never runs on shares of one input from two uploads (it is refused as
/// stale until the input is uploaded again), no stored input or unfetched output
/// is lost, and every result that comes back is right.
#[test]
fn faults_during_uploads_runs_and_fetches_never_give_wrong_results() {
    let mut net = Net::new("atomic", &["alice"], None, 3.0);
    net.start_all();
    let v1 = array![1.0, 2.0, 3.0, 4.0];
    let v2 = array![-10.0, 20.0, 5.5, 0.25];
    let mean = |v: &Array1<f64>| v.sum() / v.len() as f64;
    let check_mean = |alice: &mut Client, want: f64| {
        let job = alice.run("stats", &[("x", &["x"])]).unwrap();
        let got: f64 = alice.fetch(&job, "mean").unwrap();
        assert!((got - want).abs() < 1e-6, "mean {got}, expected {want}");
    };
    let mut alice = net.client("alice");
    alice.upload("x", &v1, &[]).unwrap();
    check_mean(&mut alice, mean(&v1));

    // 1. S2 dies before its share of a re-upload: S1 has v2, S2 still v1 (same shape).
    net.kill(Role::S2);
    assert!(alice.upload("x", &v2, &[]).is_err(), "S2 is down");
    net.start(Role::S2, stock());
    let mut alice = net.client("alice");
    let before = alice.outputs().unwrap();
    let err = alice.run("stats", &[("x", &["x"])]).unwrap_err();
    assert_eq!(refusal(err), RefusalKind::Stale, "mixed shares are refused");
    assert_eq!(
        alice.outputs().unwrap(),
        before,
        "no output of a refused job"
    );
    // Uploading again repairs it.
    alice.upload("x", &v2, &[]).unwrap();
    check_mean(&mut alice, mean(&v2));

    // 2. A re-upload with another shape that reaches only S1.
    net.kill(Role::S2);
    assert!(alice.upload("x", array![7.0, 8.0], &[]).is_err());
    net.start(Role::S2, stock());
    let mut alice = net.client("alice");
    let err = alice.run("stats", &[("x", &["x"])]).unwrap_err();
    assert_eq!(refusal(err), RefusalKind::Stale);
    alice.upload("x", &v2, &[]).unwrap();

    // 3. S1 dies before an upload: nothing changes anywhere; the old value stays usable.
    net.kill(Role::S1);
    assert!(alice.upload("x", &v1, &[]).is_err(), "S1 is down");
    net.start(Role::S1, stock());
    let mut alice = net.client("alice");
    check_mean(&mut alice, mean(&v2));

    // 4. A primary dies before a run: the run fails naming it; inputs survive.
    for role in [Role::S1, Role::S2] {
        net.kill(role);
        let mut alice = match Client::connect(&net.client_config("alice")) {
            Ok(c) => c,
            Err(e) => {
                assert!(e.to_string().contains(&role.to_string()), "{e}");
                net.start(role, stock());
                continue;
            }
        };
        let err = alice.run("stats", &[("x", &["x"])]).unwrap_err();
        assert!(err.to_string().contains(&role.to_string()), "{err}");
        net.start(role, stock());
    }
    let mut alice = net.client("alice");
    check_mean(&mut alice, mean(&v2));

    // 5. A fetch interrupted after S1 answered: the output is not lost.
    for role in [Role::S2, Role::S1] {
        let mut alice = net.client("alice");
        let job = alice.run("stats", &[("x", &["x"])]).unwrap();
        net.kill(role);
        assert!(alice.fetch::<f64>(&job, "sum").is_err(), "{role} is down");
        net.start(role, stock());
        let mut alice = net.client("alice");
        let sum: f64 = alice.fetch(&job, "sum").unwrap();
        assert!((sum - v2.sum()).abs() < 1e-6, "{sum}");
        let err = alice.fetch::<f64>(&job, "sum").unwrap_err();
        assert_eq!(refusal(err), RefusalKind::NotFound, "released once fetched");
    }
}

/// Certificates: a client from another authority, a client trusting another server
/// authority, a known authority but an unknown client, a server from another
/// authority: all refused; the cluster keeps serving.
#[test]
fn certificates_from_the_wrong_authority_and_unknown_clients_are_refused() {
    let mut net = Net::new("certs", &["alice", "mallory"], Some(&["alice"]), 10.0);
    net.start_all();
    let stranger = Net::new("certs-other", &["alice"], None, 10.0);

    let err = Client::connect(&net.client_config("mallory"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown client"), "{err}");

    // alice's name, but signed by another client authority.
    let mut forged = net.client_config("alice");
    forged.cert = stranger.dir.join("certs/alice.pem");
    forged.key = stranger.dir.join("certs/alice.key");
    let err = Client::connect(&forged).unwrap_err().to_string();
    assert!(
        err.contains("cannot connect to S1")
            && err.contains("does not accept this client's certificate"),
        "{err}"
    );

    // A client that trusts another server authority refuses our servers.
    let mut wary = net.client_config("alice");
    wary.server_ca = stranger.dir.join("certs/server-ca.pem");
    let err = Client::connect(&wary).unwrap_err().to_string();
    assert!(
        err.contains("TLS handshake failed") && err.contains("invalid peer certificate"),
        "{err}"
    );

    // A "server" from another authority dialing S2's peer port gets no further
    // than the handshake.
    let reply = raw_exchange(
        net.cfg.server(Role::S2).peer_addr,
        Role::S2,
        &stranger.dir.join("certs/s1.pem"),
        &stranger.dir.join("certs/s1.key"),
        &net.dir.join("certs/server-ca.pem"),
        &hello_bytes(),
    );
    assert!(reply.is_err(), "refused: {reply:?}");

    let mut alice = net.client("alice");
    alice.upload("x", array![1.0, 2.0], &[]).unwrap();
    alice.run("stats", &[("x", &["x"])]).unwrap();
}

fn hello_bytes() -> Vec<u8> {
    let mut out = Vec::new();
    FrameCodec::new(1 << 20)
        .encode_control(&Control::Request(Request::Info).encode(), &mut out)
        .unwrap();
    out
}

/// Opens a TLS connection to `addr` (expecting `role`'s certificate), writes `bytes`
/// raw, and returns the first control message that comes back.
fn raw_exchange(
    addr: std::net::SocketAddr,
    role: Role,
    cert: &Path,
    key: &Path,
    ca: &Path,
    bytes: &[u8],
) -> Result<Control, String> {
    raw_exchange_within(addr, role, (cert, key, ca), bytes, Duration::from_secs(10))
}

/// [`raw_exchange`], waiting at most `wait` for the answer, then closing.
fn raw_exchange_within(
    addr: std::net::SocketAddr,
    role: Role,
    (cert, key, ca): (&Path, &Path, &Path),
    bytes: &[u8],
    wait: Duration,
) -> Result<Control, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use tokio::io::AsyncWriteExt;
        let tls = client_tls(cert, key, ca).map_err(|e| e.to_string())?;
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let mut s = tokio_rustls::TlsConnector::from(tls)
            .connect(dial_name(role), tcp)
            .await
            .map_err(|e| e.to_string())?;
        s.write_all(bytes).await.map_err(|e| e.to_string())?;
        s.flush().await.map_err(|e| e.to_string())?;
        let frame = tokio::time::timeout(wait, read_frame(&mut s, &FrameCodec::new(1 << 20)))
            .await
            .map_err(|_| "no answer".to_string())?
            .map_err(|e| e.to_string())?;
        match frame {
            privpy::net::frame::Frame::Control(b) => Control::decode(&b).map_err(|e| e.to_string()),
            other => Err(format!("unexpected {other:?}")),
        }
    })
}

/// Sends `req` as alice, on a raw connection to `role`'s client port, and returns
/// the first control message that comes back.
fn alice_request(net: &Net, role: Role, req: Request) -> Result<Control, String> {
    let mut bytes = Vec::new();
    FrameCodec::new(1 << 20)
        .encode_control(&Control::Request(req).encode(), &mut bytes)
        .unwrap();
    let certs = net.dir.join("certs");
    raw_exchange(
        net.cfg.server(role).client_addr.unwrap(),
        role,
        &certs.join("alice.pem"),
        &certs.join("alice.key"),
        &certs.join("server-ca.pem"),
        &bytes,
    )
}

/// Oversized, garbage, undecodable and truncated frames from an authenticated
/// client, and garbage on a server link: refused with a reason, no panic, and the
/// servers keep serving.
#[test]
fn malformed_frames_are_refused_and_servers_keep_serving() {
    let mut net = Net::new("frames", &["alice"], None, 10.0);
    net.start_all();
    let certs = net.dir.join("certs");
    let s1 = net.cfg.server(Role::S1).client_addr.unwrap();
    let send = |bytes: &[u8]| {
        raw_exchange(
            s1,
            Role::S1,
            &certs.join("alice.pem"),
            &certs.join("alice.key"),
            &certs.join("server-ca.pem"),
            bytes,
        )
    };
    let refused = |r: Result<Control, String>| match r {
        Ok(Control::Reply(Reply::Refused(r))) => {
            assert_eq!(r.kind, RefusalKind::Invalid, "{r:?}");
            r.reason
        }
        other => panic!("expected a refusal, got {other:?}"),
    };
    let oversized = 0xFFFF_FFF0u32.to_le_bytes();
    assert!(refused(send(&oversized)).contains("exceeds the limit"));
    let mut garbage_tag = hello_bytes();
    garbage_tag[4] = 9;
    assert!(refused(send(&garbage_tag)).contains("unknown frame tag 9"));
    let mut garbage_body = Vec::new();
    FrameCodec::new(1 << 20)
        .encode_control(&[7, 7, 7, 7, 7], &mut garbage_body)
        .unwrap();
    assert!(refused(send(&garbage_body)).contains("bad control message"));
    let mut protocol_frame = Vec::new();
    FrameCodec::new(1 << 20)
        .encode(
            &privpy::transport::Message {
                op: 1,
                round: 1,
                payload: vec![1, 2, 3],
            },
            &mut protocol_frame,
        )
        .unwrap();
    assert!(refused(send(&protocol_frame)).contains("expected a control message"));
    // Truncated: half a frame, then the connection closes.
    let half = &hello_bytes()[..10];
    assert!(send(half).is_err(), "no reply to half a frame");
    // Garbage on a server link, from a genuine server certificate.
    let sa = net.cfg.server(Role::Sa).peer_addr;
    let r = raw_exchange(
        sa,
        Role::Sa,
        &certs.join("s1.pem"),
        &certs.join("s1.key"),
        &certs.join("server-ca.pem"),
        &[0xde, 0xad, 0xbe, 0xef, 1, 2, 3],
    );
    assert!(!matches!(r, Ok(Control::HelloAck(Ok(())))), "{r:?}");
    // A genuine server certificate claiming another role is refused.
    let mut claim = Vec::new();
    FrameCodec::new(1 << 20)
        .encode_control(&Control::Link { from: Role::S2 }.encode(), &mut claim)
        .unwrap();
    let r = raw_exchange(
        sa,
        Role::Sa,
        &certs.join("s1.pem"),
        &certs.join("s1.key"),
        &certs.join("server-ca.pem"),
        &claim,
    );
    match r {
        Ok(Control::HelloAck(Err(reason))) => {
            assert_eq!(reason.kind, RefusalKind::Denied);
            assert!(reason.reason.contains("not issued to S2"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let mut alice = net.client("alice");
    alice.upload("x", array![5.0, 1.0], &[]).unwrap();
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    assert!((alice.fetch::<f64>(&job, "sum").unwrap() - 6.0).abs() < 1e-6);
}

/// The main demo's computation over TLS: a model owner uploads LeNet-5, a user
/// uploads images and runs the stock `lenet5_predict`; the predicted digits equal
/// the cleartext engine's (and the labels).
#[test]
fn networked_lenet5_inference_equals_cleartext() {
    let mut net = Net::new("lenet", &["owner", "user"], None, 30.0);
    net.start_all();
    let mut owner = net.client("owner");
    let mut user = net.client("user");
    let model = privpy::model::load_safetensors(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-lenet5.safetensors"),
    )
    .unwrap();
    let test = privpy::data::load_mnist(
        &privpy::data::shipped("mnist/t10k-300-images-idx3-ubyte"),
        &privpy::data::shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(4),
    )
    .unwrap();
    let names: Vec<&str> = model.keys().map(String::as_str).collect();
    for (k, t) in &model {
        owner.upload(k, t, &["user"]).unwrap();
    }
    user.upload("images", &test.images, &[]).unwrap();
    let qualified: Vec<String> = names.iter().map(|n| format!("owner/{n}")).collect();
    let one: Vec<[&str; 1]> = qualified.iter().map(|n| [n.as_str()]).collect();
    let mut bindings: Vec<(&str, &[&str])> =
        names.iter().zip(&one).map(|(n, b)| (*n, &b[..])).collect();
    bindings.push(("images", &["images"]));
    let job = user.run("lenet5_predict", &bindings).unwrap();
    // The model owner cannot fetch the user's prediction; the user can, once.
    assert!(owner.fetch::<Array1<f64>>(&job, "digits").is_err());
    let digits: Array1<f64> = user.fetch(&job, "digits").unwrap();
    let mut inputs: Vec<(&str, ArrayD<f64>)> =
        model.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    inputs.push(("images", test.images.clone().into_dyn()));
    let (clear, _) = run_local(
        LocalCluster::cleartext(),
        "lenet5_predict",
        &inputs,
        &[],
        &["digits"],
    );
    assert_eq!(digits.into_dyn(), clear[0]);
    assert_eq!(
        clear[0]
            .mapv(|v| v as u8)
            .into_dimensionality::<Ix1>()
            .unwrap(),
        test.labels
    );
}

/// A primary whose share store was emptied or truncated while it was down refuses
/// to start, with an error that says so (no panic, no silently empty store); with
/// the intact file back it starts and the data is all there.
#[test]
fn a_damaged_store_stops_the_server_from_starting() {
    use privpy::net::server::ServerError;
    use privpy::net::store::StoreError;
    let mut net = Net::new("damaged", &["alice"], None, 5.0);
    net.start_all();
    let mut alice = net.client("alice");
    alice.upload("x", array![1.0, 2.0, 3.0], &[]).unwrap();
    drop(alice);
    net.kill(Role::S2);
    let dir = net.cfg.server(Role::S2).data_dir.clone().unwrap();
    let path = dir.join("shares.redb");
    // Wait until the killed server has let go of the file.
    let deadline = Instant::now() + Duration::from_secs(10);
    let good = loop {
        let bytes = std::fs::read(&path).unwrap();
        match server::start(Role::S2, net.cfg.clone(), stock()) {
            Ok(h) => {
                h.kill();
                std::thread::sleep(Duration::from_millis(200));
                break bytes;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => panic!("S2 did not restart: {e}"),
        }
    };
    for damaged in [Vec::new(), good[..good.len() / 2].to_vec()] {
        std::fs::write(&path, &damaged).unwrap();
        // The stopped instance may hold its ports a moment longer: wait for them,
        // so that the start reaches the store.
        let deadline = Instant::now() + Duration::from_secs(10);
        let r = loop {
            match server::start(Role::S2, net.cfg.clone(), stock()) {
                Err(ServerError::Bind { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                other => break other,
            }
        };
        assert!(
            matches!(r, Err(ServerError::Store(StoreError::Damaged { .. }))),
            "{:?}",
            r.err()
        );
    }
    let _ = std::fs::remove_file(dir.join("store.repaired"));
    std::fs::write(&path, &good).unwrap();
    net.start(Role::S2, stock());
    let mut alice = net.client("alice");
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    assert!((alice.fetch::<f64>(&job, "sum").unwrap() - 6.0).abs() < 1e-6);
}

/// A job running past `max_job_secs` is stopped on every server with a failure that
/// blames no server; a job whose client disconnects is cancelled (its slot frees
/// at once, so the next job runs); the cluster keeps serving.
#[test]
fn job_deadline_and_client_disconnect_stop_jobs() {
    let mut net = Net::new("deadline", &["alice"], None, 10.0);
    net.configure("max_job_secs = 2\nmax_jobs = 1\nmax_queued_jobs = 4");
    net.start_all();
    let mut alice = net.client("alice");
    let adult = privpy::data::load_libsvm(
        &privpy::data::shipped("adult/a9a-first-2000"),
        123,
        Some(300),
    )
    .unwrap();
    alice.upload("x", &adult.x, &[]).unwrap();
    alice.upload("y", &adult.y, &[]).unwrap();
    let bindings: [(&str, &[&str]); 2] = [("x", &["x"]), ("y", &["y"])];
    let long = [("batch", 100.0), ("iterations", 100_000.0), ("lr", 1e-6)];
    let t = Instant::now();
    match alice.run_with("logistic_regression", &bindings, &long) {
        Err(ClientError::Refused {
            kind: RefusalKind::Failed,
            lost: None,
            ..
        }) => {}
        other => panic!("the deadline stops the job: {other:?}"),
    }
    let took = t.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "stopped after {took:?}"
    );
    let short = [("batch", 100.0), ("iterations", 2.0), ("lr", 0.5)];
    alice
        .run_with("logistic_regression", &bindings, &short)
        .expect("the cluster keeps serving after a deadline");

    // A raw client asks for the long job and hangs up after 0.5 s.
    let certs = net.dir.join("certs");
    let s1 = net.cfg.server(Role::S1).client_addr.unwrap();
    let mut run = Vec::new();
    let req = Request::Run {
        program: "logistic_regression".into(),
        bindings: bindings
            .iter()
            .map(|(p, v)| (p.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect(),
        args: long.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
    };
    FrameCodec::new(1 << 20)
        .encode_control(&Control::Request(req).encode(), &mut run)
        .unwrap();
    let hung_up_at = Instant::now();
    let r = raw_exchange_within(
        s1,
        Role::S1,
        (
            &certs.join("alice.pem"),
            &certs.join("alice.key"),
            &certs.join("server-ca.pem"),
        ),
        &run,
        Duration::from_millis(500),
    );
    assert!(r.is_err(), "no answer within 0.5 s: {r:?}");
    // With one job slot, this job waits for the cancelled one: it must start well
    // before the 2 s deadline would have freed the slot.
    alice
        .run_with("logistic_regression", &bindings, &short)
        .expect("runs after the cancelled job");
    let waited = hung_up_at.elapsed();
    assert!(
        waited < Duration::from_millis(1900),
        "the cancelled job held the slot: {waited:?}"
    );
}

/// Admission control over real sockets: connections beyond `max_connections` are
/// closed at once; idle unauthenticated ones are closed after the handshake
/// timeout; a real client is then served; run requests beyond the job slots and
/// the queue are refused as busy, and the cluster keeps working.
#[test]
fn connection_cap_handshake_timeout_and_busy_refusals() {
    use std::io::Read;
    let mut net = Net::new("admission", &["alice"], None, 10.0);
    net.configure(
        "handshake_timeout_secs = 1\nidle_timeout_secs = 2\nmax_connections = 16\nmax_jobs = 1\nmax_queued_jobs = 0",
    );
    net.start_all();
    let addr = net.cfg.server(Role::S1).client_addr.unwrap();
    let t0 = Instant::now();
    let mut idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    // Every one is closed by the server: the extra ones at once, the others after
    // the handshake timeout (read returns 0 or an error, never blocks past it).
    for s in &mut idle {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = [0u8; 1];
        let r = s.read(&mut b);
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        if let Err(e) = r {
            assert_ne!(
                e.kind(),
                std::io::ErrorKind::WouldBlock,
                "not closed in time"
            );
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    drop(idle);
    let mut alice = net.client("alice");
    alice
        .upload("x", Array1::from_shape_fn(400, |i| (i % 7) as f64), &[])
        .unwrap();
    alice
        .upload("y", Array1::from_shape_fn(200, |i| (i % 2) as f64), &[])
        .unwrap();
    alice
        .upload(
            "m",
            Array2::from_shape_fn((200, 2), |(i, j)| ((i + j) % 5) as f64),
            &[],
        )
        .unwrap();
    // A long job holds the only slot; a second request is refused as busy.
    let cfg = net.client_config("alice");
    let long = std::thread::spawn(move || {
        let mut c = Client::connect(&cfg).unwrap();
        loop {
            let r = c.run_with(
                "logistic_regression",
                &[("x", &["m"]), ("y", &["y"])],
                &[("iterations", 3000.0), ("batch", 20.0)],
            );
            match r {
                Err(ClientError::Refused {
                    kind: RefusalKind::Busy,
                    ..
                }) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                r => return r,
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut saw_busy = false;
    while Instant::now() < deadline && !long.is_finished() {
        match alice.run("stats", &[("x", &["x"])]) {
            Err(ClientError::Refused {
                kind: RefusalKind::Busy,
                ..
            }) => {
                saw_busy = true;
                break;
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("{e}"),
        }
    }
    let finished = long.is_finished();
    let long = long.join().unwrap();
    assert!(
        saw_busy,
        "no busy refusal while the slot was taken (long job finished: {finished}, {long:?})"
    );
    long.unwrap();
    // Alice's connection sat idle past idle_timeout_secs and was closed.
    assert!(
        alice.run("stats", &[("x", &["x"])]).is_err(),
        "closed when idle"
    );
    let mut alice = net.client("alice");
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    let sum: f64 = alice.fetch(&job, "sum").unwrap();
    assert!((sum - (0..400).map(|i| (i % 7) as f64).sum::<f64>()).abs() < 1e-6);
}

/// A grantee tries to extract a granted input through each stock program with
/// degenerate arguments; every attempt is refused before the job starts, and an
/// honest use of the grant still works.
#[test]
fn granted_inputs_cannot_be_copied_out_by_stock_programs() {
    let mut net = Net::new("extract", &["alice", "bob"], None, 20.0);
    net.start_all();
    let mut alice = net.client("alice");
    let mut bob = net.client("bob");
    let m = Array2::from_shape_fn((6, 2), |(i, j)| (i * 3 + j) as f64 * 1.5 - 4.0);
    alice.upload("m", &m, &["bob"]).unwrap();
    alice.upload("one", array![42.0], &["bob"]).unwrap();
    alice
        .upload(
            "labels",
            Array1::from_shape_fn(6, |i| (i % 2) as f64),
            &["bob"],
        )
        .unwrap();
    bob.upload("c0", array![[0.0, 0.0], [5.0, 5.0]], &[])
        .unwrap();
    bob.upload("r", Array2::<f64>::ones((6, 3)), &[]).unwrap();
    bob.upload("mask", Array2::<f64>::ones((6, 3)), &[])
        .unwrap();
    bob.upload("v0", Array2::<f64>::ones((3, 2)), &[]).unwrap();
    alice
        .upload(
            "labels2",
            Array2::from_shape_fn((6, 1), |(i, _)| (i % 2) as f64),
            &["bob"],
        )
        .unwrap();
    let invalid = |r: Result<privpy::net::client::JobResult, ClientError>, what: &str| match r {
        Err(ClientError::Refused {
            kind: RefusalKind::Invalid,
            ..
        }) => {}
        other => panic!("{what}: expected an invalid-argument refusal, got {other:?}"),
    };
    let large = [("x", &["alice/m"][..]), ("y", &["alice/labels2"][..])];
    invalid(
        bob.run_with("logistic_regression_large", &large, &[("batch", 1.0)]),
        "a streamed gradient of one row",
    );
    invalid(
        bob.run_with("logistic_regression_large", &large, &[("epochs", 0.0)]),
        "zero epochs of streamed training",
    );
    invalid(
        bob.run("stats", &[("x", &["alice/one"])]),
        "stats of one value",
    );
    invalid(
        bob.run_with(
            "kmeans",
            &[("x", &["alice/m"]), ("c0", &["alice/m"])],
            &[("iterations", 0.0)],
        ),
        "k-means, zero iterations",
    );
    invalid(
        bob.run_with(
            "kmeans",
            &[("x", &["alice/m"]), ("c0", &["alice/m"])],
            &[("iterations", 1.0)],
        ),
        "k-means, one centroid per point",
    );
    invalid(
        bob.run_with(
            "logistic_regression",
            &[("x", &["alice/m"]), ("y", &["alice/labels"])],
            &[("batch", 1.0), ("iterations", 1.0)],
        ),
        "logistic regression, batch of one",
    );
    invalid(
        bob.run_with(
            "logistic_regression",
            &[("x", &["alice/m"]), ("y", &["alice/labels"])],
            &[("iterations", 0.0)],
        ),
        "logistic regression, zero iterations",
    );
    invalid(
        bob.run_with(
            "matrix_factorization",
            &[
                ("r", &["r"]),
                ("mask", &["mask"]),
                ("u0", &["alice/m"]),
                ("v0", &["v0"]),
            ],
            &[("iterations", 0.0)],
        ),
        "matrix factorization, zero iterations",
    );
    // The grant's intended use: centroids of alice's points, from bob's start.
    let job = bob
        .run_with(
            "kmeans",
            &[("x", &["alice/m"]), ("c0", &["c0"])],
            &[("iterations", 2.0)],
        )
        .unwrap();
    let c: Array2<f64> = bob.fetch(&job, "centroids").unwrap();
    assert_eq!(c.dim(), (2, 2));
    assert!(c.iter().all(|v| v.is_finite()));
    // A job that would run for months is refused up front.
    invalid(
        bob.run_with(
            "kmeans",
            &[("x", &["alice/m"]), ("c0", &["c0"])],
            &[("iterations", 1e9)],
        ),
        "k-means, 10^9 iterations",
    );
    // Deleting: only the owner's own namespace; afterwards jobs cannot find it.
    let err = bob.delete("m").unwrap_err();
    assert_eq!(
        refusal(err),
        RefusalKind::NotFound,
        "bob has no m of his own"
    );
    assert!(
        bob.run("stats", &[("x", &["alice/labels"])]).is_ok(),
        "alice's inputs stay"
    );
    alice.delete("labels").unwrap();
    let err = bob.run("stats", &[("x", &["alice/labels"])]).unwrap_err();
    assert_eq!(refusal(err), RefusalKind::NotFound, "deleted");
    let err = alice.delete("labels").unwrap_err();
    assert_eq!(refusal(err), RefusalKind::NotFound, "already deleted");
    alice
        .upload("labels", Array1::from_shape_fn(4, |i| i as f64), &[])
        .unwrap();
    let job = alice.run("stats", &[("x", &["labels"])]).unwrap();
    assert!((alice.fetch::<f64>(&job, "sum").unwrap() - 6.0).abs() < 1e-6);
}

/// Key custody, end to end on four loopback addresses (127.0.0.1–4): every host and
/// the client make their own key and request; the authority signs the requests and
/// writes a bundle with no private key; each host runs from its own directory with
/// its own key; a job runs and its result is right. Requests for the wrong identity,
/// with extra or wildcard names, or tampered with, are refused.
#[test]
fn hosts_and_clients_keep_their_keys_and_the_authority_signs_requests() {
    use privpy::net::custody::{Authority, Identity, request};
    use privpy::net::tls::TlsError;
    let root = std::env::temp_dir().join(format!("privpy-custody-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (requests, ca_dir, bundle) = (root.join("requests"), root.join("ca"), root.join("bundle"));
    std::fs::create_dir_all(&requests).unwrap();
    // On each host and on alice's machine: a key and a request; only the request
    // travels.
    let host_dir = |r: Role| root.join(format!("host-{}", r.name()));
    let mut who: Vec<(Identity, PathBuf)> = Role::ALL
        .iter()
        .map(|&r| (Identity::Server(r), host_dir(r)))
        .collect();
    who.push((Identity::Client("alice".into()), root.join("alice")));
    for (id, dir) in &who {
        let csr = request(dir, id).unwrap();
        std::fs::copy(&csr, requests.join(csr.file_name().unwrap())).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let key = dir.join("certs").join(format!("{}.key", id.file_stem()));
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{key:?}");
        }
        // A key is never overwritten.
        assert!(matches!(request(dir, id), Err(TlsError::File { .. })));
    }
    let ca = Authority::open(&ca_dir).unwrap();
    let base = free_base();
    let hosts = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"];
    ca.issue_cluster(&requests, &bundle, hosts, base, &["alice"], "default")
        .unwrap();
    // The bundle and the authority's directory hold no key of a host or client.
    for dir in [&bundle, &ca_dir] {
        for e in walk(dir) {
            let name = e.file_name().unwrap().to_string_lossy().to_string();
            assert!(
                !name.ends_with(".key")
                    || name.starts_with("server-ca")
                    || name.starts_with("client-ca"),
                "{e:?} in {dir:?}"
            );
        }
    }
    // Each host copies the bundle beside its own key and runs from there.
    for (_, dir) in &who {
        copy_tree(&bundle, dir);
    }
    // A reopened authority signs as the published one.
    let again = Authority::open(&ca_dir).unwrap();
    let mut servers = Vec::new();
    for r in Role::ALL {
        let cfg = ClusterConfig::from_file(&host_dir(r).join("cluster.toml")).unwrap();
        servers.push(server::start(r, cfg, stock()).unwrap());
    }
    let cfg = privpy::net::config::ClientConfig::from_file(&root.join("alice").join("alice.toml"))
        .unwrap();
    let mut alice = Client::connect(&cfg).unwrap();
    alice.upload("x", &array![1.0, 2.0, 3.5], &[]).unwrap();
    let job = alice.run("stats", &[("x", &["x"])]).unwrap();
    let sum: f64 = alice.fetch(&job, "sum").unwrap();
    assert!((sum - 6.5).abs() < 1e-6, "{sum}");
    for s in servers {
        s.kill();
    }
    // Refused requests: alice's request presented as s1's, or as bob's.
    let alice_csr = std::fs::read_to_string(requests.join("alice.csr")).unwrap();
    for id in [Identity::Server(Role::S1), Identity::Client("bob".into())] {
        assert!(
            matches!(again.sign(&alice_csr, &id), Err(TlsError::Request { .. })),
            "{id:?}"
        );
    }
    // A request that names more than its identity, or a wildcard.
    for names in [
        vec!["s2.privpy".to_string(), "s1.privpy".to_string()],
        vec!["*.privpy".to_string()],
    ] {
        let key = rcgen_key();
        let csr = csr_for(names, &key);
        assert!(matches!(
            again.sign(&csr, &Identity::Server(Role::S2)),
            Err(TlsError::Request { .. })
        ));
    }
    // A tampered request (one byte of its body changed): the signature fails.
    let s2 = std::fs::read_to_string(requests.join("s2.csr")).unwrap();
    let mut lines: Vec<String> = s2.lines().map(String::from).collect();
    let mid = lines.len() / 2;
    let flipped: String = lines[mid]
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 10 {
                if c == 'A' { 'B' } else { 'A' }
            } else {
                c
            }
        })
        .collect();
    lines[mid] = flipped;
    let tampered = lines.join("\n");
    assert!(matches!(
        again.sign(&tampered, &Identity::Server(Role::S2)),
        Err(TlsError::Request { .. })
    ));
    assert!(again.sign(&s2, &Identity::Server(Role::S2)).is_ok());
    let _ = std::fs::remove_dir_all(&root);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for p in walk(from) {
        let dest = to.join(p.strip_prefix(from).unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&p, &dest).unwrap();
    }
}

fn rcgen_key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate().unwrap()
}

fn csr_for(names: Vec<String>, key: &rcgen::KeyPair) -> String {
    rcgen::CertificateParams::new(names)
        .unwrap()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap()
}

/// `server::run` on the caller's runtime over listeners bound to port 0: a shutdown
/// while a job runs closes the listeners at once, lets the job finish (drain), and
/// the client gets its right result; then `run` returns.
#[test]
fn run_drains_running_jobs_at_shutdown() {
    let mut net = Net::new("drain", &["alice"], None, 10.0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for r in Role::ALL {
        let listeners = net.bound[r.index()].take().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        let shutdown = async {
            let _ = rx.await;
        };
        tasks.push(rt.spawn(server::run(
            r,
            net.cfg.clone(),
            stock(),
            listeners,
            shutdown,
            Duration::from_secs(30),
        )));
    }
    let cfg = net.client_config("alice");
    // A job that runs for seconds: logistic regression, many iterations.
    let adult = privpy::data::load_libsvm(
        &privpy::data::shipped("adult/a9a-first-2000"),
        123,
        Some(200),
    )
    .unwrap();
    let (x, y) = (adult.x.clone().into_dyn(), adult.y.clone().into_dyn());
    let args = [("batch", 100.0), ("iterations", 400.0), ("lr", 0.5)];
    let (uploaded, ready) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        let mut alice = Client::connect(&cfg).unwrap();
        alice.upload("x", &adult.x, &[]).unwrap();
        alice.upload("y", &adult.y, &[]).unwrap();
        uploaded.send(()).unwrap();
        let bindings: [(&str, &[&str]); 2] = [("x", &["x"]), ("y", &["y"])];
        let job = alice
            .run_with("logistic_regression", &bindings, &args)
            .unwrap();
        alice.fetch::<ArrayD<f64>>(&job, "w").unwrap()
    });
    ready.recv().unwrap();
    // Long enough for the run request to be admitted even on a loaded machine;
    // the job runs for seconds more.
    std::thread::sleep(Duration::from_millis(500));
    let asked = Instant::now();
    for s in stops {
        s.send(()).unwrap();
    }
    // New connections are refused at once.
    std::thread::sleep(Duration::from_millis(100));
    let late = Client::connect(&net.client_config("alice"));
    assert!(late.is_err(), "a connection after shutdown was accepted");
    let w = worker.join().unwrap();
    let drained = asked.elapsed();
    for t in tasks {
        rt.block_on(t).unwrap().unwrap();
    }
    // The drained job's result equals the cleartext engine's.
    let args: Vec<(String, f64)> = args.iter().map(|(a, v)| (a.to_string(), *v)).collect();
    let (clear, _) = run_local(
        LocalCluster::cleartext(),
        "logistic_regression",
        &[("x", x), ("y", y)],
        &args,
        &["w"],
    );
    assert!(rel_err(&w, &clear[0]) < 1e-4, "{}", rel_err(&w, &clear[0]));
    assert!(
        drained > Duration::from_millis(200),
        "the job was still running at shutdown ({drained:?})"
    );
    eprintln!("shutdown drained in {:?}", asked.elapsed());
}

/// Per-client storage quota (`quota_mib`): an upload past it is refused with
/// `RefusalKind::Quota` on both primaries and stores nothing; replacing an input
/// counts it once; deleting frees room; other clients have their own quota.
#[test]
fn storage_quota_per_client_and_delete_frees_it() {
    let mut net = Net::new("quota", &["alice", "bob"], None, 10.0);
    net.configure("quota_mib = 1");
    net.start_all();
    let mut alice = net.client("alice");
    let mut bob = net.client("bob");
    // Default preset: 16 bytes per element and share; 40,000 elements = 640 kB.
    let v = Array1::from_elem(40_000, 0.5);
    alice.upload("x", &v, &[]).unwrap();
    alice.upload("x", &v, &[]).unwrap(); // a replacement counts once
    let quota = |e: ClientError| {
        matches!(
            e,
            ClientError::Refused {
                kind: RefusalKind::Quota,
                ..
            }
        )
    };
    let e = alice.upload("y", &v, &[]).unwrap_err();
    assert!(quota(e), "a second 640 kB input exceeds 1 MiB");
    let big = Array1::from_elem(100_000, 0.5);
    assert!(quota(alice.upload("z", &big, &[]).unwrap_err()));
    // Nothing of the refused uploads was stored: a run on "y" finds no input.
    assert!(alice.run("stats", &[("x", &["y"])]).is_err());
    // Bob has a quota of his own.
    bob.upload("y", &v, &[]).unwrap();
    // Deleting frees room.
    alice.delete("x").unwrap();
    alice.upload("y", &v, &[]).unwrap();
    let job = alice.run("stats", &[("x", &["y"])]).unwrap();
    let sum: f64 = alice.fetch(&job, "sum").unwrap();
    assert!((sum - 20_000.0).abs() < 1e-3);
}

/// A call that only `S2` refuses (here: its half is a share of the wrong ring) is
/// answered by `S1` at once with a refusal, not after the handshake timeout: `S2`
/// remembers what it refused and turns the job's `Hello` down without waiting.
#[test]
fn a_call_only_s2_refuses_fails_at_once() {
    let mut net = Net::new("s2-refuses", &["alice"], None, 20.0);
    net.configure("handshake_timeout_secs = 4");
    net.start_all();
    let send = |role: Role, ring: privpy::RingKind| {
        let call = Request::Call {
            request: 0x5eed,
            program: "stats".into(),
            bindings: vec![],
            inputs: vec![privpy::net::wire::Inline {
                name: "x".into(),
                ring,
                shape: vec![8],
                bytes: vec![7; 8 * ring.bytes()],
            }],
            args: vec![],
        };
        alice_request(&net, role, call)
    };
    let refused_kind = |r: Result<Control, String>| match r {
        Ok(Control::Reply(Reply::Refused(r))) => r.kind,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused_kind(send(Role::S2, privpy::RingKind::Z64)),
        RefusalKind::Invalid
    );
    let t = Instant::now();
    let kind = refused_kind(send(Role::S1, privpy::RingKind::Z128));
    assert_ne!(kind, RefusalKind::Invalid, "S1's half was valid");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "S1 answered after {:?} (the handshake timeout is 4 s)",
        t.elapsed()
    );
    // The cluster keeps serving calls.
    let mut alice = net.client("alice");
    let x = array![1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    let called = alice
        .call("stats", &[], &[("x", x.view().into_dyn())], &[])
        .unwrap();
    let sum: f64 = called.get("sum").unwrap();
    assert!((sum - 36.0).abs() < 1e-6, "{sum}");
}

/// Uploads larger than a message travel in parts, each stored (encrypted) as it
/// arrives, so a server holds one part at a time. A client that starts an upload in
/// parts and disconnects before its last part changes nothing: the earlier input
/// stays and runs; an `UploadPart` without a started upload, or on another
/// connection, and tiny parts are refused by variant.
fn uploads_in_parts_survive_disconnects(net: &Net) {
    let mut alice = net.client("alice");
    let v1 = Array1::from_shape_fn(300_000, |i| (i % 1000) as f64 * 0.001);
    alice.upload("x", &v1, &[]).unwrap();
    let sum = |alice: &mut Client| -> f64 {
        let job = alice.run("stats", &[("x", &["x"])]).unwrap();
        alice.fetch(&job, "sum").unwrap()
    };
    assert!((sum(&mut alice) - v1.sum()).abs() < 1e-6 * v1.sum());
    // A raw client starts replacing x in parts (64 KiB of its 4.8 MB), then leaves.
    let exchange = |req: Request| alice_request(net, Role::S1, req);
    let first = exchange(Request::Upload {
        name: "x".into(),
        tag: 99,
        readers: vec![],
        ring: privpy::RingKind::Z128,
        shape: vec![300_000],
        bytes: vec![0x5a; 1 << 16],
    });
    assert!(
        matches!(
            first,
            Ok(Control::Reply(Reply::PartReceived { received: 65536 }))
        ),
        "{first:?}"
    );
    // Tiny parts (other than the last) are refused: each part costs a transaction.
    let tiny = exchange(Request::Upload {
        name: "y".into(),
        tag: 98,
        readers: vec![],
        ring: privpy::RingKind::Z128,
        shape: vec![300_000],
        bytes: vec![1; 100],
    });
    match tiny {
        Ok(Control::Reply(Reply::Refused(r))) => assert_eq!(r.kind, RefusalKind::Invalid),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // Its next part on another connection finds no upload in progress.
    let stray = exchange(Request::UploadPart {
        tag: 99,
        bytes: vec![1; 16],
    });
    match stray {
        Ok(Control::Reply(Reply::Refused(r))) => assert_eq!(r.kind, RefusalKind::Invalid),
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The earlier x is untouched on both servers.
    assert!((sum(&mut alice) - v1.sum()).abs() < 1e-6 * v1.sum());
    // A complete replacement in parts takes effect.
    let v2 = v1.mapv(|x| 2.0 * x - 0.25);
    alice.upload("x", &v2, &[]).unwrap();
    assert!((sum(&mut alice) - v2.sum()).abs() < 1e-6 * v2.sum().abs());
}

/// With a 1 MiB frame limit (`max_frame_mib = 1`), a 4.8 MB upload (in parts), a
/// job whose protocol messages are several MB (in continuation frames), and a
/// 4.8 MB fetch (in parts) all cross, with results equal to cleartext; and uploads
/// in parts survive disconnects ([`uploads_in_parts_survive_disconnects`]).
#[test]
fn messages_larger_than_the_frame_limit_cross_in_pieces() {
    let mut net = Net::new("bigframes", &["alice"], None, 10.0);
    net.configure("max_frame_mib = 1");
    net.start_all();
    uploads_in_parts_survive_disconnects(&net);
    let mut alice = net.client("alice");
    let big = Array1::from_shape_fn(300_000, |i| (i % 1000) as f64 * 0.001);
    alice.upload("big", &big, &[]).unwrap();
    let job = alice.run("stats", &[("x", &["big"])]).unwrap();
    let sum: f64 = alice.fetch(&job, "sum").unwrap();
    assert!((sum - big.sum()).abs() < 1e-6 * big.sum());
    // A 3000 × 100 output (4.8 MB per share: stored in two pieces, fetched in
    // 256 KiB parts) comes back in pieces too.
    let (m, n, k) = (3000, 10, 100);
    let r = ArrayD::from_shape_fn(vec![m, n], |i| ((i[0] + i[1]) % 5) as f64);
    let mask = ArrayD::from_elem(vec![m, n], 1.0);
    let u0 = ArrayD::from_shape_fn(vec![m, k], |i| ((i[0] * 3 + i[1]) % 7) as f64 * 0.01);
    let v0 = ArrayD::from_shape_fn(vec![n, k], |i| ((i[0] + 2 * i[1]) % 5) as f64 * 0.01);
    let inputs = [("r", r), ("mask", mask), ("u0", u0), ("v0", v0)];
    for (name, v) in &inputs {
        alice.upload(name, v, &[]).unwrap();
    }
    let args = [("iterations", 1.0)];
    let job = alice
        .run_with(
            "matrix_factorization",
            &[
                ("r", &["r"]),
                ("mask", &["mask"]),
                ("u0", &["u0"]),
                ("v0", &["v0"]),
            ],
            &args,
        )
        .unwrap();
    let u: ArrayD<f64> = alice.fetch(&job, "u").unwrap();
    let args: Vec<(String, f64)> = args.iter().map(|(a, v)| (a.to_string(), *v)).collect();
    let (clear, _) = run_local(
        LocalCluster::cleartext(),
        "matrix_factorization",
        &inputs,
        &args,
        &["u"],
    );
    assert_eq!(u.shape(), &[m, k]);
    assert!(rel_err(&u, &clear[0]) < 1e-6, "{}", rel_err(&u, &clear[0]));
}

/// A program's input cap (`Program::max_elements`): a job binding more elements in
/// all is refused as invalid before any share moves; one at the cap runs.
#[test]
fn programs_cap_their_inputs() {
    let mut net = Net::new("caps", &["alice"], None, 10.0);
    let mut programs = stock();
    programs.register(
        Program::new(
            "tiny_sum",
            "1",
            |s: &Session, job: &privpy::net::registry::Job| {
                let x = s.input::<Array1<f64>>("x")?;
                s.output(job.client(), "sum", &x.sum())
            },
        )
        .input("x", [None])
        .max_elements(10),
    );
    for r in Role::ALL {
        net.start(r, programs.clone());
    }
    let mut alice = net.client("alice");
    alice.upload("a", Array1::from_elem(6, 1.0), &[]).unwrap();
    alice.upload("b", Array1::from_elem(5, 1.0), &[]).unwrap();
    // 6 + 5 stacked: 11 elements.
    match alice.run("tiny_sum", &[("x", &["a", "b"])]) {
        Err(ClientError::Refused {
            kind: RefusalKind::Invalid,
            reason,
            ..
        }) => {
            assert!(reason.contains("at most 10"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    alice.upload("b", Array1::from_elem(4, 1.0), &[]).unwrap();
    let job = alice.run("tiny_sum", &[("x", &["a", "b"])]).unwrap();
    let sum: f64 = alice.fetch(&job, "sum").unwrap();
    assert!((sum - 10.0).abs() < 1e-6);
}

/// `Client::call`: one round trip on inputs sent with the request, over the
/// long-lived server links. Results equal the cleartext computation; nothing is
/// stored; five calls dial each server link once (metrics); refusals by variant.
#[test]
fn calls_compute_on_inline_inputs_store_nothing_and_reuse_links() {
    let mut net = Net::new("calls", &["alice", "bob"], None, 20.0);
    let metrics = net.serve_metrics(Role::S1);
    net.start_all();
    let mut alice = net.client("alice");
    let mut rng = crate::common::rng(41);
    for round in 0..5 {
        let x: Array1<f64> = crate::common::arr(&[8], &mut rng, 50.0)
            .into_dimensionality()
            .unwrap();
        let called = alice
            .call("stats", &[], &[("x", x.view().into_dyn())], &[])
            .unwrap();
        assert_eq!(called.batch, 1);
        let n = x.len() as f64;
        let mean = x.sum() / n;
        let var = x.mapv(|v| (v - mean).powi(2)).sum() / n;
        let max = x.iter().cloned().fold(f64::MIN, f64::max);
        for (name, want, tol) in [
            ("sum", x.sum(), 1e-6),
            ("mean", mean, 1e-6),
            ("var", var, 1e-4),
            ("max", max, 1e-6),
        ] {
            let got: f64 = called.get(name).unwrap();
            assert!(
                (got - want).abs() <= tol * want.abs().max(1.0),
                "round {round}: {name} = {got}, cleartext {want}"
            );
        }
        assert!(called.stats[0].bytes_sent.iter().sum::<u64>() > 0);
    }
    assert!(alice.outputs().unwrap().is_empty(), "a call stores nothing");
    let text = scrape_until(metrics, "privpy_jobs_total{program=\"stats\"}", 5.0);
    assert_eq!(
        sample(&text, "privpy_server_links_dialed_total"),
        Some(3.0),
        "S1 dials each higher role once for five jobs:\n{text}"
    );
    assert_eq!(
        sample(&text, "privpy_requests_total{program=\"stats\"}"),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "privpy_jobs_total{program=\"stats\"}"),
        Some(5.0),
        "{text}"
    );
    // Refusals, by kind; the cluster keeps serving.
    let one = array![1.0];
    let err = alice
        .call("stats", &[], &[("x", one.view().into_dyn())], &[])
        .unwrap_err();
    assert_eq!(
        refusal(err),
        RefusalKind::Invalid,
        "one value would be revealed"
    );
    let err = alice
        .call("nope", &[], &[("x", one.view().into_dyn())], &[])
        .unwrap_err();
    assert_eq!(refusal(err), RefusalKind::Invalid);
    let nan = array![1.0, f64::NAN];
    assert!(matches!(
        alice.call("stats", &[], &[("x", nan.view().into_dyn())], &[]),
        Err(ClientError::Core(_))
    ));
    // A stored input bound beside an inline one: another client's, not granted.
    let mut bob = net.client("bob");
    bob.upload("y", array![[1.0, 2.0]], &[]).unwrap();
    let two = array![[3.0, 4.0], [1.0, 0.0], [2.0, 2.0], [0.0, 1.0]];
    let err = alice
        .call(
            "kmeans",
            &[("c0", &["bob/y"])],
            &[("x", two.view().into_dyn())],
            &[],
        )
        .unwrap_err();
    assert_eq!(refusal(err), RefusalKind::NotFound);
    let v = array![2.0, 4.0];
    let ok: f64 = alice
        .call("stats", &[], &[("x", v.view().into_dyn())], &[])
        .unwrap()
        .get("sum")
        .unwrap();
    assert!((ok - 6.0).abs() < 1e-6);
}

/// A deployed model served by `Client::infer` to concurrent clients: their
/// requests run as one dynamic batch, each client receives exactly its own rows,
/// and the predictions equal the cleartext engine's. A client the owner did not
/// grant the weights to is refused; an unknown model too.
#[test]
fn concurrent_inferences_are_batched_and_each_client_gets_its_own_rows() {
    let users = ["u1", "u2", "u3", "u4"];
    let mut all = vec!["owner", "stranger"];
    all.extend(users);
    let mut net = Net::new("infer", &all, None, 20.0);
    net.configure("batch_window_ms = 2000\nmax_batch = 4");
    net.configure_tail(
        "[[models]]\nname = \"mnist-mlp\"\nprogram = \"mlp_predict\"\ninput = \"images\"\nowner = \"owner\"\nweights = { w1 = \"w1\", b1 = \"b1\", w2 = \"w2\", b2 = \"b2\", w3 = \"w3\", b3 = \"b3\" }",
    );
    let metrics = net.serve_metrics(Role::S1);
    net.start_all();
    let model = privpy::model::load_safetensors(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-mlp.safetensors"),
    )
    .unwrap();
    let grants: Vec<String> = users.iter().map(|u| format!("{u}@mlp_predict")).collect();
    let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
    let mut owner = net.client("owner");
    for (k, t) in &model {
        owner.upload(k, t, &grants).unwrap();
    }
    let test = privpy::data::load_mnist(
        &privpy::data::shipped("mnist/t10k-300-images-idx3-ubyte"),
        &privpy::data::shipped("mnist/t10k-300-labels-idx1-ubyte"),
        Some(10),
    )
    .unwrap();
    // Client k sends k + 1 images: rows 0, 1..3, 3..6, 6..10.
    let starts = [0usize, 1, 3, 6, 10];
    let mut clients: Vec<Client> = users.iter().map(|u| net.client(u)).collect();
    let barrier = std::sync::Barrier::new(users.len());
    let results: Vec<_> = std::thread::scope(|sc| {
        let handles: Vec<_> = clients
            .iter_mut()
            .enumerate()
            .map(|(k, c)| {
                let rows = test
                    .images
                    .slice(ndarray::s![starts[k]..starts[k + 1], ..])
                    .to_owned();
                let barrier = &barrier;
                sc.spawn(move || {
                    barrier.wait();
                    c.infer("mnist-mlp", &rows)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // The cleartext engine's predictions of all ten images.
    let mut inputs: Vec<(&str, ArrayD<f64>)> =
        model.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    inputs.push(("images", test.images.clone().into_dyn()));
    let (clear, _) = run_local(
        LocalCluster::cleartext(),
        "mlp_predict",
        &inputs,
        &[],
        &["digits"],
    );
    let mut jobs = Vec::new();
    let mut first_bytes = 0;
    for (k, r) in results.into_iter().enumerate() {
        let called = r.unwrap_or_else(|e| panic!("{}: {e}", users[k]));
        first_bytes = called
            .stats
            .iter()
            .map(|s| s.bytes_sent.iter().sum::<u64>())
            .sum();
        let digits: Array1<f64> = called.get("digits").unwrap();
        let want = clear[0]
            .slice(ndarray::s![starts[k]..starts[k + 1]])
            .to_owned();
        assert_eq!(
            digits.len(),
            starts[k + 1] - starts[k],
            "{}: own rows only",
            users[k]
        );
        for (g, w) in digits.iter().zip(want.iter()) {
            assert!(
                (g - w).abs() < 1e-6,
                "{}: {digits} vs cleartext {want}",
                users[k]
            );
        }
        assert_eq!(called.batch, 4, "one batch of four requests");
        jobs.push(called.job);
    }
    jobs.dedup();
    assert_eq!(jobs.len(), 1, "all four requests ran in one job");
    let text = scrape_until(
        metrics,
        "privpy_batch_size_count{program=\"mlp_predict\"}",
        1.0,
    );
    assert_eq!(
        sample(&text, "privpy_batch_size_count{program=\"mlp_predict\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "privpy_batch_size_sum{program=\"mlp_predict\"}"),
        Some(4.0),
        "{text}"
    );
    // Not granted: refused, alone.
    let mut stranger = net.client("stranger");
    let one = test.images.slice(ndarray::s![0..1, ..]).to_owned();
    let err = stranger.infer("mnist-mlp", &one).unwrap_err();
    assert_eq!(refusal(err), RefusalKind::NotFound);
    let err = clients[0].infer("no-such-model", &one).unwrap_err();
    assert_eq!(refusal(err), RefusalKind::NotFound);
    let wrong = Array2::<f64>::zeros((1, 783));
    let err = clients[0].infer("mnist-mlp", &wrong).unwrap_err();
    assert_eq!(refusal(err), RefusalKind::Invalid);
    // A lone request runs when the window closes, on the weights the servers
    // prepared in the first batch: they do not travel again.
    let lone = clients[1].infer("mnist-mlp", &one).unwrap();
    assert_eq!(lone.batch, 1);
    let d: Array1<f64> = lone.get("digits").unwrap();
    assert!((d[0] - clear[0][0]).abs() < 1e-6);
    let bytes = |c: &privpy::net::client::Called| -> u64 {
        c.stats
            .iter()
            .map(|s| s.bytes_sent.iter().sum::<u64>())
            .sum()
    };
    let weights = (784 * 625 + 625 * 625 + 625 * 10) as u64 * 16 * 2;
    assert!(
        first_bytes > weights && bytes(&lone) < first_bytes / 10,
        "first batch {first_bytes} B (weights {weights} B), later request {} B",
        bytes(&lone)
    );
}

/// The inference queue's limits, over sockets: past `max_queued_requests` a request
/// is refused as busy; a client that disconnects while its request waits for its
/// batch is taken out (no job runs for it); a request not served within
/// `request_timeout_secs` is refused as busy.
#[test]
fn inference_queue_limits_disconnects_and_deadlines() {
    let mlp = "[[models]]\nname = \"mnist-mlp\"\nprogram = \"mlp_predict\"\ninput = \"images\"\nowner = \"owner\"\nweights = { w1 = \"w1\", b1 = \"b1\", w2 = \"w2\", b2 = \"b2\", w3 = \"w3\", b3 = \"b3\" }";
    let mut net = Net::new("inferq", &["owner", "u1", "u2", "u3"], None, 20.0);
    net.configure("batch_window_ms = 1500\nmax_queued_requests = 2\nrequest_timeout_secs = 30");
    net.configure_tail(mlp);
    let metrics = net.serve_metrics(Role::S1);
    net.start_all();
    let model = privpy::model::load_safetensors(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mnist-mlp.safetensors"),
    )
    .unwrap();
    let mut owner = net.client("owner");
    for (k, t) in &model {
        owner
            .upload(
                k,
                t,
                &["u1@mlp_predict", "u2@mlp_predict", "u3@mlp_predict"],
            )
            .unwrap();
    }
    let img = Array2::<f64>::from_elem((1, 784), 0.5);
    let (mut u1, mut u2, mut u3) = (net.client("u1"), net.client("u2"), net.client("u3"));
    // Two requests wait for the window; a third finds the queue full.
    let (r1, r2, r3) = std::thread::scope(|sc| {
        let a = sc.spawn(|| u1.infer("mnist-mlp", &img));
        let b = sc.spawn(|| u2.infer("mnist-mlp", &img));
        std::thread::sleep(Duration::from_millis(500));
        let c = u3.infer("mnist-mlp", &img);
        (a.join().unwrap(), b.join().unwrap(), c)
    });
    assert_eq!(refusal(r3.unwrap_err()), RefusalKind::Busy);
    let (r1, r2) = (r1.unwrap(), r2.unwrap());
    assert_eq!((r1.batch, r2.batch), (2, 2));
    assert_eq!(r1.job, r2.job);
    // A client that leaves while its request waits: no job runs for it.
    let mut cfg = net.client_config("u3");
    cfg.timeout = Duration::from_millis(300);
    let mut impatient = Client::connect(&cfg).unwrap();
    assert!(
        impatient.infer("mnist-mlp", &img).is_err(),
        "gave up waiting"
    );
    drop(impatient);
    std::thread::sleep(Duration::from_millis(2500));
    let text = scrape(metrics);
    assert_eq!(
        sample(&text, "privpy_jobs_total{program=\"mlp_predict\"}"),
        Some(1.0),
        "only the first batch ran:\n{text}"
    );
    assert_eq!(
        sample(
            &text,
            "privpy_requests_refused_total{program=\"mlp_predict\"}"
        ),
        Some(2.0),
        "the busy request and the abandoned one:\n{text}"
    );
    // The queue is free again.
    assert_eq!(u3.infer("mnist-mlp", &img).unwrap().batch, 1);
    drop(net);

    // A request not served within request_timeout_secs (here the window is longer).
    let mut net = Net::new("inferdl", &["owner", "u1"], None, 20.0);
    net.configure("batch_window_ms = 4000\nrequest_timeout_secs = 1");
    net.configure_tail(mlp);
    net.start_all();
    let mut u1 = net.client("u1");
    let t = Instant::now();
    let err = u1.infer("mnist-mlp", &img).unwrap_err();
    assert_eq!(refusal(err), RefusalKind::Busy);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
}

/// A `[[models]]` deployment the registry cannot serve stops the server at start
/// with `ServerError::Config`: an unknown program, one not declared row-wise, a
/// weight parameter left unbound.
#[test]
fn misdeployed_models_stop_the_server_at_start() {
    let head = "[[models]]\nname = \"m\"\nowner = \"owner\"\n";
    let cases = [
        ("program = \"nope\"\ninput = \"x\"", "no program"),
        ("program = \"stats\"\ninput = \"x\"", "row-wise"),
        (
            "program = \"mlp_predict\"\ninput = \"images\"\nweights = { w1 = \"w1\", b1 = \"b1\", w2 = \"w2\", b2 = \"b2\", w3 = \"w3\" }",
            "bound to no weight",
        ),
    ];
    for (body, why) in cases {
        let mut net = Net::new("misdeploy", &["owner"], None, 10.0);
        net.configure_tail(&format!("{head}{body}"));
        let listeners = net.bound[0].take().unwrap();
        match server::start_with(Role::S1, net.cfg.clone(), stock(), listeners) {
            Err(server::ServerError::Config(m)) => assert!(m.contains(why), "{m}"),
            Err(other) => panic!("expected a configuration error, got {other}"),
            Ok(_) => panic!("a server started with {body:?}"),
        }
    }
}

/// A matrix over the memory budget, uploaded by rows in parts, is read by a
/// program as a `LargeArray` straight from the store (one upload, and two stacked
/// by rows): results equal cleartext, `Session::input` refuses it, and failed
/// uploads by rows leave the earlier input.
#[test]
fn large_inputs_upload_by_rows_and_stream_from_the_store() {
    let mut net = Net::new("largeinputs", &["alice"], None, 10.0);
    net.configure("max_frame_mib = 1\nmemory_budget_mib = 1");
    let mut programs = stock();
    programs.register(
        Program::new(
            "large_stats",
            "1",
            |s: &Session, job: &privpy::net::registry::Job| {
                let x = s.large_input("x")?;
                // Read from the store's pieces, not loaded whole.
                if s.role().is_some_and(|r| r.is_primary()) && !x.is_on_disk() {
                    return Err(Error::InvalidArgument {
                        operation: "large_stats",
                        reason: "the input was loaded into memory".into(),
                    });
                }
                match s.input::<Array2<f64>>("x") {
                    Err(Error::OverBudget { .. }) => {}
                    _ => {
                        return Err(Error::InvalidArgument {
                            operation: "large_stats",
                            reason: "an input over the budget was loaded".into(),
                        });
                    }
                }
                let w = s.input::<Array2<f64>>("w")?;
                let xw = x.dot(&w)?;
                s.output(job.client(), "colsum", &x.sum_axis(Axis(0))?)?;
                s.output(job.client(), "xw", &xw.load()?)?;
                s.output(job.client(), "gram", &x.t_dot(&xw)?)?;
                // A large result, stored from the job's files piece by piece.
                let doubled = x.mul(2.0)?;
                if s.role().is_some_and(|r| r.is_primary()) && !doubled.is_on_disk() {
                    return Err(Error::InvalidArgument {
                        operation: "large_stats",
                        reason: "the large result stayed in memory".into(),
                    });
                }
                s.output_large(job.client(), "doubled", &doubled)?;
                Ok(())
            },
        )
        .input("x", [None, None])
        .input("w", [None, None]),
    );
    for r in Role::ALL {
        net.start(r, programs.clone());
    }
    let mut alice = net.client("alice");
    // 3,000 × 60 in the default preset: 2.9 MB per share, over the 1 MiB budget
    // and stored in 512 KiB pieces.
    let (n, d) = (3_000, 60);
    let x = Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j * 13) % 17) as f64 / 8.0 - 1.0);
    let w = Array2::from_shape_fn((d, 2), |(i, j)| ((i + 3 * j) % 5) as f64 / 4.0 - 0.5);
    let blocks = |m: &Array2<f64>, rows: usize| -> Vec<Array2<f64>> {
        (0..m.nrows())
            .step_by(rows)
            .map(|s| m.slice(s![s..(s + rows).min(m.nrows()), ..]).to_owned())
            .collect()
    };
    alice
        .upload_rows("x", [n, d], blocks(&x, 700), &[])
        .unwrap();
    alice.upload("w", &w, &[]).unwrap();
    let check = |alice: &mut Client, bind: &[&str], x: &Array2<f64>| {
        let job = alice
            .run("large_stats", &[("x", bind), ("w", &["w"])])
            .unwrap_or_else(|e| panic!("large_stats: {e}"));
        let xw = x.dot(&w);
        let want = [
            ("colsum", x.sum_axis(Axis(0)).into_dyn()),
            ("xw", xw.clone().into_dyn()),
            ("gram", x.t().dot(&xw).into_dyn()),
        ];
        for (name, want) in want {
            let got: ArrayD<f64> = alice.fetch(&job, name).unwrap();
            // Default preset: each term within 2^-30; sums of up to 3,000 × 60.
            let err = rel_err(&got, &want);
            assert!(err < 1e-6, "{name}: relative error {err}");
        }
        // The large output comes back a block of rows at a time.
        let mut blocks = Vec::new();
        alice
            .fetch_rows(&job, "doubled", |b| {
                blocks.push(b);
                Ok(())
            })
            .unwrap();
        let views: Vec<_> = blocks.iter().map(|b| b.view()).collect();
        let doubled = ndarray::concatenate(Axis(0), &views).unwrap();
        let err = rel_err(&doubled.into_dyn(), &(x * 2.0).into_dyn());
        assert!(err < 1e-9, "doubled: relative error {err}");
        // Released once fetched.
        assert!(alice.fetch::<Array2<f64>>(&job, "doubled").is_err());
    };
    check(&mut alice, &["x"], &x);
    // Two uploads stacked by rows stream as one.
    let (top, bottom) = (
        x.slice(s![..1_800, ..]).to_owned(),
        x.slice(s![1_800.., ..]).to_owned(),
    );
    alice
        .upload_rows("top", [1_800, d], blocks(&top, 1_000), &[])
        .unwrap();
    alice
        .upload_rows("bottom", [1_200, d], blocks(&bottom, 500), &[])
        .unwrap();
    check(&mut alice, &["top", "bottom"], &x);
    // Failed uploads by rows: nothing replaces the stored input.
    let mut bad = x.clone();
    bad[[2_500, 3]] = f64::NAN;
    match alice.upload_rows("x", [n, d], blocks(&bad, 700), &[]) {
        Err(ClientError::Core(Error::Encode {
            source: privpy::EncodeError::NaN { index },
            ..
        })) => assert_eq!(index, vec![2_500, 3]),
        other => panic!("expected a NaN error, got {other:?}"),
    }
    let short = blocks(&x, 700).into_iter().take(3).collect::<Vec<_>>();
    assert!(matches!(
        alice.upload_rows("x", [n, d], short, &[]),
        Err(ClientError::Core(Error::InvalidArgument { .. }))
    ));
    let wide = vec![Array2::zeros((10, d + 1))];
    assert!(matches!(
        alice.upload_rows("x", [n, d], wide, &[]),
        Err(ClientError::Core(Error::InvalidArgument { .. }))
    ));
    check(&mut alice, &["x"], &x);
    // The stock streaming trainer, against the same program in cleartext.
    let scaled = &x * 0.25;
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f64::from(scaled.row(i).sum() > 0.0));
    alice
        .upload_rows("xs", [n, d], blocks(&scaled, 900), &[])
        .unwrap();
    alice
        .upload_rows("y", [n, 1], blocks(&y, 1_000), &[])
        .unwrap();
    let args = [("batch", 500.0), ("epochs", 2.0), ("lr", 0.5)];
    let job = alice
        .run_with(
            "logistic_regression_large",
            &[("x", &["xs"]), ("y", &["y"])],
            &args,
        )
        .unwrap();
    let w: ArrayD<f64> = alice.fetch(&job, "w").unwrap();
    let owned: Vec<(String, f64)> = args.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let (clear, _) = run_local(
        LocalCluster::cleartext(),
        "logistic_regression_large",
        &[("x", scaled.into_dyn()), ("y", y.into_dyn())],
        &owned,
        &["w"],
    );
    // Default preset: the sigmoid within 64 units of 2^-32 and products within
    // 2 units, over 12 steps.
    let err = rel_err(&w, &clear[0]);
    assert!(err < 1e-5, "weights: relative error {err}");
}
