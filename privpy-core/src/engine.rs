//! Engines execute the operations of a program on whatever a party holds.
//!
//! The same program runs on the [`Cleartext`] engine (plain `f64`, the test oracle)
//! and on the four-party engine ([`crate::protocol::Party`]), one instance per server.

use crate::broadcast::zip_map;
use crate::config::Config;
use crate::data::{Data, Held};
use crate::error::Result;
use crate::transport::{CommStats, Role};
use ndarray::{ArrayD, ArrayViewD, Ix2};

/// Element-wise binary operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    /// Fixed-point product (truncated).
    Mul,
    /// Product with an integer-encoded operand (a comparison bit): no truncation,
    /// so exact in the ring.
    MulInt,
}

impl BinOp {
    pub(crate) fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul | BinOp::MulInt => a * b,
        }
    }
}

/// Which predicate of `z` a comparison computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CmpKind {
    /// `z < 0`.
    Negative,
    /// `z == 0`.
    Zero,
}

/// The operations a program's values are built from. Shapes are checked by the
/// caller ([`crate::Priv`]); an engine sees only valid shapes and public values that
/// every party has in common.
pub(crate) trait Engine {
    /// The server this engine runs as; `None` for the cleartext engine.
    fn role(&self) -> Option<Role>;
    /// The number format; `None` for the cleartext engine.
    fn config(&self) -> Option<Config>;
    /// `a op b` for two secrets broadcast to `out`.
    fn binary(&self, op: BinOp, a: &Data, b: &Data, out: &[usize]) -> Result<Data>;
    /// `a op c` (or `c op a` when `public_left`) for a secret and a public array.
    fn binary_public(
        &self,
        op: BinOp,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        public_left: bool,
        out: &[usize],
    ) -> Result<Data>;
    /// `-a`.
    fn neg(&self, a: &Data) -> Data;
    /// Matrix product of two secret 2-D arrays with aligned inner dimensions.
    fn matmul(&self, a: &Data, b: &Data) -> Result<Data>;
    /// The right operand of matrix products, prepared once for reuse
    /// ([`crate::Prepared`]): what each server keeps of it.
    fn prepare(&self, w: &Data) -> Result<PreparedData>;
    /// `a · w` for a 2-D secret `a` and a `w` from [`Engine::prepare`].
    fn matmul_prepared(&self, a: &Data, w: &PreparedData) -> Result<Data>;
    /// Matrix product of a secret and a public 2-D array (`c · a` when `public_left`).
    /// With `truncate = false` the secret is integer-encoded (bits) and the product is
    /// exact: no truncation.
    fn matmul_public(
        &self,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        public_left: bool,
        truncate: bool,
    ) -> Result<Data>;
    /// Shares of `[z < 0]` or `[z == 0]` (paper Protocol 2): fixed-point 0/1, or the
    /// integer bit when `bit` (for exact selection with [`BinOp::MulInt`]).
    fn compare(&self, z: &Data, kind: CmpKind, bit: bool) -> Result<Data>;
    /// [`Engine::compare`] for values the caller knows to be small: `|z̃| < 2^(bits-1)`
    /// in ring units. Four-party engines then compare only the low `bits` bits
    /// (a narrower circuit); values outside that range give wrong results.
    fn compare_within(&self, z: &Data, kind: CmpKind, bit: bool, bits: u32) -> Result<Data> {
        let _ = bits;
        self.compare(z, kind, bit)
    }
    /// Integer-encoded bits (shares of 0/1) as fixed-point 0/1: a local, exact shift.
    fn bits_to_fixed(&self, b: &Data) -> Data;
    /// `1 − b` for integer-encoded bits (local, exact).
    fn bit_not(&self, b: &Data) -> Data;
    /// Garbles `n` comparisons of `kind` ahead of their inputs (offline phase).
    fn preprocess(&self, kind: CmpKind, n: usize) -> Result<()>;
    /// Opens `a` to all four servers.
    fn reveal(&self, a: &Data) -> Result<ArrayD<f64>>;
    /// A public array as a secret (no communication).
    fn constant(&self, c: &ArrayViewD<'_, f64>) -> Result<Data>;
    /// This server's communication so far.
    fn stats(&self) -> CommStats;
    /// Everything this server received, when recording was requested.
    fn take_transcript(&self) -> Option<Vec<u8>> {
        None
    }
}

/// What a server keeps of a prepared right operand ([`crate::Prepared`]): its share
/// in Protocol 1's roles, and that share packed for the matrix kernel where one runs.
#[derive(Clone)]
pub(crate) struct PreparedData {
    pub(crate) data: Data,
    pub(crate) packed: Option<std::sync::Arc<crate::kernels::PackedRight>>,
}

impl PreparedData {
    /// Without a packed form.
    pub(crate) fn plain(data: Data) -> Self {
        PreparedData { data, packed: None }
    }
}

/// The cleartext engine: every operation on plain `f64`, exactly as ndarray computes it.
#[derive(Debug, Default)]
pub(crate) struct Cleartext;

impl Engine for Cleartext {
    fn role(&self) -> Option<Role> {
        None
    }
    fn config(&self) -> Option<Config> {
        None
    }
    fn binary(&self, op: BinOp, a: &Data, b: &Data, out: &[usize]) -> Result<Data> {
        Ok(Data::Clear(zip_map(
            f64::get(a),
            f64::get(b),
            out,
            |x, y| op.apply(x, y),
        )))
    }
    fn binary_public(
        &self,
        op: BinOp,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        public_left: bool,
        out: &[usize],
    ) -> Result<Data> {
        let c = c.to_owned();
        let r = if public_left {
            zip_map(&c, f64::get(a), out, |x, y| op.apply(x, y))
        } else {
            zip_map(f64::get(a), &c, out, |x, y| op.apply(x, y))
        };
        Ok(Data::Clear(r))
    }
    fn neg(&self, a: &Data) -> Data {
        Data::Clear(f64::get(a).mapv(|x| -x))
    }
    fn matmul(&self, a: &Data, b: &Data) -> Result<Data> {
        Ok(Data::Clear(dot2(f64::get(a).view(), f64::get(b).view())))
    }
    fn prepare(&self, w: &Data) -> Result<PreparedData> {
        Ok(PreparedData::plain(w.clone()))
    }
    fn matmul_prepared(&self, a: &Data, w: &PreparedData) -> Result<Data> {
        self.matmul(a, &w.data)
    }
    fn matmul_public(
        &self,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        public_left: bool,
        _truncate: bool,
    ) -> Result<Data> {
        let a = f64::get(a).view();
        Ok(Data::Clear(if public_left {
            dot2(c.view(), a)
        } else {
            dot2(a, c.view())
        }))
    }
    fn compare(&self, z: &Data, kind: CmpKind, _bit: bool) -> Result<Data> {
        Ok(Data::Clear(f64::get(z).mapv(|v| match kind {
            CmpKind::Negative => f64::from(u8::from(v < 0.0)),
            CmpKind::Zero => f64::from(u8::from(v == 0.0)),
        })))
    }
    fn preprocess(&self, _kind: CmpKind, _n: usize) -> Result<()> {
        Ok(())
    }
    fn bits_to_fixed(&self, b: &Data) -> Data {
        b.clone()
    }
    fn bit_not(&self, b: &Data) -> Data {
        Data::Clear(f64::get(b).mapv(|v| 1.0 - v))
    }
    fn reveal(&self, a: &Data) -> Result<ArrayD<f64>> {
        Ok(f64::get(a).clone())
    }
    fn constant(&self, c: &ArrayViewD<'_, f64>) -> Result<Data> {
        Ok(Data::Clear(c.to_owned()))
    }
    fn stats(&self) -> CommStats {
        CommStats::default()
    }
}

fn dot2(a: ArrayViewD<'_, f64>, b: ArrayViewD<'_, f64>) -> ArrayD<f64> {
    match (
        a.into_dimensionality::<Ix2>(),
        b.into_dimensionality::<Ix2>(),
    ) {
        (Ok(a), Ok(b)) => a.dot(&b).into_dyn(),
        _ => unreachable!("matmul operands are 2-D"),
    }
}
