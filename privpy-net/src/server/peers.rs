//! Server links ([`crate::mux`]): accepting a peer's long-lived link, accepting the
//! job streams it opens (each `Hello` checked against this server's programs and
//! inputs), dialing the higher roles once and opening a job's streams on those
//! links, and connecting a job's four streams before it runs.

use super::*;

// ---------------------------------------------------------------- peers

/// A peer dials this server: authenticate it, then serve its link until it closes.
pub(super) async fn accept_peer(shared: Arc<Shared>, tcp: TcpStream, addr: SocketAddr) {
    let t = shared.cluster.handshake_timeout;
    let Some(tls) = accept_tls(
        &shared,
        shared.tls.peer_acceptor.clone(),
        tcp,
        addr,
        "server link",
    )
    .await
    else {
        return;
    };
    let mut conn = Conn::new(TlsStream::Server(tls), shared.cluster.max_frame);
    let from = match conn.recv(t).await {
        Ok(Control::Link { from }) => from,
        Ok(_) => {
            warn!(%addr, "server link refused: first message is not Link");
            refuse_peer(
                conn,
                Refusal::invalid("the first message on a server link must be Link"),
            )
            .await;
            return;
        }
        Err(e) => {
            warn!(%addr, error = %e, "server link refused: bad Link message");
            return;
        }
    };
    let me = shared.role;
    let named = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .is_some_and(|c| cert_names(c, &server_name(from)));
    if !named {
        warn!(%addr, claimed = %from, "server link refused: certificate does not name the claimed role");
        refuse_peer(
            conn,
            Refusal::new(
                RefusalKind::Denied,
                format!(
                    "your certificate is not issued to {from} ({})",
                    server_name(from)
                ),
            ),
        )
        .await;
        return;
    }
    if from >= me {
        warn!(%addr, %from, "server link refused: only lower roles dial");
        refuse_peer(
            conn,
            Refusal::invalid(format!("{from} must not dial {me}; the lower role dials")),
        )
        .await;
        return;
    }
    if conn.send(&Control::HelloAck(Ok(()))).await.is_err() {
        return;
    }
    let s = shared.clone();
    let on_open: OnOpen = Box::new(move |stream: JobLink| {
        tokio::spawn(accept_job(s.clone(), stream));
    });
    let link = Link::start(conn, from, shared.cluster.timeout, Some(on_open));
    info!(%addr, peer = %from, "server link up");
    // A newer link from the same peer replaces this one (the peer redialed).
    let old = lock(&shared.accepted)[from.index()].replace(link.clone());
    if let Some(old) = old {
        old.close();
    }
    link.closed().await;
    info!(peer = %from, "server link closed");
}

/// A stream a peer opened on its link: its first frame is the job's `Hello`.
async fn accept_job(shared: Arc<Shared>, mut stream: JobLink) {
    let t = shared.cluster.handshake_timeout;
    let peer = stream.peer();
    let (from, job) = match stream.recv(t).await {
        Ok(Control::Hello { from, job }) => (from, job),
        Ok(Control::Forget {
            client,
            request,
            refusal,
        }) if peer == Role::S1 && shared.role == Role::S2 => {
            debug!(%client, "S1 refused a request: answering its S2 half");
            shared.forget(&client, request, &refusal);
            return;
        }
        Ok(_) => {
            warn!(%peer, "job refused: the first message on a stream is not Hello");
            let _ = stream.send(&Control::HelloAck(Err(Refusal::invalid(
                "the first message on a stream must be Hello",
            ))));
            return;
        }
        Err(e) => {
            warn!(%peer, error = %e, "job refused: bad Hello");
            return;
        }
    };
    if from != peer || job.id != stream.id() {
        warn!(%peer, claimed = %from, "job refused: Hello names another sender or stream");
        let _ = stream.send(&Control::HelloAck(Err(Refusal::new(
            RefusalKind::Denied,
            format!("this link belongs to {peer}, and the stream to its job id"),
        ))));
        return;
    }
    if shared.stopping.load(Ordering::SeqCst) {
        let _ = stream.send(&Control::HelloAck(Err(Refusal::failed(format!(
            "{} is shutting down",
            shared.role
        )))));
        return;
    }
    // A call job: its requests' shares may still be on their way from the clients.
    if !job.calls.is_empty() && shared.role.is_primary() && !shared.await_parked(&job, t).await {
        let reason = Refusal::new(
            RefusalKind::NotFound,
            format!(
                "{} did not receive every request of the job within {t:?}",
                shared.role
            ),
        );
        warn!(job = %hex(job.id), %reason, "job refused");
        shared.fail_calls(&job, &reason);
        let _ = stream.send(&Control::HelloAck(Err(reason)));
        return;
    }
    // The check reads the store only for stored inputs on a primary; otherwise it
    // is a few comparisons, done here rather than on a blocking thread.
    let reads_store = shared.role.is_primary() && job.params.iter().any(|p| !p.sources.is_empty());
    let check = if reads_store {
        let s = shared.clone();
        let job2 = job.clone();
        tokio::task::spawn_blocking(move || s.check_job(&job2))
            .await
            .unwrap_or_else(|_| Err(Refusal::failed("the check panicked")))
    } else {
        shared.check_job(&job)
    };
    if let Err(reason) = check {
        warn!(job = %hex(job.id), program = %job.program, %from, %reason, "job refused");
        shared.fail_calls(&job, &reason);
        let _ = stream.send(&Control::HelloAck(Err(reason)));
        return;
    }
    if stream.send(&Control::HelloAck(Ok(()))).is_err() {
        return;
    }
    debug!(job = %hex(job.id), %from, "job stream accepted");
    let tx = {
        let mut pending = lock(&shared.pending);
        match pending.get(&job.id) {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::unbounded_channel();
                pending.insert(job.id, tx.clone());
                let s = shared.clone();
                let j = job.clone();
                tokio::spawn(async move {
                    let id = j.id;
                    match run_job(s.clone(), j.clone(), rx, None).await {
                        Ok(_) if j.calls.is_empty() => info!(job = %hex(id), "job finished"),
                        Ok(_) => debug!(job = %hex(id), "call job finished"),
                        Err(reason) => {
                            warn!(job = %hex(id), %reason, "job failed");
                            s.fail_calls(&j, &reason);
                        }
                    }
                });
                tx
            }
        }
    };
    let _ = tx.send((from, job, stream));
}

pub(super) async fn refuse_peer(mut conn: Conn, reason: Refusal) {
    let _ = conn.send(&Control::HelloAck(Err(reason))).await;
    conn.close().await;
}

/// This server's link to the higher role `peer`: the open one while it is usable,
/// else a new one (dialed, authenticated, acknowledged).
pub(super) async fn link_to(shared: &Arc<Shared>, peer: Role) -> Result<Arc<Link>, Refusal> {
    let mut slot = shared.links[peer.index()].lock().await;
    if let Some(l) = &*slot {
        if l.usable(shared.cluster.timeout) {
            return Ok(l.clone());
        }
        l.close();
    }
    let t = shared.cluster.timeout;
    let addr = shared.cluster.server(peer).peer_addr;
    let connector = TlsConnector::from(shared.tls.peer_connector.clone());
    let attempt = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| Refusal::failed(format!("cannot connect to {peer} at {addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let tls = connector.connect(dial_name(peer), tcp).await.map_err(|e| {
            Refusal::failed(format!("TLS handshake with {peer} at {addr} failed: {e}"))
                .lost(Some(peer))
        })?;
        let mut conn = Conn::new(TlsStream::Client(tls), shared.cluster.max_frame);
        conn.send(&Control::Link { from: shared.role })
            .await
            .map_err(|e| Refusal::failed(format!("{peer}: {e}")))?;
        match conn.recv(t).await {
            Ok(Control::HelloAck(Ok(()))) => Ok(conn),
            Ok(Control::HelloAck(Err(r))) => Err(Refusal::new(
                r.kind,
                format!("{peer} refused the link: {}", r.reason),
            )),
            Ok(_) => Err(Refusal::failed(format!(
                "{peer} answered Link with something else"
            ))),
            Err(e) => Err(Refusal::failed(format!(
                "{peer} did not acknowledge the link: {e}"
            ))),
        }
    };
    let conn = tokio::time::timeout(t, attempt)
        .await
        .map_err(|_| Refusal::failed(format!("{peer} at {addr} did not answer within {t:?}")))??;
    let link = Link::start(conn, peer, t, None);
    shared.metrics.links.inc();
    info!(%peer, %addr, "server link up");
    *slot = Some(link.clone());
    Ok(link)
}

/// Opens `job`'s stream to the higher role `peer` and waits for its acknowledgement.
/// A link found broken while opening is replaced once.
pub(super) async fn dial(
    shared: Arc<Shared>,
    peer: Role,
    job: JobSpec,
) -> Result<JobLink, Refusal> {
    let t = shared.cluster.timeout;
    let mut retried = false;
    loop {
        let link = link_to(&shared, peer).await?;
        let mut stream = link
            .open(job.id)
            .map_err(|e| Refusal::failed(format!("{peer}: {e}")).lost(Some(peer)))?;
        let hello = Control::Hello {
            from: shared.role,
            job: job.clone(),
        };
        let answer = match stream.send(&hello) {
            Ok(()) => stream.recv(t).await,
            Err(_) => Err(ConnError::Closed),
        };
        return match answer {
            Ok(Control::HelloAck(Ok(()))) => Ok(stream),
            Ok(Control::HelloAck(Err(r))) => Err(Refusal::new(
                r.kind,
                format!("{peer} refused the job: {}", r.reason),
            )),
            Ok(_) => Err(Refusal::failed(format!(
                "{peer} answered Hello with something else"
            ))),
            Err(ConnError::Closed) if !retried => {
                // The link broke before the job started (the peer restarted, say).
                retried = true;
                link.close();
                continue;
            }
            Err(e) => Err(
                Refusal::failed(format!("{peer} did not acknowledge the job: {e}"))
                    .lost(Some(peer)),
            ),
        };
    }
}

pub(super) struct JobDone {
    pub(super) outputs: Vec<(String, String, Vec<usize>)>,
    pub(super) stats: [CommStats; 4],
}

/// Connects the job's links, runs the program, stores outputs, reports.
pub(super) async fn run_job(
    shared: Arc<Shared>,
    job: JobSpec,
    mut incoming: mpsc::UnboundedReceiver<(Role, JobSpec, JobLink)>,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<JobDone, Refusal> {
    let _active = ActiveJob::new(&shared);
    let started = std::time::Instant::now();
    let me = shared.role;
    let t = shared.cluster.timeout;
    // Calls and inference batches come by the thousand: their per-job lines are
    // debug (the metrics count them); runs are logged at info.
    if job.calls.is_empty() {
        info!(job = %hex(job.id), program = %job.program, client = %job.client, "job starting");
    } else {
        debug!(job = %hex(job.id), program = %job.program, requests = job.calls.len(), "call job starting");
    }
    let mut dials = tokio::task::JoinSet::new();
    for peer in Role::ALL.into_iter().filter(|&p| p > me) {
        let s = shared.clone();
        let j = job.clone();
        dials.spawn(async move { (peer, dial(s, peer, j).await) });
    }
    let mut conns: [Option<JobLink>; 4] = Default::default();
    let deadline = tokio::time::Instant::now() + t;
    let mut failure = None;
    let missing = |conns: &[Option<JobLink>; 4]| -> Vec<Role> {
        Role::ALL
            .into_iter()
            .filter(|&p| p < me && conns[p.index()].is_none())
            .collect()
    };
    while failure.is_none() && !missing(&conns).is_empty() {
        match tokio::time::timeout_at(deadline, incoming.recv()).await {
            Ok(Some((from, spec, conn))) => {
                if spec != job {
                    failure = Some(Refusal::failed(format!(
                        "{from} describes job {} differently from the first server that connected",
                        hex(job.id)
                    )));
                }
                conns[from.index()] = Some(conn);
            }
            Ok(None) | Err(_) => {
                failure = Some(Refusal::failed(format!(
                    "no connection from {:?} within {t:?}",
                    missing(&conns)
                )));
            }
        }
    }
    lock(&shared.pending).remove(&job.id);
    while let Some(r) = dials.join_next().await {
        match r {
            Ok((peer, Ok(conn))) => conns[peer.index()] = Some(conn),
            Ok((_, Err(e))) => {
                failure.get_or_insert(e);
            }
            Err(e) => {
                failure.get_or_insert(Refusal::failed(format!("dialing failed: {e}")));
            }
        }
    }
    if let Some(reason) = failure {
        // Tell the peers that did connect, so they stop waiting.
        for c in conns.iter().flatten() {
            let _ = c.send(&Control::Abort {
                culprit: reason.lost,
                reason: reason.reason.clone(),
            });
        }
        return Err(reason);
    }
    let transport = NetTransport::new(me, conns, t, &shared.rt)
        .with_limits(started + shared.cluster.max_job, cancel);
    let s = shared.clone();
    let label = Metrics::label(&job.program);
    let keys: Vec<String> = job.prepared.iter().map(|u| u.key.clone()).collect();
    let done = tokio::task::spawn_blocking(move || s.execute(job, transport))
        .await
        .map_err(|e| Refusal::failed(format!("the job's thread failed: {e}")))
        .and_then(|r| r);
    if me == Role::S1 && !keys.is_empty() {
        // Every server keeps the prepared matrices of a job that succeeded; after a
        // failure, the next job prepares them again.
        let mut confirmed = lock(&shared.confirmed);
        for k in keys {
            if done.is_ok() {
                confirmed.insert(k);
            } else {
                confirmed.remove(&k);
            }
        }
    }
    let done = done?;
    let m = &shared.metrics;
    m.jobs.get_or_create(&label).inc();
    let mine = &done.stats[me.index()];
    m.bytes
        .get_or_create(&label)
        .inc_by(mine.bytes_sent.iter().sum::<u64>());
    m.rounds.get_or_create(&label).inc_by(mine.rounds as u64);
    Ok(done)
}
