//! The four-party protocols of paper §4–5 on one server.
//!
//! A [`Party`] is one server's side of a session: its role, the pairwise PRGs it
//! shares with the other servers, its operation counter and its links. Every
//! operation is called on all four servers in the same order (SPMD, paper §3); each
//! server does its own part and they meet through messages. Operations work on whole
//! arrays: one message per link per round, whatever the size.

use crate::broadcast::{broadcast_to, zip_map};
use crate::config::{Comparison, Config};
use crate::data::{Data, Held};
use crate::engine::{BinOp, CmpKind, Engine, PreparedData};
use crate::error::{Error, Result};
use crate::gc::{FixedKeyAes, LabelPrg};
use crate::kernels::{self, matmul_trunc, matmul_trunc_packed, mul_round, rounding};
use crate::prg::{PairPrg, Purpose};
use crate::ring::{Ring, Z64, Z128, Z256};
use crate::transport::{CommStats, Message, Role, Transport, TransportError};
use ndarray::{ArrayD, ArrayViewD, Ix2, IxDyn};
use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

use Role::{S1, S2, Sa, Sb};

mod compare;
mod compare4;

/// A ring whose arrays a [`Data`] can hold.
pub(crate) trait RingData: Ring + Held {}
impl RingData for Z64 {}
impl RingData for Z128 {}
impl RingData for Z256 {}

/// Operation counter value reserved for the seed agreement at session start.
const SETUP_OP: u64 = u64::MAX;

/// Where a server's seeds come from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum SeedSource {
    /// The operating system's generator.
    Os,
    /// A fixed master seed: deterministic, for tests and reproducible benchmarks only.
    Fixed(u64),
}

struct Link {
    transport: Box<dyn Transport>,
    stats: CommStats,
    transcript: Option<Vec<u8>>,
}

/// One server's side of a four-party session over ring `R`.
pub(crate) struct Party<R: RingData> {
    role: Role,
    cfg: Config,
    link: RefCell<Link>,
    prg: [Option<PairPrg>; 4],
    /// AES-CTR label generators shared with each peer (garbled-circuit input labels).
    labels: [Option<LabelPrg>; 4],
    /// Shared by `Sa`, `S1` and `S2` (not `Sb`): the free-XOR offsets.
    delta_prg: Option<LabelPrg>,
    hash: FixedKeyAes,
    /// Comparisons garbled ahead of their inputs.
    pools: RefCell<Vec<compare::Pool>>,
    /// Four-party comparison material dealt ahead (`S1`, `S2`).
    pools4: RefCell<Vec<compare4::Pool4<R>>>,
    /// Every server's record of the four-party pools: kind, size, used.
    pool4_counts: RefCell<Vec<(CmpKind, usize, usize)>>,
    op: Cell<u64>,
    _ring: PhantomData<R>,
}

fn lost(e: TransportError) -> Error {
    Error::PeerLost {
        peer: e.peer(),
        reason: e.to_string(),
    }
}

impl<R: RingData> Party<R> {
    /// Connects a server: agrees on a seed with each other server (the lower role
    /// draws it and sends it over their authenticated, encrypted link), then zeroes
    /// the statistics so that they count the program only.
    pub(crate) fn setup(
        role: Role,
        cfg: Config,
        transport: Box<dyn Transport>,
        seeds: SeedSource,
        record_transcript: bool,
    ) -> Result<Self> {
        let mut party = Party {
            role,
            cfg,
            link: RefCell::new(Link {
                transport,
                stats: CommStats::default(),
                transcript: None,
            }),
            prg: [None, None, None, None],
            labels: [None, None, None, None],
            delta_prg: None,
            hash: FixedKeyAes::new(),
            pools: RefCell::new(Vec::new()),
            pools4: RefCell::new(Vec::new()),
            pool4_counts: RefCell::new(Vec::new()),
            op: Cell::new(SETUP_OP),
            _ring: PhantomData,
        };
        for peer in Role::ALL {
            if peer == role {
                continue;
            }
            let seed = if role < peer {
                let seed = fresh_seed(seeds, role, peer)?;
                party.send_bytes(peer, seed.to_vec())?;
                seed
            } else {
                let bytes = party.recv_bytes(peer, 32)?;
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&bytes);
                seed
            };
            let prg = PairPrg::new(seed);
            party.labels[peer.index()] = Some(LabelPrg::new(prg.derive_key(1)));
            party.prg[peer.index()] = Some(prg);
        }
        // A key that Sa, S1 and S2 share and Sb does not: Sa draws it and sends it
        // to S1 and S2.
        let key = match role {
            Sa => {
                let seed = fresh_seed(seeds, Sa, Sa)?;
                party.send_bytes(S1, seed.to_vec())?;
                party.send_bytes(S2, seed.to_vec())?;
                Some(seed)
            }
            S1 | S2 => {
                let mut seed = [0u8; 32];
                seed.copy_from_slice(&party.recv_bytes(Sa, 32)?);
                Some(seed)
            }
            Sb => None,
        };
        party.delta_prg = key.map(|k| LabelPrg::new(PairPrg::new(k).derive_key(2)));
        let link = party.link.get_mut();
        link.stats = CommStats::default();
        if record_transcript {
            link.transcript = Some(Vec::new());
        }
        party.op.set(0);
        Ok(party)
    }

    fn next_op(&self) -> u64 {
        let op = self.op.get();
        self.op.set(op + 1);
        op
    }

    fn prg(&self, peer: Role) -> &PairPrg {
        match &self.prg[peer.index()] {
            Some(p) => p,
            None => unreachable!("seeds are agreed with every peer at setup"),
        }
    }

    fn send_bytes(&self, to: Role, payload: Vec<u8>) -> Result<()> {
        let mut link = self.link.borrow_mut();
        let round = link.stats.rounds + 1;
        link.stats.bytes_sent[to.index()] += payload.len() as u64;
        link.stats.messages_sent[to.index()] += 1;
        let msg = Message {
            op: self.op.get().wrapping_sub(1),
            round,
            payload,
        };
        link.transport.send(to, msg).map_err(lost)
    }

    fn recv_bytes(&self, from: Role, expected_len: usize) -> Result<Vec<u8>> {
        let mut link = self.link.borrow_mut();
        let msg = link.transport.recv(from).map_err(lost)?;
        let op = self.op.get().wrapping_sub(1);
        if msg.op != op {
            return Err(Error::Protocol {
                peer: from,
                reason: format!(
                    "message for operation {} arrived during operation {op}: the servers are not running the same program",
                    msg.op
                ),
            });
        }
        if msg.payload.len() != expected_len {
            return Err(Error::Protocol {
                peer: from,
                reason: format!(
                    "expected {expected_len} payload bytes, got {}",
                    msg.payload.len()
                ),
            });
        }
        link.stats.rounds = link.stats.rounds.max(msg.round);
        link.stats.bytes_received[from.index()] += msg.payload.len() as u64;
        if let Some(t) = link.transcript.as_mut() {
            t.extend_from_slice(&msg.payload);
        }
        Ok(msg.payload)
    }

    fn send(&self, to: Role, a: &ArrayD<R>) -> Result<()> {
        let mut bytes = crate::pool::take(a.len() * R::BYTES);
        match a.as_slice() {
            Some(xs) => R::write_slice(xs, &mut bytes),
            None => R::write_le(a.iter().copied(), &mut bytes),
        }
        self.send_bytes(to, bytes)
    }

    fn recv(&self, from: Role, shape: &[usize]) -> Result<ArrayD<R>> {
        let n: usize = shape.iter().product();
        let bytes = self.recv_bytes(from, n * R::BYTES)?;
        let v = R::read_le(&bytes);
        crate::pool::give(bytes);
        Ok(from_vec(shape, v))
    }

    /// Receives an array of `z`'s shape and adds it into `z`.
    fn recv_add(&self, from: Role, z: &mut ArrayD<R>) -> Result<()> {
        let bytes = self.recv_bytes(from, z.len() * R::BYTES)?;
        R::add_le(contiguous(z), &bytes);
        crate::pool::give(bytes);
        Ok(())
    }

    fn draw(&self, peer: Role, op: u64, purpose: Purpose, shape: &[usize]) -> ArrayD<R> {
        let n = shape.iter().product();
        from_vec(shape, self.prg(peer).draw(op, purpose, n))
    }

    /// A copy of `x` with the stream `(peer, op, purpose)` applied by `f`, element by
    /// element, without a second full-length array.
    fn masked(
        &self,
        x: &ArrayD<R>,
        peer: Role,
        op: u64,
        purpose: Purpose,
        f: impl Fn(R, R) -> R + Sync,
    ) -> ArrayD<R> {
        let mut y = x.as_standard_layout().into_owned();
        self.prg(peer).apply(op, purpose, contiguous(&mut y), f);
        y
    }

    fn encode(&self, c: &ArrayViewD<'_, f64>) -> Result<ArrayD<R>> {
        self.cfg.encode_public::<R>(c).map_err(Error::PublicOperand)
    }

    /// Paper Protocol 1 (§4.2), for any bilinear local product `prod`
    /// (element-wise with broadcasting, or matrix product):
    ///
    /// 1. `S1`, `S2` re-randomize both operands with `rx`, `ry` from PRG(S1,S2):
    ///    `x1' = x1 - rx`, `x2' = x2 + rx` (same for `y`). Fresh shares, so no
    ///    assistant ever sees two shares of the same value.
    /// 2. `S1 → Sa: x1'`, `S1 → Sb: y1'`, `S2 → Sb: x2'`, `S2 → Sa: y2'`. Each
    ///    assistant receives one share of each operand: uniformly random to it.
    /// 3. `S1: z1 = prod(x1', y1')`, `S2: z2 = prod(x2', y2')`, `Sa: za = prod(x1', y2')`,
    ///    `Sb: zb = prod(x2', y1')`, each truncated by rounding to nearest
    ///    ([`crate::kernels::rounding`]): four errors in `[-1/2, 1/2]`, mean zero, so
    ///    the product is within 2 units of `x̃ỹ/2^f` and does not drift.
    /// 4. `Sa` sends `za - za1` to `S2` with `za1` from PRG(Sa,S1); `Sb` sends
    ///    `zb - zb2` to `S1` with `zb2` from PRG(Sb,S2). The receivers do not know the
    ///    masks, so these look uniform to them. `S1: z1 + za1 + (zb - zb2)`,
    ///    `S2: z2 + zb2 + (za - za1)`.
    ///
    /// Two rounds and `2|x| + 2|y| + 2|z|` ring elements (`6n` element-wise).
    fn protocol1(
        &self,
        a: &Data,
        b: &Data,
        out: &[usize],
        prod: impl Fn(&ArrayD<R>, &ArrayD<R>) -> ArrayD<R>,
    ) -> Result<Data> {
        let op = self.next_op();
        let (sx, sy) = (a.shape(), b.shape());
        // Every buffer below is written once: masks are applied in place, the
        // received re-share is added into the product as it is decoded.
        match self.role {
            S1 | S2 => {
                let (x, y) = (R::get(a), R::get(b));
                let peer = other_primary(self.role);
                // S1 subtracts the masks, sends x1' to Sa and y1' to Sb, shares its
                // re-share mask with Sa and receives Sb's; S2 mirrors it.
                let (sign, to_x, to_y): (fn(R, R) -> R, _, _) = if self.role == S1 {
                    (R::wsub, Sa, Sb)
                } else {
                    (R::wadd, Sb, Sa)
                };
                let xp = self.masked(x, peer, op, Purpose::MaskX, sign);
                let yp = self.masked(y, peer, op, Purpose::MaskY, sign);
                self.send(to_x, &xp)?;
                self.send(to_y, &yp)?;
                let mut z = prod(&xp, &yp);
                drop((xp, yp));
                self.prg(to_x)
                    .apply(op, Purpose::Reshare, contiguous(&mut z), R::wadd);
                self.recv_add(to_y, &mut z)?;
                Ok(R::wrap(z))
            }
            Sa | Sb => {
                // Sa: x1' from S1, y2' from S2; Sb: y1' from S1, x2' from S2.
                let (first, second) = if self.role == Sa {
                    (self.recv(S1, sx)?, self.recv(S2, sy)?)
                } else {
                    let y1p = self.recv(S1, sy)?;
                    (self.recv(S2, sx)?, y1p)
                };
                let mut z = prod(&first, &second);
                drop((first, second));
                let (to, masker) = if self.role == Sa { (S2, S1) } else { (S1, S2) };
                self.prg(masker)
                    .apply(op, Purpose::Reshare, contiguous(&mut z), |v, r| v.wsub(r));
                self.send(to, &z)?;
                Ok(Data::shape_only(out))
            }
        }
    }

    /// Protocol 1 for an element-wise product `scalar`. Operands of the output's
    /// shape take the fused path ([`Party::protocol1_fused`]); broadcasting ones the
    /// general [`Party::protocol1`]. Shapes are the same on all four servers, so
    /// they all take the same path.
    fn elementwise_product(
        &self,
        a: &Data,
        b: &Data,
        out: &[usize],
        scalar: impl Fn(R, R) -> R + Copy,
    ) -> Result<Data> {
        if a.shape() == out && b.shape() == out {
            self.protocol1_fused(a, b, out, scalar)
        } else {
            self.protocol1(a, b, out, |x, y| zip_map(x, y, out, scalar))
        }
    }

    /// [`Party::protocol1`] for same-shape operands, the same messages computed in
    /// one pass per server over chunks of [`crate::prg::CHUNK`] elements: a
    /// primary masks both operands straight into their message buffers and forms
    /// its product plus its re-share mask in the same pass; an assistant reads the
    /// two received buffers in place and writes its masked product straight into
    /// its message. Memory traffic is what the data needs, and the only
    /// full-length allocation is the result.
    fn protocol1_fused(
        &self,
        a: &Data,
        b: &Data,
        out: &[usize],
        scalar: impl Fn(R, R) -> R + Copy,
    ) -> Result<Data> {
        use crate::prg::CHUNK;
        let op = self.next_op();
        let n: usize = out.iter().product();
        let mut words = Vec::new();
        // On the heap: up to 64 KiB each for Z256, and no more than the data needs
        // (a product of a few elements zeroes a few words, not three chunks).
        let chunk = CHUNK.min(n.max(1));
        #[allow(clippy::useless_vec)]
        let (mut r1, mut r2, mut r3) = (
            vec![R::zero(); chunk],
            vec![R::zero(); chunk],
            vec![R::zero(); chunk],
        );
        match self.role {
            S1 | S2 => {
                let (x, y) = (
                    R::get(a).as_standard_layout(),
                    R::get(b).as_standard_layout(),
                );
                let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice()) else {
                    unreachable!("standard layout is contiguous")
                };
                let peer = other_primary(self.role);
                // S1 subtracts the masks, S2 adds them.
                let (assistant, subtract) = if self.role == S1 {
                    (Sa, true)
                } else {
                    (Sb, false)
                };
                let mut xb = crate::pool::take(n * R::BYTES);
                let mut yb = crate::pool::take(n * R::BYTES);
                let mut z: Vec<R> = Vec::with_capacity(n);
                for (c, (xc, yc)) in xs.chunks(CHUNK).zip(ys.chunks(CHUNK)).enumerate() {
                    let len = xc.len();
                    let (rx, ry, rz) = (&mut r1[..len], &mut r2[..len], &mut r3[..len]);
                    let first = c * CHUNK;
                    self.prg(peer)
                        .fill_at(op, Purpose::MaskX, first, &mut words, rx);
                    self.prg(peer)
                        .fill_at(op, Purpose::MaskY, first, &mut words, ry);
                    self.prg(assistant)
                        .fill_at(op, Purpose::Reshare, first, &mut words, rz);
                    if subtract {
                        for i in 0..len {
                            rx[i] = xc[i].wsub(rx[i]);
                            ry[i] = yc[i].wsub(ry[i]);
                        }
                    } else {
                        for i in 0..len {
                            rx[i] = xc[i].wadd(rx[i]);
                            ry[i] = yc[i].wadd(ry[i]);
                        }
                    }
                    R::write_slice(rx, &mut xb);
                    R::write_slice(ry, &mut yb);
                    z.extend((0..len).map(|i| scalar(rx[i], ry[i]).wadd(rz[i])));
                }
                drop((x, y));
                // S1: x1' to Sa, y1' to Sb; S2: x2' to Sb, y2' to Sa.
                let (to_x, to_y) = if self.role == S1 { (Sa, Sb) } else { (Sb, Sa) };
                self.send_bytes(to_x, xb)?;
                self.send_bytes(to_y, yb)?;
                let mut z = from_vec(out, z);
                let from = if self.role == S1 { Sb } else { Sa };
                self.recv_add(from, &mut z)?;
                Ok(R::wrap(z))
            }
            Sa | Sb => {
                // Sa: x1' from S1, y2' from S2; Sb: y1' from S1, x2' from S2.
                let bytes = n * R::BYTES;
                let (xb, yb) = if self.role == Sa {
                    (self.recv_bytes(S1, bytes)?, self.recv_bytes(S2, bytes)?)
                } else {
                    let y1 = self.recv_bytes(S1, bytes)?;
                    (self.recv_bytes(S2, bytes)?, y1)
                };
                let (xs, ys) = (view_le::<R>(&xb), view_le::<R>(&yb));
                let (to, masker) = if self.role == Sa { (S2, S1) } else { (S1, S2) };
                let mut zb = crate::pool::take(n * R::BYTES);
                for (c, (xc, yc)) in xs.chunks(CHUNK).zip(ys.chunks(CHUNK)).enumerate() {
                    let len = xc.len();
                    let rz = &mut r1[..len];
                    self.prg(masker)
                        .fill_at(op, Purpose::Reshare, c * CHUNK, &mut words, rz);
                    for i in 0..len {
                        rz[i] = scalar(xc[i], yc[i]).wsub(rz[i]);
                    }
                    R::write_slice(rz, &mut zb);
                }
                drop((xs, ys));
                crate::pool::give(xb);
                crate::pool::give(yb);
                self.send_bytes(to, zb)?;
                Ok(Data::shape_only(out))
            }
        }
    }

    /// Paper Protocol 3: `S1`, `S2` re-randomize with PRG(S1,S2), then each multiplies
    /// its share by the public operand locally and truncates. No communication.
    fn local_public_product(
        &self,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        out: &[usize],
        prod: impl Fn(&ArrayD<R>, &ArrayD<R>) -> ArrayD<R>,
    ) -> Result<Data> {
        let op = self.next_op();
        // Every server checks the public operand, so all of them fail together.
        let ct = self.encode(c)?;
        if !self.role.is_primary() {
            return Ok(Data::shape_only(out));
        }
        let (peer, x) = (other_primary(self.role), R::get(a));
        let xp = if self.role == S1 {
            self.masked(x, peer, op, Purpose::Rerandomize, |v, r| v.wsub(r))
        } else {
            self.masked(x, peer, op, Purpose::Rerandomize, |v, r| v.wadd(r))
        };
        Ok(R::wrap(prod(&xp, &ct)))
    }
}

/// An integer small enough that `c·x̃` stays as exact as `x̃` ([`Party::binary_public`]).
fn small_integer(v: f64) -> bool {
    v.fract() == 0.0 && v.abs() <= 2_147_483_648.0
}

impl<R: RingData> Party<R> {
    /// The right operand's half of Protocol 1, done once ([`crate::Prepared`]):
    /// `S1`, `S2` re-randomize `w` with `rw` from PRG(S1,S2), `w1' = w1 − rw`,
    /// `w2' = w2 + rw`, and send `w1'` to `Sb`, `w2'` to `Sa`, the assistants that
    /// Protocol 1 gives them. Every server keeps what it now holds: `S1` `w1'`, `S2`
    /// `w2'`, `Sa` `w2'`, `Sb` `w1'`. One round, `2|w|` ring elements.
    ///
    /// What each server sees: `Sa` one share `w2'` of `w`, uniformly random to it
    /// (it never sees `w1'`); `Sb` likewise `w1'`; `S1`, `S2` nothing new.
    fn prepare_right(&self, w: &Data) -> Result<PreparedData> {
        let op = self.next_op();
        let keep = |wp: ArrayD<R>| PreparedData {
            packed: kernels::pack_right(mat2(&wp)).map(std::sync::Arc::new),
            data: R::wrap(wp),
        };
        match self.role {
            S1 | S2 => {
                let peer = other_primary(self.role);
                let (sign, to): (fn(R, R) -> R, _) = if self.role == S1 {
                    (R::wsub, Sb)
                } else {
                    (R::wadd, Sa)
                };
                let wp = self.masked(R::get(w), peer, op, Purpose::MaskY, sign);
                self.send(to, &wp)?;
                Ok(keep(wp))
            }
            Sa => Ok(keep(self.recv(S2, w.shape())?)),
            Sb => Ok(keep(self.recv(S1, w.shape())?)),
        }
    }

    /// `x · w` for a `w` from [`Party::prepare_right`]: Protocol 1 with only the left
    /// operand's messages. `S1` sends `x1' = x1 − rx` to `Sa`, `S2` sends
    /// `x2' = x2 + rx` to `Sb` (`rx` fresh from PRG(S1,S2) for this product); then
    /// `S1: x1'·w1'`, `S2: x2'·w2'`, `Sa: x1'·w2'`, `Sb: x2'·w1'`, truncated by
    /// rounding as in [`Party::protocol1`], and the assistants re-share as there. Two
    /// rounds and `2|x| + 2|z|` ring elements: the weights do not travel again.
    ///
    /// Why reusing `w1'`, `w2'` is secure: each product's view is Protocol 1's view
    /// with the right operand's re-randomization done once instead of per product.
    /// `Sa` holds `w2'` and, per product, `x1'` masked by a fresh `rx` and nothing of
    /// `x2'` or `w1'`: a fixed uniform share and a fresh uniform share, independent of
    /// the secrets; `Sb` symmetrically. `S1` and `S2` receive the re-shares, masked by
    /// fresh PRG(Sa,S1) and PRG(Sb,S2) streams. No value an assistant sees twice is
    /// combined with anything from the other side.
    fn matmul_prepared(&self, a: &Data, w: &PreparedData) -> Result<Data> {
        let op = self.next_op();
        let f = self.cfg.frac_bits();
        let out = [a.shape()[0], w.data.shape()[1]];
        let ww = R::get(&w.data);
        let packed = w.packed.as_deref();
        match self.role {
            S1 | S2 => {
                let peer = other_primary(self.role);
                let (sign, to_x, to_y): (fn(R, R) -> R, _, _) = if self.role == S1 {
                    (R::wsub, Sa, Sb)
                } else {
                    (R::wadd, Sb, Sa)
                };
                let xp = self.masked(R::get(a), peer, op, Purpose::MaskX, sign);
                self.send(to_x, &xp)?;
                let mut z = matmul_trunc_packed(mat2(&xp), mat2(ww), packed, f).into_dyn();
                drop(xp);
                self.prg(to_x)
                    .apply(op, Purpose::Reshare, contiguous(&mut z), R::wadd);
                self.recv_add(to_y, &mut z)?;
                Ok(R::wrap(z))
            }
            Sa | Sb => {
                let (from, to, masker) = if self.role == Sa {
                    (S1, S2, S1)
                } else {
                    (S2, S1, S2)
                };
                let xp = self.recv(from, a.shape())?;
                let mut z = matmul_trunc_packed(mat2(&xp), mat2(ww), packed, f).into_dyn();
                drop(xp);
                self.prg(masker)
                    .apply(op, Purpose::Reshare, contiguous(&mut z), |v, r| v.wsub(r));
                self.send(to, &z)?;
                Ok(Data::shape_only(&out))
            }
        }
    }
}

impl<R: RingData> Party<R> {
    /// The protocol for a batch of `n` comparisons of `kind`: the configured one,
    /// or under [`Comparison::Auto`] the one whose preprocessed pool has the batch,
    /// else the faster one for `n` on the configured network. Pools are recorded
    /// alike on all four servers, so all of them choose the same.
    fn choose(&self, kind: CmpKind, n: usize) -> Comparison {
        if self.cfg.comparison() == Comparison::Auto {
            if self.pool4_has(kind, n) {
                return Comparison::FourParty;
            }
            if self.gc_pool_has(kind, n) {
                return Comparison::GarbledCircuit;
            }
        }
        self.cfg.comparison().resolve(n, self.cfg.network())
    }
}

fn other_primary(r: Role) -> Role {
    if r == S1 { S2 } else { S1 }
}

/// The elements in `b`, borrowed where [`Ring::view_le`] allows, decoded otherwise.
fn view_le<R: Ring>(b: &[u8]) -> std::borrow::Cow<'_, [R]> {
    match R::view_le(b) {
        Some(v) => std::borrow::Cow::Borrowed(v),
        None => std::borrow::Cow::Owned(R::read_le(b)),
    }
}

/// `a`'s elements as one slice in standard order (made contiguous first if needed).
fn contiguous<T: Clone>(a: &mut ArrayD<T>) -> &mut [T] {
    if !a.is_standard_layout() {
        *a = a.as_standard_layout().into_owned();
    }
    a.as_slice_mut()
        .unwrap_or_else(|| unreachable!("standard layout is contiguous"))
}

fn from_vec<T>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|_| unreachable!("length matches shape"))
}

fn fresh_seed(src: SeedSource, me: Role, peer: Role) -> Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    match src {
        SeedSource::Os => {
            getrandom::fill(&mut seed).map_err(|e| Error::Randomness(e.to_string()))?
        }
        SeedSource::Fixed(master) => {
            use rand_core::{Rng, SeedableRng};
            let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(master);
            rng.set_stream((me.index() * 4 + peer.index()) as u64 + 1);
            rng.fill_bytes(&mut seed);
        }
    }
    Ok(seed)
}

fn mat2<R: Clone>(a: &ArrayD<R>) -> ndarray::ArrayView2<'_, R> {
    a.view()
        .into_dimensionality::<Ix2>()
        .unwrap_or_else(|_| unreachable!("matmul operands are 2-D"))
}

impl<R: RingData> Engine for Party<R> {
    fn role(&self) -> Option<Role> {
        Some(self.role)
    }

    fn config(&self) -> Option<Config> {
        Some(self.cfg)
    }

    fn binary(&self, op: BinOp, a: &Data, b: &Data, out: &[usize]) -> Result<Data> {
        match op {
            BinOp::Mul => {
                let f = self.cfg.frac_bits();
                let half = rounding::<R>(f);
                self.elementwise_product(a, b, out, move |p, q| mul_round(p, q, f, half))
            }
            BinOp::MulInt => self.elementwise_product(a, b, out, R::wmul),
            BinOp::Add | BinOp::Sub if self.role.is_primary() => {
                let (x, y) = (R::get(a), R::get(b));
                Ok(R::wrap(if op == BinOp::Add {
                    zip_map(x, y, out, R::wadd)
                } else {
                    zip_map(x, y, out, R::wsub)
                }))
            }
            BinOp::Add | BinOp::Sub => Ok(Data::shape_only(out)),
        }
    }

    fn binary_public(
        &self,
        op: BinOp,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        public_left: bool,
        out: &[usize],
    ) -> Result<Data> {
        if op == BinOp::MulInt {
            return Err(Error::Internal("integer product with a public operand"));
        }
        if op == BinOp::Mul && !c.is_empty() && c.iter().all(|&v| small_integer(v)) {
            // An integer factor (|c| ≤ 2^31): `c·x̃` is exact and local, no truncation
            // and no re-randomization (Protocol 3's mask only serves the truncation).
            // Every server still checks the operand, so all of them fail together.
            self.encode(c)?;
            if !self.role.is_primary() {
                return Ok(Data::shape_only(out));
            }
            let k = c.mapv(|v| {
                let m = R::from_u64(v.abs() as u64);
                if v < 0.0 { m.wneg() } else { m }
            });
            return Ok(R::wrap(zip_map(R::get(a), &k, out, R::wmul)));
        }
        if op == BinOp::Mul {
            let f = self.cfg.frac_bits();
            let half = rounding::<R>(f);
            return self.local_public_product(a, c, out, |x, ct| {
                zip_map(x, ct, out, |p, q| mul_round(p, q, f, half))
            });
        }
        // Add / sub with a public value: S1 adds c̃, S2 only broadcasts its share.
        let ct = self.encode(c)?;
        Ok(match self.role {
            S1 => {
                let x = R::get(a);
                R::wrap(match (op, public_left) {
                    (BinOp::Add, _) => zip_map(x, &ct, out, R::wadd),
                    (_, false) => zip_map(x, &ct, out, R::wsub),
                    (_, true) => zip_map(x, &ct, out, |p, q| q.wsub(p)),
                })
            }
            S2 => {
                let x = broadcast_to(R::get(a), out);
                R::wrap(if op == BinOp::Sub && public_left {
                    x.mapv(R::wneg)
                } else {
                    x
                })
            }
            Sa | Sb => Data::shape_only(out),
        })
    }

    fn neg(&self, a: &Data) -> Data {
        match a {
            Data::Shape(_) => a.clone(),
            _ => R::wrap(R::get(a).mapv(R::wneg)),
        }
    }

    fn matmul(&self, a: &Data, b: &Data) -> Result<Data> {
        let f = self.cfg.frac_bits();
        let out = [a.shape()[0], b.shape()[1]];
        self.protocol1(a, b, &out, |x, y| {
            matmul_trunc(mat2(x), mat2(y), f).into_dyn()
        })
    }

    fn prepare(&self, w: &Data) -> Result<PreparedData> {
        self.prepare_right(w)
    }

    fn matmul_prepared(&self, a: &Data, w: &PreparedData) -> Result<Data> {
        Party::matmul_prepared(self, a, w)
    }

    fn matmul_public(
        &self,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        public_left: bool,
        truncate: bool,
    ) -> Result<Data> {
        let f = if truncate { self.cfg.frac_bits() } else { 0 };
        let out = if public_left {
            [c.shape()[0], a.shape()[1]]
        } else {
            [a.shape()[0], c.shape()[1]]
        };
        self.local_public_product(a, c, &out, |x, ct| {
            if public_left {
                matmul_trunc(mat2(ct), mat2(x), f).into_dyn()
            } else {
                matmul_trunc(mat2(x), mat2(ct), f).into_dyn()
            }
        })
    }

    fn compare(&self, z: &Data, kind: CmpKind, bit: bool) -> Result<Data> {
        self.compare_within(z, kind, bit, R::BITS)
    }

    fn compare_within(&self, z: &Data, kind: CmpKind, bit: bool, bits: u32) -> Result<Data> {
        let w = (bits.max(2) as usize).min(R::BITS as usize);
        let n = z.shape().iter().product();
        match self.choose(kind, n) {
            Comparison::GarbledCircuit => self.compare_zero(z, kind, bit, w),
            _ => self.compare4(z, kind, bit, w),
        }
    }

    fn bits_to_fixed(&self, b: &Data) -> Data {
        match b {
            Data::Shape(_) => b.clone(),
            _ => {
                let f = self.cfg.frac_bits();
                R::wrap(R::get(b).mapv(|v| v.shl(f)))
            }
        }
    }

    fn bit_not(&self, b: &Data) -> Data {
        match (b, self.role) {
            (Data::Shape(_), _) => b.clone(),
            (_, S1) => R::wrap(R::get(b).mapv(|v| R::from_u64(1).wsub(v))),
            _ => R::wrap(R::get(b).mapv(R::wneg)),
        }
    }

    fn preprocess(&self, kind: CmpKind, n: usize) -> Result<()> {
        match self.cfg.comparison().resolve(n, self.cfg.network()) {
            Comparison::GarbledCircuit => self.garble_pool(kind, n),
            _ => self.deal_pool4(kind, n),
        }
    }

    /// Opening to all servers: `S1` and `S2` each send their share to the three
    /// others (one round), and everyone adds them up.
    fn reveal(&self, a: &Data) -> Result<ArrayD<f64>> {
        self.next_op();
        let shape = a.shape();
        let sum = match self.role {
            S1 | S2 => {
                let mine = R::get(a);
                let other = other_primary(self.role);
                for to in [other, Sa, Sb] {
                    self.send(to, mine)?;
                }
                mine + &self.recv(other, shape)?
            }
            Sa | Sb => self.recv(S1, shape)? + self.recv(S2, shape)?,
        };
        Ok(sum.mapv(|t| self.cfg.decode_one(t)))
    }

    fn constant(&self, c: &ArrayViewD<'_, f64>) -> Result<Data> {
        let ct = self.encode(c)?;
        Ok(match self.role {
            S1 => R::wrap(ct),
            S2 => R::wrap(ArrayD::from_elem(c.raw_dim(), R::zero())),
            Sa | Sb => Data::shape_only(c.shape()),
        })
    }

    fn stats(&self) -> CommStats {
        self.link.borrow().stats.clone()
    }

    fn take_transcript(&self) -> Option<Vec<u8>> {
        self.link.borrow_mut().transcript.take()
    }
}
