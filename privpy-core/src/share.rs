//! Client side: splitting arrays into two shares and putting results back together.
//!
//! `S(x) = (r, x̃ - r)` with `r` uniform in the ring (paper §4.1): either share alone
//! is a uniformly random array and says nothing about `x`.

use crate::config::Config;
use crate::data::{Data, Held};
use crate::error::{EncodeError, Error, Result};
use crate::ring::{Ring, RingKind, Z64, Z128, Z256};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rand_core::Rng;

/// One server's share of an array, as a client sends or receives it.
///
/// `Debug` shows the ring and shape, never the elements.
#[derive(Clone)]
pub struct Share {
    pub(crate) data: Data,
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Share")
            .field("ring", &self.ring())
            .field("shape", &self.shape())
            .finish_non_exhaustive()
    }
}

impl Share {
    /// The shape of the shared array.
    pub fn shape(&self) -> &[usize] {
        self.data.shape()
    }

    /// The ring of the elements.
    pub fn ring(&self) -> Option<RingKind> {
        match self.data {
            Data::Z64(_) => Some(RingKind::Z64),
            Data::Z128(_) => Some(RingKind::Z128),
            Data::Z256(_) => Some(RingKind::Z256),
            Data::Clear(_) | Data::Shape(_) => None,
        }
    }

    /// The elements in row-major order, little-endian, `l/8` bytes each.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match &self.data {
            Data::Z64(a) => Z64::write_le(a.iter().copied(), &mut out),
            Data::Z128(a) => Z128::write_le(a.iter().copied(), &mut out),
            Data::Z256(a) => Z256::write_le(a.iter().copied(), &mut out),
            Data::Clear(_) | Data::Shape(_) => {}
        }
        out
    }

    /// Parses a share of the given ring and shape.
    ///
    /// # Errors
    /// [`Error::ShareMismatch`] when the length does not match the shape.
    pub fn from_bytes(ring: RingKind, shape: &[usize], bytes: &[u8]) -> Result<Share> {
        fn parse<R: Ring + Held>(shape: &[usize], bytes: &[u8]) -> Result<Data> {
            let need = shape
                .iter()
                .try_fold(R::BYTES, |acc, &d| acc.checked_mul(d))
                .ok_or_else(|| Error::ShareMismatch(format!("shape {shape:?} is too large")))?;
            if bytes.len() != need {
                return Err(Error::ShareMismatch(format!(
                    "shape {shape:?} needs {need} bytes, got {}",
                    bytes.len()
                )));
            }
            Ok(R::wrap(to_array(shape, R::read_le(bytes))))
        }
        let data = match ring {
            RingKind::Z64 => parse::<Z64>(shape, bytes)?,
            RingKind::Z128 => parse::<Z128>(shape, bytes)?,
            RingKind::Z256 => parse::<Z256>(shape, bytes)?,
        };
        Ok(Share { data })
    }
}

impl Share {
    /// The shares of several arrays concatenated along the first axis (the share of
    /// their concatenation): how a server joins row slices uploaded by several
    /// data owners. No communication; each server does it on its own shares.
    ///
    /// # Errors
    /// [`Error::ShareMismatch`] for no parts, parts of different rings, 0-dimensional
    /// parts, or parts whose shapes differ beyond the first axis.
    pub fn concat_rows(parts: &[Share]) -> Result<Share> {
        let Some(first) = parts.first() else {
            return Err(Error::ShareMismatch("nothing to concatenate".into()));
        };
        let trailing = first.shape().get(1..).ok_or_else(|| {
            Error::ShareMismatch("0-dimensional shares have no rows to concatenate".into())
        })?;
        let mut rows = 0;
        for p in parts {
            if p.ring() != first.ring() || p.ring().is_none() {
                return Err(Error::ShareMismatch(format!(
                    "rings {:?} and {:?}",
                    first.ring(),
                    p.ring()
                )));
            }
            if p.shape().is_empty() || &p.shape()[1..] != trailing {
                return Err(Error::ShareMismatch(format!(
                    "shapes {:?} and {:?} differ beyond the first axis",
                    first.shape(),
                    p.shape()
                )));
            }
            rows += p.shape()[0];
        }
        let mut shape = vec![rows];
        shape.extend_from_slice(trailing);
        let refs: Vec<&Data> = parts.iter().map(|p| &p.data).collect();
        let data = Data::concat_flat(&refs)
            .reshape(&shape)
            .map_err(|e| Error::ShareMismatch(e.to_string()))?;
        Ok(Share { data })
    }
}

impl Share {
    /// Rows `start..end` of this share (the share of those rows of the array): how a
    /// server hands each client of a batched job its own rows.
    ///
    /// # Errors
    /// [`Error::ShareMismatch`] for a 0-dimensional share, a share without ring
    /// elements, or rows out of range.
    pub fn slice_rows(&self, start: usize, end: usize) -> Result<Share> {
        let shape = self.shape();
        let (Some(ring), Some(&rows)) = (self.ring(), shape.first()) else {
            return Err(Error::ShareMismatch(
                "only shares of ring elements with rows can be sliced".into(),
            ));
        };
        if start > end || end > rows {
            return Err(Error::ShareMismatch(format!(
                "rows {start}..{end} of a share of {rows} rows"
            )));
        }
        let bytes = self.to_bytes();
        let per_row = bytes.len().checked_div(rows).unwrap_or(0);
        let mut s = shape.to_vec();
        s[0] = end - start;
        Share::from_bytes(ring, &s, &bytes[start * per_row..end * per_row])
    }
}

fn to_array<T>(shape: &[usize], v: Vec<T>) -> ArrayD<T> {
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap_or_else(|_| unreachable!("length checked"))
}

/// Splits `x` into shares for `S1` and `S2`, drawing the mask from the operating
/// system's generator.
///
/// # Errors
/// NaN, ±inf or `|x|` at or above the configuration's bound, naming the element.
///
/// # Panics
/// When the operating system's random generator fails (there is no secure way on).
pub fn share(cfg: &Config, x: &ArrayViewD<'_, f64>) -> Result<[Share; 2], EncodeError> {
    let mut seed = [0u8; 32];
    // A failing OS generator is fatal for a client; there is no safe fallback.
    if let Err(e) = getrandom::fill(&mut seed) {
        panic!("the operating system's random generator failed: {e}");
    }
    let mut rng = <rand_chacha::ChaCha12Rng as rand_core::SeedableRng>::from_seed(seed);
    share_with(cfg, x, &mut rng)
}

/// [`share`] with a caller-supplied generator (it must be cryptographically secure).
///
/// # Errors
/// As [`share`].
pub fn share_with(
    cfg: &Config,
    x: &ArrayViewD<'_, f64>,
    rng: &mut impl Rng,
) -> Result<[Share; 2], EncodeError> {
    fn split<R: Ring + Held>(
        cfg: &Config,
        x: &ArrayViewD<'_, f64>,
        rng: &mut impl Rng,
    ) -> Result<[Share; 2], EncodeError> {
        let xt = cfg.encode::<R>(x)?;
        let r = to_array(x.shape(), R::random_vec(rng, x.len()));
        let second = &xt - &r;
        Ok([
            Share { data: R::wrap(r) },
            Share {
                data: R::wrap(second),
            },
        ])
    }
    match cfg.ring() {
        RingKind::Z64 => split::<Z64>(cfg, x, rng),
        RingKind::Z128 => split::<Z128>(cfg, x, rng),
        RingKind::Z256 => split::<Z256>(cfg, x, rng),
    }
}

/// Puts two result shares back together: `I(s1 + s2) / 2^f`.
///
/// # Errors
/// [`Error::ShareMismatch`] when the shares are of different rings or shapes, or of
/// a ring other than the configuration's.
pub fn reconstruct(cfg: &Config, s1: &Share, s2: &Share) -> Result<ArrayD<f64>> {
    if s1.shape() != s2.shape() {
        return Err(Error::ShareMismatch(format!(
            "shapes {:?} and {:?}",
            s1.shape(),
            s2.shape()
        )));
    }
    fn add<R: Ring>(cfg: &Config, a: &ArrayD<R>, b: &ArrayD<R>) -> ArrayD<f64> {
        ndarray::Zip::from(a)
            .and(b)
            .map_collect(|&p, &q| cfg.decode_one(p.wadd(q)))
    }
    match (&s1.data, &s2.data, cfg.ring()) {
        (Data::Z64(a), Data::Z64(b), RingKind::Z64) => Ok(add(cfg, a, b)),
        (Data::Z128(a), Data::Z128(b), RingKind::Z128) => Ok(add(cfg, a, b)),
        (Data::Z256(a), Data::Z256(b), RingKind::Z256) => Ok(add(cfg, a, b)),
        _ => Err(Error::ShareMismatch(format!(
            "rings {:?} and {:?} with a {:?} configuration",
            s1.ring(),
            s2.ring(),
            cfg.ring()
        ))),
    }
}
