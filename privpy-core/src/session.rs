//! [`Session`]: what a program sees of the server it runs on.

use crate::data::Data;
use crate::engine::{BinOp, CmpKind, Engine};
use crate::error::{Error, Result};
use crate::large::{Input, LargeArray, LargeEnv, check_budget};
use crate::priv_array::Priv;
use crate::transport::{CommStats, Role};
use crate::types::{PrivType, Public, check_rank};
use ndarray::ArrayViewD;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// One server's handle on a running program: its inputs, where outputs go, and its
/// communication statistics. Every server runs the same program with its own
/// `Session`; the program must take the same public decisions on all of them.
pub struct Session {
    pub(crate) eng: Rc<dyn Engine>,
    pub(crate) inputs: BTreeMap<String, Input>,
    pub(crate) env: LargeEnv,
    pub(crate) clients: Vec<String>,
    pub(crate) outputs: RefCell<Vec<(String, String, Input)>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("role", &self.eng.role())
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The secret input uploaded under `name`, as a `Priv<A>` in memory.
    ///
    /// # Errors
    /// [`Error::UnknownInput`] when nobody uploaded it; a rank error when it does not
    /// have `A`'s number of dimensions; [`Error::OverBudget`] when its share is
    /// larger than the configuration's [`crate::Config::memory_budget`] (use
    /// [`Session::large_input`]); [`Error::Storage`] when a stored share cannot be
    /// read.
    #[track_caller]
    pub fn input<A: PrivType>(&self, name: &str) -> Result<Priv<A>> {
        self.input_inner(name)
    }

    /// A matrix prepared in an earlier session on this server
    /// ([`crate::Prepared::share`]), for products in this one: no communication now,
    /// and each product sends only its left operand's masked shares.
    ///
    /// **Why reusing it across sessions is secure.** Within a session, a prepared
    /// matrix serves many products, each with a fresh input-side mask (argued on
    /// `Party::matmul_prepared`). A later session is the same situation: the right
    /// operand's re-randomized shares stay fixed and uniform to each server that
    /// holds one, and every left operand is masked by the new session's
    /// pairwise generators, which are freshly seeded per session. So each
    /// assistant's view is still a fixed uniform share and fresh uniform shares,
    /// independent of the secrets. All four servers must attach (or prepare) in the
    /// same order, as for any operation.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the share belongs to another server role or
    /// number format than this session's.
    pub fn attach(&self, share: &crate::PreparedShare) -> Result<crate::Prepared> {
        crate::Prepared::attach(share, self.eng.clone())
    }

    #[track_caller]
    fn input_inner<A: PrivType>(&self, name: &str) -> Result<Priv<A>> {
        let input = self.inputs.get(name).ok_or_else(|| Error::UnknownInput {
            name: name.to_string(),
        })?;
        // The same decision on all four servers: it depends only on the shape.
        check_budget(
            &*self.eng,
            self.env.budget,
            || format!("input {name:?} of shape {:?}", input.shape()),
            input.shape(),
        )?;
        match input {
            Input::Held(data) => {
                check_rank::<A>(data)?;
                Ok(Priv::new(data.clone(), self.eng.clone()))
            }
            Input::Stored { shape, .. } => {
                let big =
                    LargeArray::new(*shape, input.clone(), self.env.clone(), self.eng.clone());
                big.load()?.into_dyn().into_type::<A>()
            }
        }
    }

    /// The secret matrix uploaded under `name` as a [`LargeArray`]: its share stays
    /// where it is stored (files in the server's data directory) and is read a chunk
    /// of rows at a time. Works for any 2-D input, large or not; an input held in
    /// memory is used in place.
    ///
    /// # Errors
    /// [`Error::UnknownInput`]; [`ShapeError::Rank`](crate::ShapeError::Rank) when
    /// the input is not 2-D.
    #[track_caller]
    pub fn large_input(&self, name: &str) -> Result<LargeArray> {
        let input = self.inputs.get(name).ok_or_else(|| Error::UnknownInput {
            name: name.to_string(),
        })?;
        let shape = match input.shape() {
            &[r, c] => [r, c],
            s => {
                return Err(crate::ShapeError::Rank {
                    expected: 2,
                    actual: s.to_vec(),
                }
                .into());
            }
        };
        Ok(LargeArray::new(
            shape,
            input.clone(),
            self.env.clone(),
            self.eng.clone(),
        ))
    }

    /// The memory budget per server for one array, in bytes
    /// ([`crate::Config::memory_budget`]).
    pub fn memory_budget(&self) -> u64 {
        self.env.budget
    }

    /// Marks `value` as output `name` for `client`; only that client can open it.
    /// The servers keep their shares; nothing is revealed to any server.
    ///
    /// # Errors
    /// [`Error::UnknownClient`] for a client that is not registered;
    /// [`Error::DuplicateOutput`] when the name was already used for that client.
    #[track_caller]
    pub fn output<A: PrivType>(&self, client: &str, name: &str, value: &Priv<A>) -> Result<()> {
        self.push_output(client, name, Input::Held(value.data.clone()))
    }

    /// Marks the [`LargeArray`] `value` as output `name` for `client`, as
    /// [`Session::output`], without loading it: a networked server stores it from
    /// its files piece by piece, and the client fetches it in parts
    /// (`Client::fetch_rows` streams it a block of rows at a time). A
    /// [`crate::LocalCluster`] reads it into its [`crate::RunOutput`].
    ///
    /// # Errors
    /// As [`Session::output`].
    #[track_caller]
    pub fn output_large(&self, client: &str, name: &str, value: &LargeArray) -> Result<()> {
        self.push_output(client, name, value.as_input())
    }

    #[track_caller]
    fn push_output(&self, client: &str, name: &str, value: Input) -> Result<()> {
        if !self.clients.iter().any(|c| c == client) {
            return Err(Error::UnknownClient {
                name: client.to_string(),
            });
        }
        let mut outs = self.outputs.borrow_mut();
        if outs.iter().any(|(c, n, _)| c == client && n == name) {
            return Err(Error::DuplicateOutput {
                client: client.to_string(),
                name: name.to_string(),
            });
        }
        outs.push((client.to_string(), name.to_string(), value));
        Ok(())
    }

    /// A public value as a secret, shared trivially (no communication). Useful to
    /// start an accumulator; mixing public values directly into expressions is cheaper.
    ///
    /// # Errors
    /// NaN, ±inf or values outside the configured range.
    #[track_caller]
    pub fn constant<P: Public>(&self, value: P) -> Result<Priv<P::Kind>> {
        let d = self.eng.constant(&value.view_dyn())?;
        Ok(Priv::new(d, self.eng.clone()))
    }

    /// A secret array of zeros (NumPy's `zeros`), shared trivially.
    #[track_caller]
    pub fn zeros<S: crate::types::ShapeArg>(&self, shape: S) -> Priv<S::Output> {
        self.filled(shape, 0.0)
    }

    /// A secret array of ones (NumPy's `ones`), shared trivially.
    #[track_caller]
    pub fn ones<S: crate::types::ShapeArg>(&self, shape: S) -> Priv<S::Output> {
        self.filled(shape, 1.0)
    }

    #[track_caller]
    fn filled<S: crate::types::ShapeArg>(&self, shape: S, v: f64) -> Priv<S::Output> {
        let a = ndarray::ArrayD::from_elem(ndarray::IxDyn(&shape.dims()), v);
        Priv::from_result(self.eng.constant(&a.view()), self.eng.clone())
    }

    /// Offline phase: garbles `n` less-than comparisons before their inputs exist.
    /// Later comparisons (`lt`, `gt`, `le`, `ge`, and everything built on them: relu,
    /// max, sort, …) whose whole batch fits in what is left take their circuits from
    /// this pool: then `Sa` is idle online, and only the input labels and the masked
    /// result travel. A batch larger than what is left is garbled online.
    ///
    /// # Errors
    /// A lost peer.
    #[track_caller]
    pub fn preprocess_comparisons(&self, n: usize) -> Result<()> {
        self.eng.preprocess(crate::engine::CmpKind::Negative, n)
    }

    /// Offline phase for equality tests (`eq`, `ne`), as
    /// [`Session::preprocess_comparisons`].
    ///
    /// # Errors
    /// A lost peer.
    #[track_caller]
    pub fn preprocess_equalities(&self, n: usize) -> Result<()> {
        self.eng.preprocess(crate::engine::CmpKind::Zero, n)
    }

    /// The server this program runs on (`None` on the cleartext engine).
    #[track_caller]
    pub fn role(&self) -> Option<Role> {
        self.eng.role()
    }

    /// This server's communication since the program started.
    #[track_caller]
    pub fn stats(&self) -> CommStats {
        self.eng.stats()
    }

    /// The number format (`None` on the cleartext engine).
    pub fn config(&self) -> Option<crate::Config> {
        self.eng.config()
    }
}

/// The engine a program runs on: the party's engine until an operation fails, then
/// placeholders (zeros of the right shape and kind) without any communication, so
/// the program runs to its end quickly and the runner returns the first error.
pub(crate) struct Guarded {
    pub(crate) inner: Rc<dyn Engine>,
}

impl Guarded {
    fn skip(&self) -> bool {
        crate::priv_array::failed()
    }
    fn zeros(&self, shape: &[usize]) -> Data {
        crate::priv_array::placeholder(&*self.inner, shape)
    }
}

impl Engine for Guarded {
    fn role(&self) -> Option<Role> {
        self.inner.role()
    }
    fn config(&self) -> Option<crate::Config> {
        self.inner.config()
    }
    fn binary(&self, op: BinOp, a: &Data, b: &Data, out: &[usize]) -> Result<Data> {
        if self.skip() {
            return Ok(self.zeros(out));
        }
        self.inner.binary(op, a, b, out)
    }
    fn binary_public(
        &self,
        op: BinOp,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        public_left: bool,
        out: &[usize],
    ) -> Result<Data> {
        if self.skip() {
            return Ok(self.zeros(out));
        }
        self.inner.binary_public(op, a, c, public_left, out)
    }
    fn neg(&self, a: &Data) -> Data {
        if self.skip() {
            return a.clone();
        }
        self.inner.neg(a)
    }
    fn matmul(&self, a: &Data, b: &Data) -> Result<Data> {
        if self.skip() {
            return Ok(self.zeros(&matmul_shape(a.shape(), b.shape())));
        }
        self.inner.matmul(a, b)
    }
    fn prepare(&self, w: &Data) -> Result<crate::engine::PreparedData> {
        if self.skip() {
            return Ok(crate::engine::PreparedData::plain(w.clone()));
        }
        self.inner.prepare(w)
    }
    fn matmul_prepared(&self, a: &Data, w: &crate::engine::PreparedData) -> Result<Data> {
        if self.skip() {
            return Ok(self.zeros(&matmul_shape(a.shape(), w.data.shape())));
        }
        self.inner.matmul_prepared(a, w)
    }
    fn matmul_public(
        &self,
        a: &Data,
        c: &ArrayViewD<'_, f64>,
        public_left: bool,
        truncate: bool,
    ) -> Result<Data> {
        if self.skip() {
            let shape = if public_left {
                matmul_shape(c.shape(), a.shape())
            } else {
                matmul_shape(a.shape(), c.shape())
            };
            return Ok(self.zeros(&shape));
        }
        self.inner.matmul_public(a, c, public_left, truncate)
    }
    fn compare(&self, z: &Data, kind: CmpKind, bit: bool) -> Result<Data> {
        if self.skip() {
            return Ok(self.zeros(z.shape()));
        }
        self.inner.compare(z, kind, bit)
    }
    fn compare_within(&self, z: &Data, kind: CmpKind, bit: bool, bits: u32) -> Result<Data> {
        if self.skip() {
            return Ok(self.zeros(z.shape()));
        }
        self.inner.compare_within(z, kind, bit, bits)
    }
    fn bits_to_fixed(&self, b: &Data) -> Data {
        if self.skip() {
            return self.zeros(b.shape());
        }
        self.inner.bits_to_fixed(b)
    }
    fn bit_not(&self, b: &Data) -> Data {
        if self.skip() {
            return b.clone();
        }
        self.inner.bit_not(b)
    }
    fn preprocess(&self, kind: CmpKind, n: usize) -> Result<()> {
        if self.skip() {
            return Ok(());
        }
        self.inner.preprocess(kind, n)
    }
    fn reveal(&self, a: &Data) -> Result<ndarray::ArrayD<f64>> {
        if self.skip() {
            return Ok(ndarray::ArrayD::zeros(a.shape()));
        }
        self.inner.reveal(a)
    }
    fn constant(&self, c: &ArrayViewD<'_, f64>) -> Result<Data> {
        if self.skip() {
            return Ok(self.zeros(c.shape()));
        }
        self.inner.constant(c)
    }
    fn stats(&self) -> CommStats {
        self.inner.stats()
    }
    fn take_transcript(&self) -> Option<Vec<u8>> {
        self.inner.take_transcript()
    }
}

/// The shape of a 2-D product `(n, k) · (k, m)`.
fn matmul_shape(a: &[usize], b: &[usize]) -> Vec<usize> {
    vec![
        a.first().copied().unwrap_or(1),
        b.get(1).copied().unwrap_or(1),
    ]
}
