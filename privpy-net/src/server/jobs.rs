//! Job admission and execution: whether this server can take part in a job
//! (program, version, preset, client, bindings, grants, shapes, upload tags), loading
//! its inputs, running the program on its thread, storing its outputs.

use super::*;
use crate::wire::PreparedUse;
use privpy_core::ShareReader;

impl Shared {
    /// Whether this server can take part in `job` (run by the accepting side of a link).
    pub(super) fn check_job(&self, job: &JobSpec) -> Result<(), Refusal> {
        let me = self.role;
        let program = self
            .registry
            .get(&job.program)
            .ok_or_else(|| Refusal::invalid(format!("{me} has no program {:?}", job.program)))?;
        if program.version() != job.version {
            return Err(Refusal::invalid(format!(
                "program {:?}: {me} runs version {:?}, the job asks for version {:?}; all four servers must run the same version",
                job.program,
                program.version(),
                job.version
            )));
        }
        if job.config != self.cluster.config {
            return Err(Refusal::invalid(format!(
                "{me} computes with preset {:?} ({:?}), the job with {:?}",
                self.cluster.preset, self.cluster.config, job.config
            )));
        }
        let mut clients: Vec<&str> = vec![job.client.as_str()];
        for c in &job.calls {
            if !clients.contains(&c.client.as_str()) {
                clients.push(&c.client);
            }
        }
        for c in &clients {
            if !self.cluster.clients.iter().any(|k| k == c) {
                return Err(Refusal::new(
                    RefusalKind::Denied,
                    format!("{me} does not accept client {c:?}"),
                ));
            }
        }
        let inline: Vec<(String, Vec<usize>)> = if job.calls.is_empty() {
            Vec::new()
        } else {
            job.params
                .iter()
                .filter(|p| p.sources.is_empty())
                .map(|p| (p.name.clone(), p.shape.clone()))
                .collect()
        };
        if !job.calls.is_empty() {
            let rows: usize = job.calls.iter().map(|c| c.rows).sum();
            if inline.iter().any(|(_, s)| s.first() != Some(&rows)) {
                return Err(Refusal::invalid(
                    "the inline inputs' rows do not add up to the requests' rows",
                ));
            }
            // Several requests in one job only for a program row-wise in its one
            // inline input: no client's rows of the result depend on another's input.
            if job.calls.len() > 1 {
                let row_wise = program.row_wise_param();
                if inline.len() != 1 || row_wise != Some(inline[0].0.as_str()) {
                    return Err(Refusal::invalid(format!(
                        "program {:?} is not row-wise in its inline input: its requests cannot be batched",
                        job.program
                    )));
                }
            }
        }
        if job.params.len() != program.params().len() {
            return Err(Refusal::invalid(format!(
                "program {:?} takes {} inputs, the job binds {}",
                job.program,
                program.params().len(),
                job.params.len()
            )));
        }
        for p in &job.params {
            program
                .check_shape(&p.name, &p.shape)
                .map_err(Refusal::invalid)?;
            if p.tags.len() != p.sources.len() {
                return Err(Refusal::invalid(format!(
                    "parameter {:?}: {} sources but {} upload tags",
                    p.name,
                    p.sources.len(),
                    p.tags.len()
                )));
            }
        }
        if program.resolve_args(&job.args).map_err(Refusal::invalid)? != job.args {
            return Err(Refusal::invalid(format!(
                "the job's arguments do not match {me}'s program declaration"
            )));
        }
        Self::admit(program, &job.params, &job.args)?;
        if me.is_primary() {
            let bindings: Vec<(String, Vec<String>)> = job
                .params
                .iter()
                .filter(|p| job.calls.is_empty() || !p.sources.is_empty())
                .map(|p| (p.name.clone(), p.sources.clone()))
                .collect();
            // Every client of the job must be allowed the stored inputs it binds.
            let mut mine = Vec::new();
            for c in &clients {
                mine = self.resolve(program, c, &bindings, &inline)?;
            }
            if !job.calls.is_empty() {
                self.check_parked(job)?;
            }
            for (theirs, mine) in job.params.iter().zip(&mine) {
                for ((src, t), m) in theirs.sources.iter().zip(&theirs.tags).zip(&mine.tags) {
                    if t != m {
                        return Err(stale(src));
                    }
                }
                if theirs.shape != mine.shape {
                    return Err(stale(&theirs.sources.join(", ")));
                }
            }
        }
        for u in &job.prepared {
            let Some(p) = job.params.iter().find(|p| p.name == u.param) else {
                return Err(Refusal::invalid(format!(
                    "no parameter {:?} to prepare",
                    u.param
                )));
            };
            if !program.prepared_params().contains(&u.param)
                || prepared_key(&job.program, &job.version, p) != u.key
            {
                return Err(Refusal::invalid(format!(
                    "parameter {:?} is not prepared that way",
                    u.param
                )));
            }
            if u.reuse && !self.prepared.contains(&u.key) {
                return Err(Refusal::failed(format!(
                    "{me} no longer keeps the prepared {:?} (restarted?): the next job prepares it again",
                    u.param
                )));
            }
        }
        Ok(())
    }

    /// The preparation plan of a job (`S1`): each parameter the program takes
    /// prepared and that is bound to stored inputs, reused when every server kept
    /// it in a job that succeeded.
    pub(super) fn plan_prepared(&self, program: &Program, params: &[Param]) -> Vec<PreparedUse> {
        let confirmed = lock(&self.confirmed);
        program
            .prepared_params()
            .iter()
            .filter_map(|name| params.iter().find(|p| &p.name == name))
            .filter(|p| !p.sources.is_empty())
            .map(|p| {
                let key = prepared_key(program.name(), program.version(), p);
                PreparedUse {
                    param: p.name.clone(),
                    reuse: confirmed.contains(&key) && self.prepared.contains(&key),
                    key,
                }
            })
            .collect()
    }

    /// Checks a run request against the program and the store; the job's parameters.
    pub(super) fn resolve(
        &self,
        program: &Program,
        client: &str,
        bindings: &[(String, Vec<String>)],
        inline: &[(String, Vec<usize>)],
    ) -> Result<Vec<Param>, Refusal> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| Refusal::invalid(format!("{} has no share store", self.role)))?;
        for (name, _) in bindings {
            if !program.params().iter().any(|(p, _)| p == name) {
                return Err(Refusal::invalid(format!(
                    "program {:?} has no input {name:?} (its inputs: {})",
                    program.name(),
                    program
                        .params()
                        .iter()
                        .map(|(p, _)| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        if let Some((n, _)) = bindings
            .iter()
            .find(|(n, _)| inline.iter().any(|(m, _)| m == n))
        {
            return Err(Refusal::invalid(format!(
                "input {n:?} is both given inline and bound to stored inputs"
            )));
        }
        let mut params = Vec::new();
        for (pname, _) in program.params() {
            if let Some((_, shape)) = inline.iter().find(|(n, _)| n == pname) {
                program
                    .check_shape(pname, shape)
                    .map_err(Refusal::invalid)?;
                params.push(Param {
                    name: pname.clone(),
                    sources: Vec::new(),
                    shape: shape.clone(),
                    tags: Vec::new(),
                });
                continue;
            }
            let mut found = bindings.iter().filter(|(n, _)| n == pname);
            let (Some((_, sources)), None) = (found.next(), found.next()) else {
                return Err(Refusal::invalid(format!(
                    "bind input {pname:?} of program {:?} exactly once",
                    program.name()
                )));
            };
            if sources.is_empty() {
                return Err(Refusal::invalid(format!(
                    "input {pname:?} is bound to no stored input"
                )));
            }
            let mut shapes = Vec::new();
            let mut tags = Vec::new();
            let mut qualified = Vec::new();
            for asked in sources {
                let src = qualify(client, asked)?;
                let inp = store.input_info(&src).map_err(storage)?;
                // A missing input and another client's input get the same answer:
                // a refusal reveals nothing about other clients' data.
                let inp = match inp {
                    Some(i) if i.usable_by(client, program.name(), program.version()) => i,
                    _ => {
                        return Err(Refusal::new(
                            RefusalKind::NotFound,
                            format!("no input named {asked:?} that {client} may use"),
                        ));
                    }
                };
                shapes.push(inp.shape.clone());
                tags.push(inp.tag);
                qualified.push(src);
            }
            let shape = if shapes.len() == 1 {
                shapes.remove(0)
            } else {
                let trailing = shapes[0].get(1..).map(<[usize]>::to_vec);
                let ok = shapes
                    .iter()
                    .all(|s| !s.is_empty() && s.get(1..).map(<[usize]>::to_vec) == trailing);
                if !ok {
                    return Err(Refusal::invalid(format!(
                        "the inputs bound to {pname:?} cannot be stacked by rows: shapes {shapes:?}"
                    )));
                }
                let mut s = shapes[0].clone();
                s[0] = shapes.iter().map(|s| s[0]).sum();
                s
            };
            program
                .check_shape(pname, &shape)
                .map_err(Refusal::invalid)?;
            params.push(Param {
                name: pname.clone(),
                sources: qualified,
                shape,
                tags,
            });
        }
        Ok(params)
    }

    /// The program's admission checks on a job's shapes and arguments.
    pub(super) fn admit(
        program: &Program,
        params: &[Param],
        args: &[(String, f64)],
    ) -> Result<(), Refusal> {
        let shapes: Vec<(String, Vec<usize>)> = params
            .iter()
            .map(|p| (p.name.clone(), p.shape.clone()))
            .collect();
        program
            .admit(&shapes, args)
            .map_err(|reason| Refusal::invalid(format!("program {:?}: {reason}", program.name())))
    }

    /// Runs this server's part of the job (on a blocking thread).
    pub(super) fn execute(
        &self,
        job: JobSpec,
        transport: NetTransport,
    ) -> Result<JobDone, Refusal> {
        let me = self.role;
        let t = self.cluster.timeout;
        let keep = transport.clone();
        let fail = |reason: Refusal| {
            keep.abort_all(&reason.reason, reason.lost);
            Err(reason)
        };
        let program = match self.registry.get(&job.program) {
            Some(p) => p.body(),
            None => {
                return fail(Refusal::invalid(format!(
                    "{me} has no program {:?}",
                    job.program
                )));
            }
        };
        let inputs = match self.load_inputs(&job) {
            Ok(i) => i,
            Err(e) => return fail(e),
        };
        let ctx = Job {
            id: job.id,
            client: job.client.clone(),
            args: job.args.clone(),
            prepared: job.prepared.clone(),
            cache: Some(self.prepared.clone()),
        };
        let body = |s: &privpy_core::Session| program(s, &ctx);
        let result = run_node_in(
            me,
            job.config,
            Box::new(transport),
            inputs,
            self.cluster.clients.clone(),
            self.store.as_ref().map(|s| s.scratch_dir()),
            &body,
        );
        let result = match result {
            Ok(r) => r,
            Err(e) => {
                let lost = match &e {
                    privpy_core::Error::PeerLost { peer, .. } if *peer != me => Some(*peer),
                    _ => None,
                };
                return fail(Refusal::failed(e.to_string()).lost(lost));
            }
        };
        // A call's outputs for its caller go back to its requests; the rest is stored.
        let mut for_calls: Vec<(String, Share)> = Vec::new();
        if let Some(store) = &self.store {
            let mut outs: Vec<(String, String, Share)> = Vec::new();
            let mut streamed = Vec::new();
            let mut written = Ok(());
            for o in &result.outputs {
                let for_call = !job.calls.is_empty() && o.client == job.client;
                match (&o.stored, for_call) {
                    (None, true) => for_calls.push((o.name.clone(), o.share.clone())),
                    (None, false) => outs.push((o.client.clone(), o.name.clone(), o.share.clone())),
                    // A large output goes from the job's files to the store piece
                    // by piece (a call's too: its caller fetches it in parts).
                    (Some(reader), _) => {
                        match store.stream_output(
                            job.id,
                            &o.client,
                            &o.name,
                            job.config.ring(),
                            o.share.shape(),
                            &**reader,
                        ) {
                            Ok(s) => streamed.push((o.client.clone(), o.name.clone(), s)),
                            Err(e) => {
                                written = Err(e);
                                break;
                            }
                        }
                    }
                }
            }
            if written.is_err() {
                for (client, name, s) in streamed.drain(..) {
                    store.abandon_streamed(job.id, &client, &name, s);
                }
            }
            let written = written.and_then(|()| {
                if outs.is_empty() && streamed.is_empty() {
                    // Nothing to store (a call): no write transaction.
                    Ok(())
                } else {
                    store.put_outputs_with(job.id, &outs, streamed)
                }
            });
            if let Err(e) = written {
                let reason = format!("{me} could not store the outputs: {e}");
                if me != Role::S1 {
                    let _ = keep.send_control(Role::S1, &Control::Finished(Err(reason.clone())));
                }
                return Err(Refusal::new(RefusalKind::Storage, reason));
            }
        }
        let outputs = result
            .outputs
            .iter()
            .map(|o| (o.client.clone(), o.name.clone(), o.share.shape().to_vec()))
            .collect();
        let mut stats: [CommStats; 4] = Default::default();
        stats[me.index()] = result.stats.clone();
        if me != Role::S1 {
            if self.store.is_some() && !job.calls.is_empty() {
                self.deliver(&job, &for_calls, &stats)?;
            }
            let _ = keep.send_control(Role::S1, &Control::Finished(Ok(result.stats)));
            return Ok(JobDone { outputs, stats });
        }
        for peer in [Role::S2, Role::Sa, Role::Sb] {
            match keep.recv_control(peer, t) {
                Ok(Control::Finished(Ok(s))) => stats[peer.index()] = s,
                Ok(Control::Finished(Err(r))) => {
                    return Err(Refusal::failed(format!("{peer}: {r}")));
                }
                Ok(Control::Abort { reason, culprit }) => {
                    return Err(Refusal::failed(format!("{peer}: {reason}")).lost(culprit));
                }
                Ok(_) => {
                    return Err(Refusal::failed(format!(
                        "{peer} sent an unexpected message at the end of the job"
                    )));
                }
                Err(e) => {
                    return Err(
                        Refusal::failed(format!("{peer} did not finish: {e}")).lost(Some(e.peer()))
                    );
                }
            }
        }
        if !job.calls.is_empty() {
            self.deliver(&job, &for_calls, &stats)?;
        }
        Ok(JobDone { outputs, stats })
    }

    /// This server's inputs for `job`: its stored shares (on `S1`, `S2`), checked
    /// against the upload tags the job was admitted with, or the shapes.
    pub(super) fn load_inputs(
        &self,
        job: &JobSpec,
    ) -> Result<BTreeMap<String, NodeInput>, Refusal> {
        let mut inputs = BTreeMap::new();
        for p in &job.params {
            // A prepared matrix every server keeps: its shares are not read again
            // (the program takes it from `Job::prepared`, not as an input).
            if job.prepared.iter().any(|u| u.reuse && u.param == p.name) {
                continue;
            }
            let input = match &self.store {
                Some(_) if p.sources.is_empty() && !job.calls.is_empty() => {
                    let share = self.take_inline(job, &p.name)?;
                    if share.shape() != p.shape.as_slice() {
                        return Err(Refusal::invalid(format!(
                            "inline input {:?} has shape {:?}, the job {:?}",
                            p.name,
                            share.shape(),
                            p.shape
                        )));
                    }
                    NodeInput::Share(share)
                }
                Some(store) => {
                    if let Some(stored) = stored_input(store, p)? {
                        inputs.insert(p.name.clone(), stored);
                        continue;
                    }
                    let mut parts = Vec::new();
                    for (src, &tag) in p.sources.iter().zip(&p.tags) {
                        let inp = store.input(src).map_err(storage)?;
                        match inp {
                            // Replaced since admission, or lost: never mix uploads.
                            Some(i) if i.tag == tag => parts.push(i.share),
                            _ => return Err(stale(src)),
                        }
                    }
                    let share = if parts.len() == 1 {
                        parts.remove(0)
                    } else {
                        Share::concat_rows(&parts).map_err(|e| Refusal::invalid(e.to_string()))?
                    };
                    if share.shape() != p.shape.as_slice() {
                        return Err(stale(&p.sources.join(", ")));
                    }
                    NodeInput::Share(share)
                }
                None => NodeInput::Shape(p.shape.clone()),
            };
            inputs.insert(p.name.clone(), input);
        }
        Ok(inputs)
    }
}

/// A 2-D input uploaded in parts (every source of it), as readers of the stored
/// pieces: the program reads it on demand ([`privpy_core::Session::large_input`],
/// or whole with `Session::input` when it fits the memory budget). `None` for
/// anything else, which is loaded whole.
fn stored_input(store: &crate::store::Store, p: &Param) -> Result<Option<NodeInput>, Refusal> {
    let &[rows, cols] = p.shape.as_slice() else {
        return Ok(None);
    };
    let mut readers = Vec::new();
    for (src, &tag) in p.sources.iter().zip(&p.tags) {
        match store.input_reader(src, tag).map_err(storage)? {
            Some(r) => readers.push(r),
            None => return Ok(None),
        }
    }
    let reader: Arc<dyn ShareReader> = match readers.len() {
        0 => return Ok(None),
        1 => Arc::new(readers.remove(0)),
        _ => Arc::new(Concat::new(readers)),
    };
    Ok(Some(NodeInput::Stored {
        shape: [rows, cols],
        reader,
    }))
}

/// Several stored shares read as one (inputs stacked by rows).
struct Concat {
    parts: Vec<crate::store::InputReader>,
    starts: Vec<u64>,
}

impl Concat {
    fn new(parts: Vec<crate::store::InputReader>) -> Concat {
        let mut starts = vec![0];
        for p in &parts {
            starts.push(starts.last().copied().unwrap_or(0) + p.len());
        }
        Concat { parts, starts }
    }
}

impl ShareReader for Concat {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let end = offset + buf.len() as u64;
        let mut at = offset;
        let mut k = self
            .starts
            .partition_point(|&s| s <= offset)
            .saturating_sub(1);
        while at < end {
            let (Some(part), Some(&start), Some(&stop)) = (
                self.parts.get(k),
                self.starts.get(k),
                self.starts.get(k + 1),
            ) else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "past the end of the stacked inputs",
                ));
            };
            let take = (stop.min(end) - at) as usize;
            let dst = (at - offset) as usize;
            part.read_at(at - start, &mut buf[dst..dst + take])?;
            at += take as u64;
            k += 1;
        }
        Ok(())
    }
}

/// A binding's input name in its owner's namespace: `x` is the client's own
/// (`client/x`), `owner/x` another client's.
pub(super) fn qualify(client: &str, src: &str) -> Result<String, Refusal> {
    let bad = |m: String| Refusal::invalid(format!("input name {src:?}: {m}"));
    match src.split_once('/') {
        None => {
            check_name(src).map_err(bad)?;
            Ok(format!("{client}/{src}"))
        }
        Some((owner, name)) => {
            check_name(owner).map_err(bad)?;
            check_name(name).map_err(bad)?;
            Ok(src.to_string())
        }
    }
}

/// What identifies a prepared matrix: program, version, parameter, shape and the
/// upload tags of its sources (a new upload is a new key).
pub(super) fn prepared_key(program: &str, version: &str, p: &Param) -> String {
    let tags: Vec<String> = p.tags.iter().map(|t| format!("{t:032x}")).collect();
    format!(
        "{program}:{version}:{}:{:?}:{}",
        p.name,
        p.shape,
        tags.join(",")
    )
}

/// The refusal for shares of one input that come from different uploads.
pub(super) fn stale(input: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Stale,
        format!(
            "S1 and S2 hold shares of input {input:?} from different uploads (an upload reached only one of them): re-upload it"
        ),
    )
}

pub(super) fn storage(e: crate::store::StoreError) -> Refusal {
    Refusal::new(RefusalKind::Storage, e.to_string())
}

// ---------------------------------------------------------------- clients
