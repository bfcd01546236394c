//! The client protocol on `S1` and `S2`: uploads, runs (admission, the job slots
//! and their queue, cancellation when the client disconnects), fetches, listings and
//! deletes.

use super::*;
use calls::{CallArgs, acquire_slot, call, infer, new_job};
use privpy_core::RingKind;

pub(super) async fn serve_client(shared: Arc<Shared>, tcp: TcpStream, addr: SocketAddr) {
    let t = shared.cluster.handshake_timeout;
    let Some(tls) = accept_tls(
        &shared,
        shared.tls.client_acceptor.clone(),
        tcp,
        addr,
        "client",
    )
    .await
    else {
        return;
    };
    // A client's message is one frame at most: larger uploads and fetches travel in
    // parts, so a connection holds one part at a time.
    let mut conn = Conn::new(TlsStream::Server(tls), shared.cluster.max_frame)
        .with_max_message(shared.cluster.max_frame);
    let client = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| client_identity(c, &shared.cluster.clients))
        .map(str::to_string);
    let Some(client) = client else {
        warn!(%addr, "client refused: the certificate names no accepted client");
        // Answer its first request (an unsolicited reply could be lost when the
        // client writes into the closed connection).
        let _ = conn.recv(t).await;
        let _ = conn
            .send(&Control::Reply(Reply::Refused(Refusal::new(
                RefusalKind::Denied,
                "unknown client: the certificate names none of the clients this cluster accepts",
            ))))
            .await;
        conn.close().await;
        return;
    };
    info!(%client, %addr, "client connected");
    let idle = shared.cluster.idle_timeout;
    // An upload in parts in progress on this connection.
    let mut staged: Option<Staged> = None;
    loop {
        let req = match conn.recv(idle).await {
            Ok(Control::Request(r)) => r,
            Ok(_) => {
                warn!(%client, "client sent a message that is not a request");
                let _ = conn
                    .send(&Control::Reply(Reply::Refused(Refusal::invalid(
                        "expected a request",
                    ))))
                    .await;
                break;
            }
            Err(ConnError::Closed) => break,
            // Idle for idle_timeout: close quietly (the client reconnects).
            Err(ConnError::Timeout(_)) => {
                debug!(%client, "idle client connection closed");
                break;
            }
            Err(ConnError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                debug!(%client, "client left without closing TLS");
                break;
            }
            Err(e) => {
                warn!(%client, error = %e, "client connection dropped");
                let _ = conn
                    .send(&Control::Reply(Reply::Refused(Refusal::invalid(format!(
                        "bad request: {e}"
                    )))))
                    .await;
                break;
            }
        };
        debug!(%client, request = ?req, "request");
        let req = match req {
            Request::Upload {
                name,
                tag,
                readers,
                ring,
                shape,
                bytes,
            } if (bytes.len() as u64) < share_len(ring, &shape) => {
                let reply = start_upload(
                    &shared,
                    &client,
                    &mut staged,
                    name,
                    tag,
                    readers,
                    ring,
                    shape,
                    bytes,
                )
                .await;
                if send_reply(&mut conn, &client, reply).await.is_err() {
                    break;
                }
                continue;
            }
            Request::UploadPart { tag, bytes } => {
                let reply = continue_upload(&shared, &client, &mut staged, tag, bytes).await;
                if send_reply(&mut conn, &client, reply).await.is_err() {
                    break;
                }
                continue;
            }
            other => other,
        };
        // A client sends nothing while its request runs: anything it does on the
        // connection (normally closing it) cancels a running job.
        let cancel = Arc::new(AtomicBool::new(false));
        let reply = {
            let work = handle_request(&shared, &client, req, cancel.clone());
            tokio::pin!(work);
            let mut probe = [0u8; 1];
            tokio::select! {
                reply = &mut work => reply,
                _ = tokio::io::AsyncReadExt::read(conn.stream_mut(), &mut probe) => {
                    cancel.store(true, Ordering::Relaxed);
                    info!(%client, "client disconnected during a request; its job is cancelled");
                    // Let the job stop (it releases its slot when it does).
                    let _ = work.await;
                    break;
                }
            }
        };
        if let Reply::Refused(reason) = &reply {
            warn!(%client, %reason, "request refused");
        }
        if conn.send(&Control::Reply(reply)).await.is_err() {
            break;
        }
    }
    if let Some(st) = staged.take() {
        info!(%client, input = %st.name(), "upload in parts dropped: the connection closed before its last part");
        let _ = with_store(&shared, move |store| {
            store.abandon_staged(st);
            Ok(())
        })
        .await;
    }
    conn.close().await;
}

/// The refusal for an output this client cannot fetch (the same whether it never
/// existed, was fetched, expired, or is another client's).
fn no_output(me: Role, name: &str, job: u64, client: &str) -> Reply {
    Reply::Refused(Refusal::new(
        RefusalKind::NotFound,
        format!(
            "{me} has no output {name:?} of job {} for {client} (already fetched, expired, or not yours)",
            hex(job)
        ),
    ))
}

/// The most bytes of a share one [`Reply::SharePart`] carries: a quarter of the
/// frame limit, at most 4 MiB.
fn fetch_part_bytes(shared: &Shared) -> usize {
    (shared.cluster.max_frame / 4).clamp(1 << 16, 4 << 20)
}

async fn send_reply(conn: &mut Conn, client: &str, reply: Reply) -> Result<(), std::io::Error> {
    if let Reply::Refused(reason) = &reply {
        warn!(%client, %reason, "request refused");
    }
    conn.send(&Control::Reply(reply)).await
}

/// The bytes of a share of `shape` in `ring` (saturating: an absurd shape never
/// counts as a partial upload that fits).
fn share_len(ring: RingKind, shape: &[usize]) -> u64 {
    shape
        .iter()
        .fold(ring.bytes() as u64, |a, &d| a.saturating_mul(d as u64))
}

/// The refusal for a store error on an upload: another client's name looks like
/// any name this client may not use.
fn upload_refusal(e: crate::store::StoreError) -> Refusal {
    match e {
        crate::store::StoreError::NotOwner { name, .. } => Refusal::new(
            RefusalKind::Denied,
            format!("the name {name:?} is taken: choose another"),
        ),
        e @ crate::store::StoreError::Quota { .. } => {
            Refusal::new(RefusalKind::Quota, e.to_string())
        }
        e @ crate::store::StoreError::Staging { .. } => Refusal::invalid(e.to_string()),
        e => storage(e),
    }
}

/// Checks an upload's name, grants and ring.
fn check_upload(
    shared: &Shared,
    name: &str,
    readers: &[String],
    ring: RingKind,
) -> Result<(), Refusal> {
    if let Err(m) = check_name(name) {
        return Err(Refusal::invalid(format!("input name {name:?}: {m}")));
    }
    for r in readers {
        let grant = crate::store::Grant::parse(r).map_err(Refusal::invalid)?;
        if !shared.cluster.clients.iter().any(|c| c == grant.client) {
            return Err(Refusal::invalid(format!(
                "reader {:?} is not a client of this cluster",
                grant.client
            )));
        }
        if let Some(p) = grant.program
            && shared.registry.get(p).is_none()
        {
            return Err(Refusal::invalid(format!(
                "grant {r:?}: this cluster has no program {p:?}"
            )));
        }
    }
    if ring != shared.cluster.config.ring() {
        return Err(Refusal::invalid(format!(
            "a share of {ring:?}, but the cluster computes in {:?} (preset {:?})",
            shared.cluster.config.ring(),
            shared.cluster.preset
        )));
    }
    Ok(())
}

/// The first part of an upload in parts: checks it as a whole upload, stages it
/// (dropping any earlier unfinished one of this connection) and stores the part.
#[allow(clippy::too_many_arguments)]
async fn start_upload(
    shared: &Arc<Shared>,
    client: &str,
    staged: &mut Option<Staged>,
    name: String,
    tag: u128,
    readers: Vec<String>,
    ring: RingKind,
    shape: Vec<usize>,
    bytes: Vec<u8>,
) -> Reply {
    if let Some(old) = staged.take() {
        let _ = with_store(shared, move |st| {
            st.abandon_staged(old);
            Ok(())
        })
        .await;
    }
    if let Err(r) = check_upload(shared, &name, &readers, ring) {
        return Reply::Refused(r);
    }
    let input = crate::store::StagedInput {
        owner: client.to_string(),
        tag,
        readers,
        ring,
        shape,
    };
    let key = format!("{client}/{name}");
    let quota = shared.cluster.quota;
    let s = shared.clone();
    let started = tokio::task::spawn_blocking(move || {
        let Some(store) = &s.store else {
            return Err(Refusal::invalid(format!("{} stores no shares", s.role)));
        };
        let mut st = store
            .stage_input(&key, input, quota)
            .map_err(upload_refusal)?;
        match store.append_staged(&mut st, &bytes) {
            Ok(()) => Ok(st),
            Err(e) => {
                store.abandon_staged(st);
                Err(upload_refusal(e))
            }
        }
    })
    .await
    .unwrap_or_else(|e| Err(Refusal::failed(e.to_string())));
    match started {
        Ok(st) => {
            let received = st.received();
            info!(%client, input = %name, "upload in parts started");
            *staged = Some(st);
            Reply::PartReceived { received }
        }
        Err(r) => Reply::Refused(r),
    }
}

/// A later part of this connection's upload in parts; the last one commits it.
async fn continue_upload(
    shared: &Arc<Shared>,
    client: &str,
    staged: &mut Option<Staged>,
    tag: u128,
    bytes: Vec<u8>,
) -> Reply {
    let Some(mut st) = staged.take().filter(|st| st.tag() == tag) else {
        return Reply::Refused(Refusal::invalid(
            "no upload in parts with this tag is in progress on this connection: start it with Upload",
        ));
    };
    let quota = shared.cluster.quota;
    let s = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        let Some(store) = &s.store else {
            return Err(Refusal::invalid(format!("{} stores no shares", s.role)));
        };
        if let Err(e) = store.append_staged(&mut st, &bytes) {
            store.abandon_staged(st);
            return Err(upload_refusal(e));
        }
        if !st.complete() {
            return Ok(Some(st));
        }
        store.commit_staged(st, quota).map_err(upload_refusal)?;
        Ok(None)
    })
    .await
    .unwrap_or_else(|e| Err(Refusal::failed(e.to_string())));
    match done {
        Ok(Some(st)) => {
            let received = st.received();
            *staged = Some(st);
            Reply::PartReceived { received }
        }
        Ok(None) => {
            info!(%client, "input stored (uploaded in parts)");
            Reply::Uploaded
        }
        Err(r) => Reply::Refused(r),
    }
}

pub(super) async fn handle_request(
    shared: &Arc<Shared>,
    client: &str,
    req: Request,
    cancel: Arc<AtomicBool>,
) -> Reply {
    let me = shared.role;
    match req {
        Request::Info => Reply::Info {
            role: me,
            config: shared.cluster.config,
            client: client.to_string(),
            programs: shared
                .registry
                .iter()
                .map(|p| (p.name().to_string(), p.version().to_string()))
                .collect(),
            max_message: shared.cluster.max_frame as u64,
        },
        Request::Upload {
            name,
            tag,
            readers,
            ring,
            shape,
            bytes,
        } => {
            if let Err(r) = check_upload(shared, &name, &readers, ring) {
                return Reply::Refused(r);
            }
            let share = match Share::from_bytes(ring, &shape, &bytes) {
                Ok(s) => s,
                Err(e) => return Reply::Refused(Refusal::invalid(format!("input {name:?}: {e}"))),
            };
            let s = shared.clone();
            let owner = client.to_string();
            // Inputs live in their owner's namespace: "alice/x".
            let n = format!("{client}/{name}");
            let stored = tokio::task::spawn_blocking(move || match &s.store {
                Some(st) => st
                    .put_input_within(
                        &n,
                        &StoredInput {
                            owner,
                            tag,
                            readers,
                            share,
                        },
                        s.cluster.quota,
                    )
                    .map_err(upload_refusal),
                None => Err(Refusal::invalid(format!("{} stores no shares", s.role))),
            })
            .await
            .unwrap_or_else(|e| Err(Refusal::failed(e.to_string())));
            match stored {
                Ok(()) => {
                    info!(%client, input = %name, ?shape, "input stored");
                    Reply::Uploaded
                }
                Err(e) => Reply::Refused(e),
            }
        }
        Request::Run {
            program,
            bindings,
            args,
        } => {
            if me != Role::S1 {
                return Reply::Refused(Refusal::invalid(format!("send Run to S1, not {me}")));
            }
            let Some(p) = shared.registry.get(&program).cloned() else {
                return Reply::Refused(Refusal::invalid(format!("S1 has no program {program:?}")));
            };
            let args = match p.resolve_args(&args) {
                Ok(a) => a,
                Err(e) => return Reply::Refused(Refusal::invalid(e)),
            };
            let s = shared.clone();
            let c = client.to_string();
            let a = args.clone();
            let params = tokio::task::spawn_blocking(move || {
                let params = s.resolve(&p, &c, &bindings, &[])?;
                Shared::admit(&p, &params, &a)?;
                Ok(params)
            })
            .await
            .unwrap_or_else(|e| Err(Refusal::failed(e.to_string())));
            let params = match params {
                Ok(p) => p,
                Err(e) => return Reply::Refused(e),
            };
            let job = match new_job(shared, &program, client, params, args) {
                Ok(j) => j,
                Err(e) => return Reply::Refused(e),
            };
            let id = job.id;
            let permit = match acquire_slot(shared).await {
                Ok(p) => p,
                Err(e) => return Reply::Refused(e),
            };
            let (_tx, rx) = mpsc::unbounded_channel();
            let finished = run_job(shared.clone(), job, rx, Some(cancel)).await;
            drop(permit);
            match finished {
                Ok(done) => {
                    info!(job = %hex(id), %client, "job finished");
                    Reply::RunDone {
                        job: id,
                        outputs: done
                            .outputs
                            .into_iter()
                            .filter(|(c, _, _)| c == client)
                            .map(|(_, n, s)| (n, s))
                            .collect(),
                        stats: done.stats,
                    }
                }
                Err(r) => {
                    warn!(job = %hex(id), reason = %r.reason, "job failed");
                    Reply::Refused(
                        Refusal::new(r.kind, format!("job {} failed: {}", hex(id), r.reason))
                            .lost(r.lost),
                    )
                }
            }
        }
        Request::Fetch { job, name } => {
            let (c, n) = (client.to_string(), name.clone());
            let got = with_store(shared, move |st| st.output(job, &c, &n)).await;
            match got {
                Ok(Some(share)) => Reply::Share {
                    ring: share.ring().unwrap_or(shared.cluster.config.ring()),
                    shape: share.shape().to_vec(),
                    bytes: share.to_bytes(),
                },
                Ok(None) => no_output(me, &name, job, client),
                Err(e) => Reply::Refused(e),
            }
        }
        Request::FetchPart { job, name, offset } => {
            let (c, n) = (client.to_string(), name.clone());
            let most = fetch_part_bytes(shared);
            let got = with_store(shared, move |st| st.output_part(job, &c, &n, offset, most)).await;
            match got {
                Ok(Some(p)) => Reply::SharePart {
                    ring: p.ring,
                    shape: p.shape,
                    total: p.total,
                    bytes: p.bytes,
                },
                Ok(None) => no_output(me, &name, job, client),
                Err(e) => Reply::Refused(e),
            }
        }
        // Handled on the connection, which holds the staged upload.
        Request::UploadPart { .. } => Reply::Refused(Refusal::invalid(
            "no upload in parts is in progress on this connection",
        )),
        Request::Release { job, name } => {
            let c = client.to_string();
            let done = with_store(shared, move |st| st.release_output(job, &c, &name)).await;
            match done {
                Ok(_) => Reply::Released,
                Err(e) => Reply::Refused(e),
            }
        }
        Request::DeleteInput { name } => {
            if let Err(m) = check_name(&name) {
                return Reply::Refused(Refusal::invalid(format!("input name {name:?}: {m}")));
            }
            // Only in the client's own namespace: nobody deletes another's input.
            let key = format!("{client}/{name}");
            match with_store(shared, move |st| st.delete_input(&key)).await {
                Ok(true) => {
                    info!(%client, input = %name, "input deleted");
                    Reply::Released
                }
                Ok(false) => Reply::Refused(Refusal::new(
                    RefusalKind::NotFound,
                    format!("{client} has no input named {name:?}"),
                )),
                Err(e) => Reply::Refused(e),
            }
        }
        Request::Call {
            request,
            program,
            bindings,
            inputs,
            args,
        } => {
            let fields = CallArgs {
                request,
                program,
                bindings,
                inputs,
                args,
            };
            let reply = call(shared, client, fields, cancel).await;
            shared.note_refused(client, request, &reply);
            reply
        }
        Request::Infer {
            request,
            model,
            input,
        } => {
            let reply = infer(shared, client, request, model, input, cancel).await;
            shared.note_refused(client, request, &reply);
            reply
        }
        Request::ListOutputs => {
            let c = client.to_string();
            let list = with_store(shared, move |st| st.outputs_for(&c)).await;
            match list {
                Ok(l) => Reply::Outputs(l),
                Err(e) => Reply::Refused(e),
            }
        }
    }
}
