//! [`Priv<A>`]: a secret value of cleartext type `A`.

use crate::broadcast::broadcast_shape;
use crate::data::Data;
use crate::engine::{BinOp, Engine};
use crate::error::{Error, Result, ShapeError};
use crate::types::{Broadcast, DotWith, PrivType, Public, ShapeArg, check_rank};
use ndarray::ArrayViewD;
use std::fmt;
use std::marker::PhantomData;
use std::rc::Rc;

/// A secret value that stands for a cleartext `A` (`f64`, `Array1<f64>`,
/// `Array2<f64>` or `ArrayD<f64>`).
///
/// On `S1` and `S2` it holds that server's share, on `Sa` and `Sb` only the shape,
/// on the cleartext engine the value itself. Shapes are public. Operators work as in
/// ndarray, with NumPy broadcasting, between secrets and public values in any mix
/// (`f64`, ndarray arrays, and references to either): `+ - *`, unary `-`, and `/` by
/// a public value. Operands are taken by value or by reference; `&x * &y` leaves
/// both usable.
///
/// # Panics
/// Operators cannot return a `Result`, and they do not panic either. When one fails
/// (incompatible shapes, a public operand out of range, a lost peer) it records the
/// error, the program stops (at once by unwinding where panics unwind, otherwise it
/// runs to its end on placeholder values without communicating; see
/// [`crate::LocalCluster::with_unwinding`]) and the run returns the error, as an
/// ordinary `Err`, with no panic message. Errors about the program come as
/// [`Error::Operator`] with the file, line and column of the failing expression
/// (inside `#[private]` functions too). Use the `try_*` methods to handle such errors
/// inside the program.
pub struct Priv<A: PrivType> {
    pub(crate) data: Data,
    /// For comparison results: the same 0/1 values integer-encoded (`data` is this
    /// shifted by `f` bits, locally), so that [`crate::select`] and products with
    /// it are exact.
    pub(crate) bits: Option<Data>,
    pub(crate) eng: Rc<dyn Engine>,
    _t: PhantomData<fn() -> A>,
}

thread_local! {
    /// The first error of the program running on this thread (one party per thread).
    static FAILURE: std::cell::RefCell<Option<Error>> = const { std::cell::RefCell::new(None) };
    /// Whether a failure stops the program at once by unwinding (see [`fail`]).
    static UNWIND: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// The payload of the early stop: the error itself is in `FAILURE`.
pub(crate) struct Stopped;

/// Records `e`, located at the operator's caller, as the program's error (the first
/// one wins); see [`Priv`]'s `# Panics`. Where panics unwind (and the cluster does not
/// ask otherwise) the program then stops at once; otherwise the operator returns a
/// placeholder (zeros), every later operation is skipped without communication
/// ([`crate::session::Guarded`]) and the program runs to its end. Either way the run
/// returns this error: correctness does not depend on `panic = "unwind"`.
#[track_caller]
pub(crate) fn fail(e: Error) {
    let e = e.located();
    FAILURE.with(|f| {
        let mut f = f.borrow_mut();
        if f.is_none() {
            *f = Some(e);
        }
    });
    if cfg!(panic = "unwind") && UNWIND.with(|u| u.get()) {
        std::panic::resume_unwind(Box::new(Stopped));
    }
}

/// Sets whether failures stop the program by unwinding on this thread; returns the
/// previous setting.
pub(crate) fn set_unwind(on: bool) -> bool {
    UNWIND.with(|u| u.replace(on))
}

/// Whether an operation of the program on this thread has failed.
pub(crate) fn failed() -> bool {
    FAILURE.with(|f| f.borrow().is_some())
}

/// Takes the recorded error (and clears it), for the runner.
pub(crate) fn take_failure() -> Option<Error> {
    FAILURE.with(|f| f.borrow_mut().take())
}

/// Restores a recorded error (a runner nested in another thread's program).
pub(crate) fn set_failure(e: Option<Error>) {
    FAILURE.with(|f| *f.borrow_mut() = e);
}

/// What a party holds in place of a result after a failure: zeros of the kind its
/// engine holds (cleartext, a share of its ring, or a shape), of `shape`.
pub(crate) fn placeholder(eng: &dyn Engine, shape: &[usize]) -> Data {
    use crate::ring::{RingKind, Z64, Z128, Z256};
    let dim = ndarray::IxDyn(shape);
    match (eng.role(), eng.config()) {
        (None, _) | (_, None) => Data::Clear(ndarray::ArrayD::zeros(dim)),
        (Some(r), Some(_)) if !r.is_primary() => Data::shape_only(shape),
        (Some(_), Some(cfg)) => match cfg.ring() {
            RingKind::Z64 => Data::Z64(ndarray::ArrayD::from_elem(dim, Z64::default())),
            RingKind::Z128 => Data::Z128(ndarray::ArrayD::from_elem(dim, Z128::default())),
            RingKind::Z256 => Data::Z256(ndarray::ArrayD::from_elem(dim, Z256::default())),
        },
    }
}

/// A placeholder shape of `A`'s rank (`like` for a dynamic-dimensional `A`).
pub(crate) fn placeholder_shape<A: PrivType>(like: &[usize]) -> Vec<usize> {
    match A::NDIM {
        Some(n) => vec![1; n],
        None => like.to_vec(),
    }
}

/// The value, or `fallback()` after recording the error with [`fail`].
#[track_caller]
pub(crate) fn or_fail<T>(r: Result<T>, fallback: impl FnOnce() -> T) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            fail(e);
            fallback()
        }
    }
}

impl<A: PrivType> Clone for Priv<A> {
    /// Copies this server's share; no communication.
    fn clone(&self) -> Self {
        Priv {
            data: self.data.clone(),
            bits: self.bits.clone(),
            eng: self.eng.clone(),
            _t: PhantomData,
        }
    }
}

impl<A: PrivType> fmt::Debug for Priv<A> {
    /// Shape and server only: never a share.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server = match self.eng.role() {
            Some(r) => r.to_string(),
            None => "cleartext".into(),
        };
        f.debug_struct("Priv")
            .field("shape", &self.data.shape())
            .field("server", &server)
            .finish_non_exhaustive()
    }
}

/// An operand that is either a secret or a public array.
pub(crate) enum Operand<'a> {
    Secret(&'a Data, &'a Rc<dyn Engine>),
    Public(ArrayViewD<'a, f64>),
    /// A matrix prepared as the right operand of products ([`Prepared`]).
    Prepared(&'a crate::engine::PreparedData, &'a Rc<dyn Engine>),
}

impl<A: PrivType> Priv<A> {
    pub(crate) fn new(data: Data, eng: Rc<dyn Engine>) -> Self {
        Priv {
            data,
            bits: None,
            eng,
            _t: PhantomData,
        }
    }

    /// A 0/1 result from its integer-encoded bits (see [`Priv::bits`]).
    pub(crate) fn from_bits(bits: Data, eng: Rc<dyn Engine>) -> Self {
        let data = eng.bits_to_fixed(&bits);
        Priv {
            data,
            bits: Some(bits),
            eng,
            _t: PhantomData,
        }
    }

    /// The result of an operation, or after recording its error ([`fail`]) a
    /// placeholder of `A`'s rank.
    #[track_caller]
    pub(crate) fn from_result(r: Result<Data>, eng: Rc<dyn Engine>) -> Self {
        match r {
            Ok(d) => Priv::new(d, eng),
            Err(e) => {
                fail(e);
                Priv::placeholder(eng, &[1])
            }
        }
    }

    /// A placeholder of `A`'s rank (dynamic-dimensional: `like`).
    pub(crate) fn placeholder(eng: Rc<dyn Engine>, like: &[usize]) -> Self {
        let d = placeholder(&*eng, &placeholder_shape::<A>(like));
        Priv::new(d, eng)
    }

    /// A placeholder of another type on this secret's engine.
    pub(crate) fn poisoned<B: PrivType>(&self) -> Priv<B> {
        Priv::placeholder(self.eng.clone(), self.shape())
    }

    /// [`Priv::from_result`] on this secret's engine.
    #[track_caller]
    pub(crate) fn wrap_result<B: PrivType>(&self, r: Result<Data>) -> Priv<B> {
        Priv::from_result(r, self.eng.clone())
    }

    fn wrap<B: PrivType>(&self, data: Data) -> Priv<B> {
        Priv::new(data, self.eng.clone())
    }

    /// The number format of the engine this secret lives on (`None` on the cleartext
    /// engine): lets a function pick methods by the preset's precision.
    pub fn config(&self) -> Option<crate::Config> {
        self.eng.config()
    }

    /// The shape (public).
    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    /// The number of dimensions (public).
    pub fn ndim(&self) -> usize {
        self.data.shape().len()
    }

    /// The number of elements (public).
    pub fn len(&self) -> usize {
        self.data.shape().iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[track_caller]
    fn check_engine(&self, other: &Rc<dyn Engine>) -> Result<()> {
        if Rc::ptr_eq(&self.eng, other) {
            Ok(())
        } else {
            Err(Error::MixedSessions)
        }
    }

    #[track_caller]
    pub(crate) fn binop(&self, op: BinOp, rhs: Operand<'_>, public_left: bool) -> Result<Data> {
        match rhs {
            Operand::Secret(b, eng) => {
                self.check_engine(eng)?;
                let (l, r) = if public_left {
                    (b, &self.data)
                } else {
                    (&self.data, b)
                };
                let out = broadcast_shape(l.shape(), r.shape())?;
                self.eng.binary(op, l, r, &out)
            }
            Operand::Public(c) => {
                let out = if public_left {
                    broadcast_shape(c.shape(), self.shape())?
                } else {
                    broadcast_shape(self.shape(), c.shape())?
                };
                self.eng
                    .binary_public(op, &self.data, &c, public_left, &out)
            }
            Operand::Prepared(..) => Err(prepared_misuse()),
        }
    }

    /// `self + rhs` with broadcasting.
    ///
    /// # Errors
    /// [`ShapeError::Broadcast`] for incompatible shapes; a lost peer.
    #[track_caller]
    pub fn try_add<B: PrivType>(&self, rhs: &Priv<B>) -> Result<Priv<A::Output>>
    where
        A: Broadcast<B>,
    {
        Ok(self.wrap(self.binop(BinOp::Add, rhs.operand(), false)?))
    }

    /// `self - rhs` with broadcasting.
    ///
    /// # Errors
    /// As [`Priv::try_add`].
    #[track_caller]
    pub fn try_sub<B: PrivType>(&self, rhs: &Priv<B>) -> Result<Priv<A::Output>>
    where
        A: Broadcast<B>,
    {
        Ok(self.wrap(self.binop(BinOp::Sub, rhs.operand(), false)?))
    }

    /// `self * rhs` element-wise with broadcasting (paper Protocol 1).
    ///
    /// # Errors
    /// As [`Priv::try_add`].
    #[track_caller]
    pub fn try_mul<B: PrivType>(&self, rhs: &Priv<B>) -> Result<Priv<A::Output>>
    where
        A: Broadcast<B>,
    {
        Ok(self.wrap(self.binop(BinOp::Mul, rhs.operand(), false)?))
    }

    /// `self * c` for a public `c` (paper Protocol 3: no communication). A `c` whose
    /// elements are all integers up to `2^31` in magnitude is exact (`c·x̃` in the
    /// ring, no truncation); any other is within one unit in the last place.
    ///
    /// # Errors
    /// Incompatible shapes, or `c` outside the configured range.
    #[track_caller]
    pub fn try_mul_public<P: Public>(&self, c: P) -> Result<Priv<A::Output>>
    where
        A: Broadcast<P::Kind>,
    {
        Ok(self.wrap(self.binop(BinOp::Mul, Operand::Public(c.view_dyn()), false)?))
    }

    pub(crate) fn operand(&self) -> Operand<'_> {
        Operand::Secret(&self.data, &self.eng)
    }

    /// Matrix or vector product, as ndarray's `dot`: `rhs` is a secret (`&Priv<_>`)
    /// or a public array (`&Array1<f64>`, `&Array2<f64>`). Secret · secret is one
    /// Protocol 1 instance for the whole product (two rounds); secret · public is local.
    ///
    /// # Panics
    /// Stops the program when the inner dimensions differ; see [`Priv::try_dot`].
    #[track_caller]
    pub fn dot<R: DotOperand>(&self, rhs: R) -> Priv<A::Output>
    where
        A: DotWith<R::Kind>,
    {
        or_fail(self.try_dot(rhs), || self.poisoned())
    }

    /// Fallible [`Priv::dot`].
    ///
    /// # Errors
    /// [`ShapeError::Dot`] when the inner dimensions differ.
    #[track_caller]
    pub fn try_dot<R: DotOperand>(&self, rhs: R) -> Result<Priv<A::Output>>
    where
        A: DotWith<R::Kind>,
    {
        Ok(self.wrap(dot_data(
            Operand::Secret(&self.data, &self.eng),
            rhs.operand(),
        )?))
    }

    /// Sum of all elements.
    #[track_caller]
    pub fn sum(&self) -> Priv<f64> {
        self.wrap(self.data.sum_all())
    }

    /// Sum along `axis` (local).
    ///
    /// # Panics
    /// Stops the program when `axis >= ndim`; see [`Priv::try_sum_axis`].
    #[track_caller]
    pub fn sum_axis(&self, axis: ndarray::Axis) -> Priv<A::Smaller> {
        or_fail(self.try_sum_axis(axis), || self.poisoned())
    }

    /// Fallible [`Priv::sum_axis`].
    ///
    /// # Errors
    /// [`ShapeError::Axis`] when `axis >= ndim`.
    #[track_caller]
    pub fn try_sum_axis(&self, axis: ndarray::Axis) -> Result<Priv<A::Smaller>> {
        Ok(self.wrap(self.data.sum_axis(axis.index())?))
    }

    /// Mean of all elements (a sum, then a local multiplication by `1/n`).
    ///
    /// # Panics
    /// Stops the program on an empty array.
    #[track_caller]
    pub fn mean(&self) -> Priv<f64> {
        let n = self.len();
        if n == 0 {
            fail(Error::EmptyInput { operation: "mean" });
            return self.poisoned();
        }
        self.sum() * (1.0 / n as f64)
    }

    /// Mean along `axis`.
    ///
    /// # Panics
    /// Stops the program when `axis >= ndim` or the axis is empty.
    #[track_caller]
    pub fn mean_axis(&self, axis: ndarray::Axis) -> Priv<A::Smaller> {
        let s = self.sum_axis(axis);
        let n = self.shape()[axis.index()];
        if n == 0 {
            fail(Error::EmptyInput {
                operation: "mean_axis",
            });
            return self.poisoned();
        }
        let scale = 1.0 / n as f64;
        self.wrap_result(s.binop(BinOp::Mul, Operand::Public(scale.view_dyn()), false))
    }

    /// The same elements in a new shape (row-major order, as NumPy's default).
    ///
    /// # Panics
    /// Stops the program when the number of elements differs; see [`Priv::try_reshape`].
    #[track_caller]
    pub fn reshape<S: ShapeArg>(&self, shape: S) -> Priv<S::Output> {
        or_fail(self.try_reshape(shape), || self.poisoned())
    }

    /// Fallible [`Priv::reshape`].
    ///
    /// # Errors
    /// [`ShapeError::Reshape`] when the number of elements differs.
    #[track_caller]
    pub fn try_reshape<S: ShapeArg>(&self, shape: S) -> Result<Priv<S::Output>> {
        Ok(self.wrap(self.data.reshape(&shape.dims())?))
    }

    /// The transpose (axes reversed); local.
    #[track_caller]
    pub fn t(&self) -> Priv<A> {
        self.wrap(self.data.reversed_axes())
    }

    /// The transpose (axes reversed); the same as [`Priv::t`].
    #[track_caller]
    pub fn transpose(&self) -> Priv<A> {
        self.t()
    }

    /// The axes permuted: axis `k` of the result is axis `axes[k]` of `self`.
    ///
    /// # Panics
    /// Stops the program when `axes` is not a permutation of `0..ndim`.
    #[track_caller]
    pub fn permuted_axes(&self, axes: &[usize]) -> Priv<A> {
        let mut sorted = axes.to_vec();
        sorted.sort_unstable();
        if sorted != (0..self.ndim()).collect::<Vec<_>>() {
            fail(Error::InvalidArgument {
                operation: "permuted_axes",
                reason: format!("{axes:?} is not a permutation of the {} axes", self.ndim()),
            });
            return self.clone();
        }
        self.wrap(self.data.permuted_axes(axes))
    }

    /// The same value as a dynamic-dimensional array.
    pub fn into_dyn(self) -> Priv<ndarray::ArrayD<f64>> {
        Priv::new(self.data, self.eng)
    }

    /// Opens the value to all four servers and returns it as a public value.
    /// Use this only where disclosure is intended (for example, to branch on it).
    ///
    /// # Panics
    /// Stops the program when a peer is lost; see [`Priv::try_reveal`].
    #[track_caller]
    pub fn reveal(&self) -> A {
        or_fail(self.try_reveal(), || {
            let zeros = ndarray::ArrayD::zeros(placeholder_shape::<A>(self.shape()));
            A::from_dyn(zeros).unwrap_or_else(|_| unreachable!("a placeholder of A's rank"))
        })
    }

    /// Fallible [`Priv::reveal`].
    ///
    /// # Errors
    /// A lost peer.
    #[track_caller]
    pub fn try_reveal(&self) -> Result<A> {
        let v = self.eng.reveal(&self.data)?;
        Ok(A::from_dyn(v)?)
    }

    /// A public value as a secret of this session (used by `#[private]`'s selects).
    #[doc(hidden)]
    #[track_caller]
    pub fn __lift<P: Public>(&self, value: P) -> Priv<P::Kind> {
        Priv::from_result(self.eng.constant(&value.view_dyn()), self.eng.clone())
    }

    /// Converts the static type, checking the rank (for example `ArrayD` to `Array2`).
    ///
    /// # Errors
    /// [`ShapeError::Rank`] when the rank differs.
    #[track_caller]
    pub fn into_type<B: PrivType>(self) -> Result<Priv<B>> {
        check_rank::<B>(&self.data)?;
        Ok(Priv::new(self.data, self.eng))
    }
}

/// The right operand of `dot`: a secret or a public array.
pub trait DotOperand {
    /// Its cleartext type.
    type Kind: PrivType;
    /// The operand as the engine sees it. `Operand` is crate-private, so no other
    /// crate can implement this trait: it is sealed.
    #[doc(hidden)]
    #[allow(private_interfaces)]
    fn operand(&self) -> Operand<'_>;
}

impl<B: PrivType> DotOperand for &Priv<B> {
    type Kind = B;
    #[allow(private_interfaces)]
    fn operand(&self) -> Operand<'_> {
        Operand::Secret(&self.data, &self.eng)
    }
}

impl<D: ndarray::Dimension> DotOperand for &ndarray::Array<f64, D>
where
    ndarray::Array<f64, D>: PrivType,
{
    type Kind = ndarray::Array<f64, D>;
    #[allow(private_interfaces)]
    fn operand(&self) -> Operand<'_> {
        Operand::Public(self.view().into_dyn())
    }
}

/// `lhs.dot(rhs)` where the left operand may be public: `dot(&w, &x)` for a public
/// matrix `w` and a secret `x`. Secret · secret and secret · public as in [`Priv::dot`].
///
/// # Panics
/// Stops the program when the inner dimensions differ.
#[track_caller]
pub fn dot<L: DotOperand, B: PrivType>(
    lhs: L,
    rhs: &Priv<B>,
) -> Priv<<L::Kind as DotWith<B>>::Output>
where
    L::Kind: DotWith<B>,
{
    Priv::from_result(dot_data(lhs.operand(), rhs.operand()), rhs.eng.clone())
}

/// The product of two 1-D or 2-D operands, at least one secret.
#[track_caller]
pub(crate) fn dot_data(l: Operand<'_>, r: Operand<'_>) -> Result<Data> {
    let shape = |o: &Operand<'_>| match o {
        Operand::Secret(d, _) => d.shape().to_vec(),
        Operand::Prepared(p, _) => p.data.shape().to_vec(),
        Operand::Public(c) => c.shape().to_vec(),
    };
    let (ls, rs) = (shape(&l), shape(&r));
    if !(1..=2).contains(&ls.len()) || !(1..=2).contains(&rs.len()) {
        return Err(ShapeError::DotRank {
            left: ls,
            right: rs,
        }
        .into());
    }
    // View vectors as matrices: a left vector is a row, a right vector a column.
    let l2 = if ls.len() == 1 {
        vec![1, ls[0]]
    } else {
        ls.clone()
    };
    let r2 = if rs.len() == 1 {
        vec![rs[0], 1]
    } else {
        rs.clone()
    };
    if l2[1] != r2[0] {
        return Err(ShapeError::Dot {
            left: ls,
            right: rs,
            left_inner: l2[1],
            right_inner: r2[0],
        }
        .into());
    }
    let mut out = Vec::new();
    if ls.len() == 2 {
        out.push(ls[0]);
    }
    if rs.len() == 2 {
        out.push(rs[1]);
    }
    let d = match (l, r) {
        (Operand::Secret(a, eng), Operand::Secret(b, eng2)) => {
            if !Rc::ptr_eq(eng, eng2) {
                return Err(Error::MixedSessions);
            }
            eng.matmul(&*a.reshaped(&l2)?, &*b.reshaped(&r2)?)?
        }
        (Operand::Secret(a, eng), Operand::Public(c)) => {
            let c = c.to_shape(r2.as_slice()).map_err(|_| unreachable_shape())?;
            eng.matmul_public(&*a.reshaped(&l2)?, &c.view(), false, true)?
        }
        (Operand::Public(c), Operand::Secret(b, eng)) => {
            let c = c.to_shape(l2.as_slice()).map_err(|_| unreachable_shape())?;
            eng.matmul_public(&*b.reshaped(&r2)?, &c.view(), true, true)?
        }
        (Operand::Secret(a, eng), Operand::Prepared(w, eng2)) => {
            if !Rc::ptr_eq(eng, eng2) {
                return Err(Error::MixedSessions);
            }
            if rs.len() != 2 {
                return Err(prepared_misuse());
            }
            eng.matmul_prepared(&*a.reshaped(&l2)?, w)?
        }
        (Operand::Prepared(..), _) | (Operand::Public(_), Operand::Prepared(..)) => {
            return Err(prepared_misuse());
        }
        (Operand::Public(_), Operand::Public(_)) => {
            return Err(Error::InvalidArgument {
                operation: "dot",
                reason: "both operands are public: use ndarray's dot".into(),
            });
        }
    };
    Ok(d.into_shape(&out)?)
}

#[track_caller]
fn prepared_misuse() -> Error {
    Error::InvalidArgument {
        operation: "dot",
        reason: "a prepared matrix is only the right operand of a product with a secret".into(),
    }
}

/// A secret matrix prepared once as the right operand of many matrix products, for
/// example a model's weights ([`Priv::prepare`]). Preparing runs the right operand's
/// half of the paper's Protocol 1 once: `S1` and `S2` re-randomize their shares and
/// send them to the assistants Protocol 1 gives them, and all four servers keep what
/// they hold. Each later `x.dot(&prepared)` then sends only `x`'s masked shares and the
/// product's re-shares (`2|x| + 2|z|` ring elements instead of
/// `2|x| + 2|w| + 2|z|`), with the same two rounds and the same rounding.
///
/// Security: every product's view is Protocol 1's view with the right operand's
/// re-randomization drawn once; each assistant holds one fixed share of `w`, and per
/// product one share of `x` masked afresh, never the other side's (the argument is in
/// `privpy-core/src/protocol/mod.rs`, `Party::matmul_prepared`). A prepared matrix
/// belongs to the session that prepared it and lives as long as it.
///
/// ```
/// use ndarray::{Array2, array};
/// use privpy_core::{Config, LocalCluster};
/// let mut cluster = LocalCluster::new(Config::fast());
/// let owner = cluster.client("owner");
/// cluster.upload(&owner, "w", &array![[1.0, 2.0], [-0.5, 0.25]])?;
/// cluster.upload(&owner, "x", &array![[0.5, 1.0], [2.0, -1.0]])?;
/// let run = cluster.run(|s| {
///     let w = s.input::<Array2<f64>>("w")?.prepare()?;
///     let x = s.input::<Array2<f64>>("x")?;
///     s.output("owner", "y", &(x.dot(&w) + x.dot(&w)))
/// })?;
/// let y: Array2<f64> = run.open(&owner, "y")?;
/// assert!((y[[0, 0]] - 0.0).abs() < 1e-3 && (y[[1, 1]] - 7.5).abs() < 1e-3);
/// # Ok::<(), privpy_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Prepared {
    data: std::sync::Arc<crate::engine::PreparedData>,
    eng: Rc<dyn Engine>,
}

impl Prepared {
    /// The matrix's shape.
    pub fn shape(&self) -> &[usize] {
        self.data.data.shape()
    }

    /// This server's part of the prepared matrix, to keep beyond this session and
    /// use in later ones ([`crate::Session::attach`]): a server that serves one
    /// model to many jobs prepares its weights once. No copy (shared).
    pub fn share(&self) -> PreparedShare {
        PreparedShare {
            data: self.data.clone(),
            role: self.eng.role(),
            config: self.eng.config(),
        }
    }
}

/// One server's part of a [`Prepared`] matrix, detached from its session
/// ([`Prepared::share`]) so that later sessions on the same server can use it
/// ([`crate::Session::attach`]). `Send` and cheap to clone. `Debug` shows the shape
/// and role only: on `S1`/`S2` it is a share, on `Sa`/`Sb` a re-randomized share of
/// the matrix, each uniformly random on its own.
#[derive(Clone)]
pub struct PreparedShare {
    pub(crate) data: std::sync::Arc<crate::engine::PreparedData>,
    pub(crate) role: Option<crate::transport::Role>,
    pub(crate) config: Option<crate::Config>,
}

impl PreparedShare {
    /// The matrix's shape.
    pub fn shape(&self) -> &[usize] {
        self.data.data.shape()
    }

    /// The server it belongs to (`None` for the cleartext engine).
    pub fn role(&self) -> Option<crate::transport::Role> {
        self.role
    }
}

impl std::fmt::Debug for PreparedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedShare")
            .field("shape", &self.shape())
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Prepared({:?})", self.shape())
    }
}

impl DotOperand for &Prepared {
    type Kind = ndarray::Array2<f64>;
    #[allow(private_interfaces)]
    fn operand(&self) -> Operand<'_> {
        Operand::Prepared(&self.data, &self.eng)
    }
}

impl Priv<ndarray::Array2<f64>> {
    /// This matrix prepared as the right operand of many products ([`Prepared`]):
    /// one round and `2|w|` ring elements now, none of `w`'s elements in each later
    /// product.
    ///
    /// # Errors
    /// A lost peer.
    #[track_caller]
    pub fn prepare(&self) -> Result<Prepared> {
        let data = if failed() {
            crate::engine::PreparedData::plain(self.data.clone())
        } else {
            self.eng.prepare(&self.data)?
        };
        Ok(Prepared {
            data: std::sync::Arc::new(data),
            eng: self.eng.clone(),
        })
    }
}

impl Prepared {
    /// Re-attaches a kept share to the session of `eng` (see
    /// [`crate::Session::attach`]).
    pub(crate) fn attach(share: &PreparedShare, eng: Rc<dyn Engine>) -> Result<Prepared> {
        if share.role != eng.role() || share.config != eng.config() {
            return Err(Error::InvalidArgument {
                operation: "attach",
                reason: format!(
                    "a prepared matrix of role {:?} and {:?} cannot join a session of role {:?} and {:?}",
                    share.role,
                    share.config,
                    eng.role(),
                    eng.config()
                ),
            });
        }
        Ok(Prepared {
            data: share.data.clone(),
            eng,
        })
    }
}

#[track_caller]
fn unreachable_shape() -> Error {
    Error::InvalidArgument {
        operation: "dot",
        reason: "internal: reshaping a public operand failed".into(),
    }
}
