//! Calls and inference: jobs on inputs carried in the request, not stored.
//!
//! A client sends the same request id with its share to `S1` and to `S2`
//! ([`Request::Call`], [`Request::Infer`]). Each primary **parks** its share under
//! (client, request id) with a channel for the answer. `S1` then starts a job whose
//! [`JobSpec::calls`] names the parked requests in row order; `S2` accepts the job's
//! stream only once it holds every request the job names (each under the client
//! that sent it to `S2` over its own authenticated connection, so `S1` cannot put
//! one client's request in another's name). Both load the parked shares as the
//! job's inline parameters, run the program, and hand each request its own rows of
//! the caller's outputs. Nothing is stored.
//!
//! **Dynamic batching** (`S1`, [`Request::Infer`]): requests for one deployed model
//! that arrive within `batch_window` of the first, up to `max_batch`, run as one
//! job. One batch of a model runs at a time: requests arriving meanwhile wait in
//! the queue and form the next batch when it ends, so batches grow with the load
//! (the masked weights, the bulk of a small batch's traffic, are sent once per
//! batch). Only row-wise programs
//! ([`crate::registry::Program::row_wise`]) can be deployed: each client's rows of
//! the result depend on its own rows only.
//!
//! **Limits.** At most `max_queued_requests` requests wait on each primary; beyond,
//! they are refused as busy. A request is answered within `request_timeout_secs`
//! (default 60): one not served by then is refused as busy (and taken out of its
//! queue). A client that disconnects is taken out of a batch that has not started
//! (and a call's job is stopped).

use super::*;
use crate::config::ModelDeployment;
use crate::wire::{CallEntry, Inline};
use std::time::Instant;
use tokio::sync::oneshot;

/// What a parked request receives: its outputs, or why there are none.
pub(super) type Delivery = Result<Reply, Refusal>;

/// A request's shares waiting on a primary for their job.
pub(super) struct Parked {
    /// The inline inputs (taken when the job loads them).
    inputs: Option<Vec<(String, Share)>>,
    reply: Option<oneshot::Sender<Delivery>>,
}

/// Requests waiting for a batch of one model (`S1`).
#[derive(Default)]
pub(super) struct Queue {
    entries: Vec<CallEntry>,
    /// Whether a dispatcher will take the entries.
    pending: bool,
    /// Wakes the dispatcher's window early when `max_batch` requests wait.
    full: Arc<tokio::sync::Notify>,
}

/// The park and the batcher.
#[derive(Default)]
pub(super) struct Calls {
    parked: Mutex<HashMap<(String, u64), Parked>>,
    arrived: tokio::sync::Notify,
    queues: Mutex<HashMap<String, Queue>>,
    /// One batch of a model at a time (`S1`).
    model_slots: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Requests `S1` refused before their `S2` half arrived here (`S2`), with when.
    forgotten: Mutex<HashMap<(String, u64), (Instant, Refusal)>>,
    /// Requests this server (`S2`) refused before parking them, with when and why:
    /// a job that names one is refused at once instead of after the handshake
    /// timeout.
    refused: Mutex<HashMap<(String, u64), (Instant, Refusal)>>,
}

/// How long `S2` remembers a refusal for a request whose half has not arrived.
const FORGET_FOR: Duration = Duration::from_secs(30);

/// Parses an inline share and checks its ring.
fn inline_share(shared: &Shared, i: &Inline) -> Result<Share, Refusal> {
    let ring = shared.cluster.config.ring();
    if i.ring != ring {
        return Err(Refusal::invalid(format!(
            "input {:?}: a share of {:?}, but the cluster computes in {ring:?}",
            i.name, i.ring
        )));
    }
    Share::from_bytes(i.ring, &i.shape, &i.bytes)
        .map_err(|e| Refusal::invalid(format!("input {:?}: {e}", i.name)))
}

fn to_inline(name: &str, s: &Share) -> Inline {
    Inline {
        name: name.to_string(),
        ring: s.ring().unwrap_or(privpy_core::ring::RingKind::Z64),
        shape: s.shape().to_vec(),
        bytes: s.to_bytes(),
    }
}

impl Shared {
    /// Parks `inputs` of `client`'s request `request`; the receiver gets the outcome.
    fn park(
        &self,
        client: &str,
        request: u64,
        inputs: Vec<(String, Share)>,
    ) -> Result<oneshot::Receiver<Delivery>, Refusal> {
        let (tx, rx) = oneshot::channel();
        let key = (client.to_string(), request);
        if let Some((_, r)) = lock(&self.calls.forgotten).remove(&key) {
            return Err(r);
        }
        let mut parked = lock(&self.calls.parked);
        if parked.contains_key(&key) {
            return Err(Refusal::invalid(format!(
                "request {request:016x} is already pending: draw a new request id"
            )));
        }
        let most = self.cluster.max_queued_requests;
        if parked.len() >= most {
            return Err(Refusal::new(
                RefusalKind::Busy,
                format!(
                    "{} is busy: {most} requests waiting; try again later",
                    self.role
                ),
            ));
        }
        parked.insert(
            key,
            Parked {
                inputs: Some(inputs),
                reply: Some(tx),
            },
        );
        drop(parked);
        self.calls.arrived.notify_waiters();
        Ok(rx)
    }

    fn unpark(&self, client: &str, request: u64) {
        lock(&self.calls.parked).remove(&(client.to_string(), request));
    }

    /// Remembers (on `S2`) that it refused `client`'s `request` without parking it,
    /// so that [`Shared::await_parked`] need not wait for it.
    pub(super) fn note_refused(&self, client: &str, request: u64, reply: &Reply) {
        let Reply::Refused(r) = reply else { return };
        if self.role != Role::S2 {
            return;
        }
        let key = (client.to_string(), request);
        // A refused duplicate of a pending request leaves that request parked.
        if lock(&self.calls.parked).contains_key(&key) {
            return;
        }
        let mut refused = lock(&self.calls.refused);
        let now = Instant::now();
        refused.retain(|_, (t, _)| now.duration_since(*t) < FORGET_FOR);
        if refused.len() < self.cluster.max_queued_requests {
            refused.insert(key, (now, r.clone()));
        }
        drop(refused);
        // A job may already wait for this request.
        self.calls.arrived.notify_waiters();
    }

    /// Waits until every request `job` names is parked here (`S2`), at most `within`;
    /// gives up at once when this server refused one of them.
    pub(super) async fn await_parked(&self, job: &JobSpec, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.calls.arrived.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let refused = lock(&self.calls.refused);
                if job
                    .calls
                    .iter()
                    .any(|c| refused.contains_key(&(c.client.clone(), c.request)))
                {
                    return false;
                }
            }
            let all = {
                let parked = lock(&self.calls.parked);
                job.calls.iter().all(|c| {
                    parked
                        .get(&(c.client.clone(), c.request))
                        .is_some_and(|p| p.inputs.is_some())
                })
            };
            if all {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Checks that the parked requests of `job` fit its inline parameters.
    pub(super) fn check_parked(&self, job: &JobSpec) -> Result<(), Refusal> {
        let parked = lock(&self.calls.parked);
        let inline: Vec<&Param> = job.params.iter().filter(|p| p.sources.is_empty()).collect();
        for c in &job.calls {
            let Some(inputs) = parked
                .get(&(c.client.clone(), c.request))
                .and_then(|p| p.inputs.as_ref())
            else {
                return Err(Refusal::new(
                    RefusalKind::NotFound,
                    format!(
                        "{} has no request {:016x} from {}",
                        self.role, c.request, c.client
                    ),
                ));
            };
            if inputs.len() != inline.len() {
                return Err(Refusal::invalid(format!(
                    "request {:016x} carries {} inputs, the job {}",
                    c.request,
                    inputs.len(),
                    inline.len()
                )));
            }
            for p in &inline {
                let Some((_, s)) = inputs.iter().find(|(n, _)| *n == p.name) else {
                    return Err(Refusal::invalid(format!(
                        "request {:016x} has no input {:?}",
                        c.request, p.name
                    )));
                };
                if s.shape().first() != Some(&c.rows) || s.shape().get(1..) != p.shape.get(1..) {
                    return Err(Refusal::invalid(format!(
                        "request {:016x}: input {:?} of shape {:?} does not fit the job",
                        c.request,
                        p.name,
                        s.shape()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The share of inline parameter `param` of `job`: its requests' rows stacked.
    pub(super) fn take_inline(&self, job: &JobSpec, param: &str) -> Result<Share, Refusal> {
        let mut parked = lock(&self.calls.parked);
        let mut parts = Vec::new();
        for c in &job.calls {
            let inputs = parked
                .get_mut(&(c.client.clone(), c.request))
                .and_then(|p| p.inputs.as_mut())
                .ok_or_else(|| {
                    Refusal::new(
                        RefusalKind::NotFound,
                        format!("request {:016x} of {} is gone", c.request, c.client),
                    )
                })?;
            let k = inputs
                .iter()
                .position(|(n, _)| n == param)
                .ok_or_else(|| Refusal::invalid(format!("no inline input {param:?}")))?;
            parts.push(inputs.swap_remove(k).1);
        }
        if parts.len() == 1 {
            return Ok(parts.remove(0));
        }
        Share::concat_rows(&parts).map_err(|e| Refusal::invalid(e.to_string()))
    }

    /// Hands each request of `job` its rows of `mine`, the outputs for the caller
    /// (all of them to a single request).
    ///
    /// # Errors
    /// An output that does not have one row per input row (the job fails, and its
    /// requests are told why).
    pub(super) fn deliver(
        &self,
        job: &JobSpec,
        mine: &[(String, Share)],
        stats: &[CommStats; 4],
    ) -> Result<(), Refusal> {
        let total: usize = job.calls.iter().map(|c| c.rows).sum();
        let mut per_request: Vec<Vec<Inline>> = vec![Vec::new(); job.calls.len()];
        for (name, share) in mine {
            if job.calls.len() == 1 {
                per_request[0].push(to_inline(name, share));
                continue;
            }
            if share.shape().first() != Some(&total) {
                return Err(Refusal::failed(format!(
                    "output {name:?} of shape {:?} has not one row per input row ({total}): it cannot be split among a batch",
                    share.shape()
                )));
            }
            let mut at = 0;
            for (k, c) in job.calls.iter().enumerate() {
                let rows = share
                    .slice_rows(at, at + c.rows)
                    .map_err(|e| Refusal::failed(e.to_string()))?;
                per_request[k].push(to_inline(name, &rows));
                at += c.rows;
            }
        }
        let batch = u32::try_from(job.calls.len()).unwrap_or(u32::MAX);
        let mut parked = lock(&self.calls.parked);
        for (c, outputs) in job.calls.iter().zip(per_request) {
            if let Some(p) = parked.remove(&(c.client.clone(), c.request))
                && let Some(tx) = p.reply
            {
                let _ = tx.send(Ok(Reply::Called {
                    job: job.id,
                    batch,
                    outputs,
                    stats: stats.clone(),
                }));
            }
        }
        Ok(())
    }

    /// Tells every request of `job` still parked here why it failed (and, on
    /// `S1`, tells `S2` to do the same).
    pub(super) fn fail_calls(self: &Arc<Self>, job: &JobSpec, reason: &Refusal) {
        for c in &job.calls {
            self.forget(&c.client, c.request, reason);
            if self.role == Role::S1 {
                self.forget_on_s2(&c.client, c.request, reason);
            }
        }
    }

    /// Answers `client`'s parked `request` with `reason`; remembers it for a
    /// while when the request has not arrived yet.
    pub(super) fn forget(&self, client: &str, request: u64, reason: &Refusal) {
        let key = (client.to_string(), request);
        let p = lock(&self.calls.parked).remove(&key);
        match p {
            Some(p) => {
                if let Some(tx) = p.reply {
                    let _ = tx.send(Err(reason.clone()));
                }
            }
            None if self.role == Role::S2 => {
                let mut f = lock(&self.calls.forgotten);
                let now = Instant::now();
                f.retain(|_, (t, _)| now.duration_since(*t) < FORGET_FOR);
                if f.len() < self.cluster.max_queued_requests {
                    f.insert(key, (now, reason.clone()));
                }
            }
            None => {}
        }
    }

    /// Sends `Forget` for `client`'s `request` to `S2` (from `S1`).
    fn forget_on_s2(self: &Arc<Self>, client: &str, request: u64, reason: &Refusal) {
        let s = self.clone();
        let msg = Control::Forget {
            client: client.to_string(),
            request,
            refusal: reason.clone(),
        };
        self.rt.spawn(async move {
            let mut id = [0u8; 8];
            if getrandom::fill(&mut id).is_err() {
                return;
            }
            match peers::link_to(&s, Role::S2).await {
                Ok(link) => {
                    if let Ok(stream) = link.open(u64::from_le_bytes(id)) {
                        let _ = stream.send(&msg);
                    }
                }
                Err(e) => debug!(reason = %e, "could not tell S2 to forget a request"),
            }
        });
    }
}

/// Waits for a parked request's outcome, giving up when the client disconnects
/// (`cancel`) or after the job deadline.
async fn wait_parked(
    shared: &Arc<Shared>,
    client: &str,
    request: u64,
    mut rx: oneshot::Receiver<Delivery>,
    cancel: &AtomicBool,
) -> Reply {
    let deadline = tokio::time::Instant::now() + shared.cluster.request_timeout;
    loop {
        let tick = tokio::time::sleep(Duration::from_millis(50));
        tokio::select! {
            r = &mut rx => {
                return match r {
                    Ok(Ok(reply)) => reply,
                    Ok(Err(reason)) => Reply::Refused(reason),
                    Err(_) => Reply::Refused(Refusal::failed("the request's job went away")),
                };
            }
            _ = tick => {}
        }
        if cancel.load(Ordering::Relaxed) || tokio::time::Instant::now() >= deadline {
            shared.unpark(client, request);
            shared.unqueue(client, request);
            return Reply::Refused(Refusal::new(
                RefusalKind::Busy,
                format!(
                    "request {request:016x} was not served within request_timeout_secs ({:?}), or its client left",
                    shared.cluster.request_timeout
                ),
            ));
        }
    }
}

impl Shared {
    fn unqueue(&self, client: &str, request: u64) {
        for q in lock(&self.calls.queues).values_mut() {
            q.entries
                .retain(|e| !(e.client == client && e.request == request));
        }
    }
}

/// The fields of a `Request::Call`.
pub(super) struct CallArgs {
    pub(super) request: u64,
    pub(super) program: String,
    pub(super) bindings: Vec<(String, Vec<String>)>,
    pub(super) inputs: Vec<Inline>,
    pub(super) args: Vec<(String, f64)>,
}

/// `Request::Call` on `S1` or `S2`.
pub(super) async fn call(
    shared: &Arc<Shared>,
    client: &str,
    call: CallArgs,
    cancel: Arc<AtomicBool>,
) -> Reply {
    let started = Instant::now();
    let label = Metrics::label(&call.program);
    shared.metrics.requests.get_or_create(&label).inc();
    let request = call.request;
    let reply = call_inner(shared, client, call, cancel).await;
    finish_request(shared, &label, started, &reply);
    if let (Role::S1, Reply::Refused(r)) = (shared.role, &reply) {
        shared.forget_on_s2(client, request, r);
    }
    reply
}

fn finish_request(shared: &Shared, label: &ProgramLabel, started: Instant, reply: &Reply) {
    if matches!(reply, Reply::Refused(_)) {
        shared.metrics.refused.get_or_create(label).inc();
    }
    shared
        .metrics
        .latency
        .get_or_create(label)
        .observe(started.elapsed().as_secs_f64());
}

async fn call_inner(
    shared: &Arc<Shared>,
    client: &str,
    call: CallArgs,
    cancel: Arc<AtomicBool>,
) -> Reply {
    let CallArgs {
        request,
        program,
        bindings,
        inputs,
        args,
    } = call;
    let me = shared.role;
    let Some(p) = shared.registry.get(&program).cloned() else {
        return Reply::Refused(Refusal::invalid(format!("{me} has no program {program:?}")));
    };
    let mut shares = Vec::new();
    for i in &inputs {
        if shares.iter().any(|(n, _)| *n == i.name) {
            return Reply::Refused(Refusal::invalid(format!("input {:?} given twice", i.name)));
        }
        match inline_share(shared, i) {
            Ok(s) => shares.push((i.name.clone(), s)),
            Err(r) => return Reply::Refused(r),
        }
    }
    let inline: Vec<(String, Vec<usize>)> = shares
        .iter()
        .map(|(n, s)| (n.clone(), s.shape().to_vec()))
        .collect();
    let rows = match inline.first().and_then(|(_, s)| s.first()) {
        Some(&r) => r,
        None => 1,
    };
    let stored_bindings = !bindings.is_empty();
    let rx = match shared.park(client, request, shares) {
        Ok(rx) => rx,
        Err(r) => return Reply::Refused(r),
    };
    if me != Role::S1 {
        return wait_parked(shared, client, request, rx, &cancel).await;
    }
    let args = match p.resolve_args(&args) {
        Ok(a) => a,
        Err(e) => {
            shared.unpark(client, request);
            return Reply::Refused(Refusal::invalid(e));
        }
    };
    let resolve = {
        let s = shared.clone();
        let c = client.to_string();
        let a = args.clone();
        move || {
            let params = s.resolve(&p, &c, &bindings, &inline)?;
            Shared::admit(&p, &params, &a)?;
            Ok(params)
        }
    };
    // Only stored inputs need the store (a blocking thread); inline ones do not.
    let params = if stored_bindings {
        tokio::task::spawn_blocking(resolve)
            .await
            .unwrap_or_else(|e| Err(Refusal::failed(e.to_string())))
    } else {
        resolve()
    };
    let params = match params {
        Ok(p) => p,
        Err(e) => {
            shared.unpark(client, request);
            return Reply::Refused(e);
        }
    };
    let job = match new_job(shared, &program, client, params, args) {
        Ok(mut j) => {
            j.calls = vec![CallEntry {
                client: client.to_string(),
                request,
                rows,
            }];
            j
        }
        Err(e) => {
            shared.unpark(client, request);
            return Reply::Refused(e);
        }
    };
    let permit = match acquire_slot(shared).await {
        Ok(p) => p,
        Err(e) => {
            shared.unpark(client, request);
            return Reply::Refused(e);
        }
    };
    let s = shared.clone();
    let cancel2 = cancel.clone();
    tokio::spawn(async move {
        let (_tx, arrivals) = mpsc::unbounded_channel();
        let r = run_job(s.clone(), job.clone(), arrivals, Some(cancel2)).await;
        drop(permit);
        if let Err(reason) = r {
            s.fail_calls(&job, &job_failed(&job, reason));
        }
    });
    wait_parked(shared, client, request, rx, &cancel).await
}

/// A failed job's refusal as its requests see it.
fn job_failed(job: &JobSpec, r: Refusal) -> Refusal {
    Refusal::new(r.kind, format!("job {} failed: {}", hex(job.id), r.reason)).lost(r.lost)
}

/// A new job of `program` for `client` with a fresh id.
pub(super) fn new_job(
    shared: &Shared,
    program: &str,
    client: &str,
    params: Vec<Param>,
    args: Vec<(String, f64)>,
) -> Result<JobSpec, Refusal> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|_| Refusal::failed("S1 could not draw a job id"))?;
    let (version, prepared) = match shared.registry.get(program) {
        Some(p) => (p.version().to_string(), shared.plan_prepared(p, &params)),
        None => (String::new(), Vec::new()),
    };
    Ok(JobSpec {
        id: u64::from_le_bytes(id),
        program: program.to_string(),
        version,
        config: shared.cluster.config,
        client: client.to_string(),
        params,
        args,
        calls: Vec::new(),
        prepared,
    })
}

/// A slot among `max_jobs`, or a place among `max_queued_jobs` waiting ones.
pub(super) async fn acquire_slot(
    shared: &Arc<Shared>,
) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
    use std::sync::atomic::Ordering::SeqCst;
    if let Ok(p) = shared.jobs.clone().try_acquire_owned() {
        return Ok(p);
    }
    if shared.queued.fetch_add(1, SeqCst) >= shared.cluster.max_queued_jobs {
        shared.queued.fetch_sub(1, SeqCst);
        return Err(Refusal::new(
            RefusalKind::Busy,
            format!(
                "S1 is busy: {} jobs running and {} waiting; try again later",
                shared.cluster.max_jobs, shared.cluster.max_queued_jobs
            ),
        ));
    }
    let p = shared.jobs.clone().acquire_owned().await;
    shared.queued.fetch_sub(1, SeqCst);
    p.map_err(|_| Refusal::failed("S1 is shutting down"))
}

/// `Request::Infer` on `S1` or `S2`.
pub(super) async fn infer(
    shared: &Arc<Shared>,
    client: &str,
    request: u64,
    model: String,
    input: Inline,
    cancel: Arc<AtomicBool>,
) -> Reply {
    let started = Instant::now();
    let Some(dep) = shared
        .cluster
        .models
        .iter()
        .find(|m| m.name == model)
        .cloned()
    else {
        return Reply::Refused(Refusal::new(
            RefusalKind::NotFound,
            format!("{} serves no model {model:?}", shared.role),
        ));
    };
    let label = Metrics::label(&dep.program);
    shared.metrics.requests.get_or_create(&label).inc();
    let reply = infer_inner(shared, client, request, &dep, input, cancel).await;
    finish_request(shared, &label, started, &reply);
    if let (Role::S1, Reply::Refused(r)) = (shared.role, &reply) {
        shared.forget_on_s2(client, request, r);
    }
    reply
}

async fn infer_inner(
    shared: &Arc<Shared>,
    client: &str,
    request: u64,
    dep: &ModelDeployment,
    input: Inline,
    cancel: Arc<AtomicBool>,
) -> Reply {
    let Some(program) = shared.registry.get(&dep.program) else {
        return Reply::Refused(Refusal::failed(format!(
            "model {:?}: program {:?} is not registered",
            dep.name, dep.program
        )));
    };
    let share = match inline_share(shared, &input) {
        Ok(s) => s,
        Err(r) => return Reply::Refused(r),
    };
    let rows = match share.shape().first() {
        Some(&r) if r > 0 => r,
        _ => {
            return Reply::Refused(Refusal::invalid(format!(
                "model {:?} takes rows: an input of shape {:?} has none",
                dep.name,
                share.shape()
            )));
        }
    };
    if let Err(e) = program.check_shape(&dep.input, share.shape()) {
        return Reply::Refused(Refusal::invalid(e));
    }
    let rx = match shared.park(client, request, vec![(dep.input.clone(), share)]) {
        Ok(rx) => rx,
        Err(r) => return Reply::Refused(r),
    };
    if shared.role == Role::S1 {
        let entry = CallEntry {
            client: client.to_string(),
            request,
            rows,
        };
        let mut queues = lock(&shared.calls.queues);
        let q = queues.entry(dep.name.clone()).or_default();
        q.entries.push(entry);
        if q.entries.len() >= shared.cluster.max_batch {
            q.full.notify_one();
        }
        if !q.pending {
            q.pending = true;
            spawn_dispatcher(shared, dep, &q.full, true);
        }
    }
    wait_parked(shared, client, request, rx, &cancel).await
}

fn spawn_dispatcher(
    shared: &Arc<Shared>,
    dep: &ModelDeployment,
    full: &Arc<tokio::sync::Notify>,
    window: bool,
) {
    tokio::spawn(dispatcher(
        shared.clone(),
        dep.clone(),
        full.clone(),
        window,
    ));
}

/// Forms and runs the next batch of `dep` (`S1`): waits out the batching window
/// (or until the queue is full), then for the model's job slot (one batch of a
/// model runs at a time, so the queue keeps filling meanwhile) and a cluster job
/// slot, then takes up to `max_batch` requests. Requests left in the queue get a
/// dispatcher of their own.
async fn dispatcher(
    shared: Arc<Shared>,
    dep: ModelDeployment,
    full: Arc<tokio::sync::Notify>,
    window: bool,
) {
    if window {
        tokio::select! {
            _ = tokio::time::sleep(shared.cluster.batch_window) => {}
            _ = full.notified() => {}
        }
    }
    let model = {
        let mut m = lock(&shared.calls.model_slots);
        m.entry(dep.name.clone())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(shared.cluster.model_jobs)))
            .clone()
    };
    let Ok(model_permit) = model.acquire_owned().await else {
        return;
    };
    let slot = acquire_slot(&shared).await;
    let entries = {
        let mut queues = lock(&shared.calls.queues);
        let q = queues.entry(dep.name.clone()).or_default();
        let k = q.entries.len().min(shared.cluster.max_batch);
        let taken: Vec<CallEntry> = q.entries.drain(..k).collect();
        q.pending = !q.entries.is_empty();
        if q.pending {
            // The rest waits for the model's slot (and so keeps filling).
            spawn_dispatcher(&shared, &dep, &q.full, false);
        }
        taken
    };
    if entries.is_empty() {
        return;
    }
    let permit = match slot {
        Ok(p) => p,
        Err(reason) => {
            let job = JobSpec {
                calls: entries,
                ..batch_shell(&shared, &dep)
            };
            shared.fail_calls(&job, &reason);
            return;
        }
    };
    dispatch(shared, dep, entries, (permit, model_permit)).await;
}

/// Runs one batch of inference requests as a job (`S1`), holding `permits`.
async fn dispatch(
    shared: Arc<Shared>,
    dep: ModelDeployment,
    entries: Vec<CallEntry>,
    permits: (
        tokio::sync::OwnedSemaphorePermit,
        tokio::sync::OwnedSemaphorePermit,
    ),
) {
    // Requests whose clients left while the batch waited are gone from the park.
    let entries: Vec<CallEntry> = {
        let parked = lock(&shared.calls.parked);
        entries
            .into_iter()
            .filter(|e| parked.contains_key(&(e.client.clone(), e.request)))
            .collect()
    };
    if entries.is_empty() {
        return;
    }
    let s = shared.clone();
    let d = dep.clone();
    let es = entries.clone();
    let built = tokio::task::spawn_blocking(move || build_batch(&s, &d, es))
        .await
        .unwrap_or_else(|e| Err((Refusal::failed(e.to_string()), Vec::new())));
    let job = match built {
        Ok(job) => job,
        Err((reason, entries)) => {
            let job = JobSpec {
                calls: entries,
                ..batch_shell(&shared, &dep)
            };
            shared.fail_calls(&job, &reason);
            return;
        }
    };
    shared
        .metrics
        .batch
        .get_or_create(&Metrics::label(&dep.program))
        .observe(job.calls.len() as f64);
    let (_tx, arrivals) = mpsc::unbounded_channel();
    let r = run_job(shared.clone(), job.clone(), arrivals, None).await;
    drop(permits);
    if let Err(reason) = r {
        shared.fail_calls(&job, &job_failed(&job, reason));
    }
}

fn batch_shell(shared: &Shared, dep: &ModelDeployment) -> JobSpec {
    JobSpec {
        id: 0,
        program: dep.program.clone(),
        version: String::new(),
        config: shared.cluster.config,
        client: dep.owner.clone(),
        params: Vec::new(),
        args: Vec::new(),
        calls: Vec::new(),
        prepared: Vec::new(),
    }
}

/// The job of a batch: the model's weights resolved for every client in it (a
/// client the owner has not granted them to is refused alone), the requests' rows
/// stacked as the model's input.
fn build_batch(
    shared: &Arc<Shared>,
    dep: &ModelDeployment,
    entries: Vec<CallEntry>,
) -> Result<JobSpec, (Refusal, Vec<CallEntry>)> {
    let program = match shared.registry.get(&dep.program) {
        Some(p) => p,
        None => {
            return Err((
                Refusal::failed(format!("program {:?} is not registered", dep.program)),
                entries,
            ));
        }
    };
    let bindings: Vec<(String, Vec<String>)> = dep
        .weights
        .iter()
        .map(|(p, n)| (p.clone(), vec![format!("{}/{n}", dep.owner)]))
        .collect();
    let trailing: Vec<usize> = program
        .params()
        .iter()
        .find(|(n, _)| *n == dep.input)
        .map(|(_, s)| s.iter().skip(1).map(|d| d.unwrap_or(0)).collect())
        .unwrap_or_default();
    let mut kept = Vec::new();
    let mut params = None;
    let mut refused: Vec<(CallEntry, Refusal)> = Vec::new();
    let mut by_client: HashMap<String, Result<Vec<Param>, Refusal>> = HashMap::new();
    for e in entries {
        let r = by_client.entry(e.client.clone()).or_insert_with(|| {
            let mut shape = vec![1];
            shape.extend(&trailing);
            shared.resolve(program, &e.client, &bindings, &[(dep.input.clone(), shape)])
        });
        match r {
            Ok(p) => {
                params.get_or_insert_with(|| p.clone());
                kept.push(e);
            }
            Err(reason) => refused.push((e, reason.clone())),
        }
    }
    for (e, reason) in refused {
        let job = JobSpec {
            calls: vec![e],
            ..batch_shell(shared, dep)
        };
        shared.fail_calls(&job, &reason);
    }
    let Some(mut params) = params else {
        return Err((Refusal::failed("no request left in the batch"), Vec::new()));
    };
    let rows: usize = kept.iter().map(|e| e.rows).sum();
    for p in &mut params {
        if p.name == dep.input
            && let Some(r) = p.shape.first_mut()
        {
            *r = rows;
        }
    }
    if let Err(r) = Shared::admit(
        program,
        &params,
        &program.resolve_args(&[]).unwrap_or_default(),
    ) {
        return Err((r, kept));
    }
    let client = kept[0].client.clone();
    let args = program.resolve_args(&[]).unwrap_or_default();
    let mut job =
        new_job(shared, &dep.program, &client, params, args).map_err(|r| (r, kept.clone()))?;
    job.calls = kept;
    Ok(job)
}
