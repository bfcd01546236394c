//! Number representation: which ring, how many fractional bits, which values are allowed.
//!
//! A real `x` is encoded as `x̃ = round(x · 2^f) mod 2^l` (two's complement, round to
//! nearest, ties away from zero). Decoding reads the signed value `I(t)` and divides by `2^f`.
//!
//! | preset | ring | `f` | precision `2^-f` | bound on `|x|` | wrap failure per operand |
//! |---|---|---|---|---|---|
//! | [`Config::default`] | `Z128` | 32 | 2.3e-10 | `2^31` | ≤ `2^-65` |
//! | [`Config::fast`] | `Z64` | 16 | 1.5e-5 | `2^20` | ≤ `2^-28` (about `|x|·2^-48`) |
//! | [`Config::paper`] | `Z256` | 128 | 2.9e-39 | `2^63` | ≤ `2^-65` |
//!
//! The failure column is Theorem 2 of the paper: a multiplication reads each operand's
//! two shares as signed numbers, and their sum overflows with probability `|x̃| / 2^l`.
//! The bound also keeps every product of two in-range values representable.
//! Values at or above the bound, NaN and ±inf are refused when they are shared.

use crate::error::EncodeError;
use crate::ring::{Ring, RingKind};
use ndarray::{ArrayViewD, Dimension};

/// Which protocol computes secret comparisons (and so every operation built on
/// them: relu, max, sort, select conditions, the sigmoids, the real functions'
/// exponent search).
///
/// | protocol | online rounds | online bytes per 64-bit comparison, per primary | offline |
/// |---|---|---|---|
/// | [`Comparison::FourParty`] | 8 (`2 + ⌈log2(l−1)⌉`) | about 31 | `Sa` deals masks and AND triples; ~32 bytes to `S2` |
/// | [`Comparison::GarbledCircuit`] | 2 | 2,048 (labels to `Sb`) | `Sa` garbles (2 kB per comparison to `Sb`) |
///
/// The default, [`Comparison::Auto`], picks one of the two for each batch of
/// comparisons from the batch size and the configured [`Network`]: the garbled
/// circuit's two rounds win small batches on a slow link, the four-party protocol
/// wins everything else by 10–30× (README, network-profile figures). Every server
/// sees the same batch sizes and configuration, so all four make the same choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Comparison {
    /// The four-party protocol (`protocol/compare4.rs`): `Sa` deals input-independent
    /// correlated randomness from seeds it shares with `S1` and `S2`; `S1` and `S2`
    /// open the masked difference and evaluate a bit-sliced comparison circuit with
    /// AND triples, finishing in arithmetic shares.
    FourParty,
    /// The paper's Protocol 2: a garbled circuit between the assistants.
    GarbledCircuit,
    /// The faster of the two for each batch: the garbled circuit for batches smaller
    /// than [`Network::crossover`], the four-party protocol otherwise.
    #[default]
    Auto,
}

impl Comparison {
    /// The protocol that runs a batch of `n` comparisons on `network`:
    /// [`Comparison::FourParty`] or [`Comparison::GarbledCircuit`].
    ///
    /// ```
    /// use privpy_core::{Comparison, Network};
    /// assert_eq!(Comparison::Auto.resolve(1, Network::Wan), Comparison::GarbledCircuit);
    /// assert_eq!(Comparison::Auto.resolve(10_000, Network::Wan), Comparison::FourParty);
    /// assert_eq!(Comparison::FourParty.resolve(1, Network::Wan), Comparison::FourParty);
    /// ```
    pub fn resolve(self, n: usize, network: Network) -> Comparison {
        match self {
            Comparison::Auto if n < network.crossover() => Comparison::GarbledCircuit,
            Comparison::Auto => Comparison::FourParty,
            other => other,
        }
    }
}

/// The network between the servers, as far as choosing protocols goes
/// ([`Comparison::Auto`]). [`crate::LocalCluster::with_link`] sets it from the
/// emulated link; a deployment sets it in its cluster file (`network = "lan"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Network {
    /// All servers on one host, or a link under 50 µs one way.
    #[default]
    Local,
    /// A LAN: about 0.1 ms one way, 1 Gbit/s.
    Lan,
    /// A WAN: about 20 ms one way, 100 Mbit/s.
    Wan,
}

impl Network {
    /// The batch size from which the four-party comparison is faster than the
    /// garbled circuit on this network, from `benches/compare.rs` on a 2-core
    /// machine (one comparison, four-party vs garbled; then the cost of each further
    /// comparison): 64 locally (220 µs vs 48 µs; 0.09 µs vs 2.76 µs), 52 on a LAN
    /// (1.50 ms vs 0.40 ms; 0.37 µs vs 21.5 µs), 730 on a WAN (161 ms vs 40 ms;
    /// 3.2 µs vs 168 µs).
    pub fn crossover(self) -> usize {
        match self {
            Network::Local => 64,
            Network::Lan => 52,
            Network::Wan => 730,
        }
    }

    /// The network class of a link with this one-way delay: under 50 µs
    /// [`Network::Local`], under 5 ms [`Network::Lan`], else [`Network::Wan`].
    pub fn from_delay(one_way: std::time::Duration) -> Network {
        if one_way < std::time::Duration::from_micros(50) {
            Network::Local
        } else if one_way < std::time::Duration::from_millis(5) {
            Network::Lan
        } else {
            Network::Wan
        }
    }
}

/// The ring, the number of fractional bits, the bound on input magnitudes, the
/// comparison protocol and the network it is chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    ring: RingKind,
    frac_bits: u32,
    bound_log2: u32,
    comparison: Comparison,
    network: Network,
    memory_budget: u64,
}

/// The default [`Config::memory_budget`]: 512 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 512 << 20;

/// The smallest [`Config::memory_budget`] accepted: 1 MiB.
pub const MIN_MEMORY_BUDGET: u64 = 1 << 20;

impl Default for Config {
    /// `Z128` with 32 fractional bits; `|x| < 2^31`.
    fn default() -> Self {
        Config {
            ring: RingKind::Z128,
            frac_bits: 32,
            bound_log2: 31,
            comparison: Comparison::Auto,
            network: Network::Local,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }
}

impl Config {
    /// `Z64` with 16 fractional bits (the precision CrypTen and MP-SPDZ use); `|x| < 2^20`.
    pub fn fast() -> Self {
        Config {
            ring: RingKind::Z64,
            frac_bits: 16,
            bound_log2: 20,
            comparison: Comparison::Auto,
            network: Network::Local,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }

    /// The paper's parameters: `Z256` with 128 fractional bits; `|x| < 2^63`.
    pub fn paper() -> Self {
        Config {
            ring: RingKind::Z256,
            frac_bits: 128,
            bound_log2: 63,
            comparison: Comparison::Auto,
            network: Network::Local,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        }
    }

    /// A custom configuration.
    ///
    /// # Errors
    /// `frac_bits` must be at most `l/2`, and `bound_log2 + frac_bits` at most `(l - 2)/2`
    /// plus `frac_bits/2`, so that the product of two in-range values
    /// (`2^(2·bound_log2 + f)`) fits in `l - 1` bits.
    pub fn new(ring: RingKind, frac_bits: u32, bound_log2: u32) -> Result<Self, crate::Error> {
        let l = ring.bits();
        if frac_bits > l / 2 {
            return Err(crate::Error::NumberFormat {
                ring,
                frac_bits,
                bound_log2,
                reason: "the fractional bits exceed half of the ring",
            });
        }
        // In u64: a hostile bound (from a network message) must not overflow.
        if 2 * u64::from(bound_log2) + u64::from(frac_bits) > u64::from(l - 2) {
            return Err(crate::Error::NumberFormat {
                ring,
                frac_bits,
                bound_log2,
                reason: "the product of two values at the bound would not fit in the ring",
            });
        }
        Ok(Config {
            ring,
            frac_bits,
            bound_log2,
            comparison: Comparison::Auto,
            network: Network::Local,
            memory_budget: DEFAULT_MEMORY_BUDGET,
        })
    }

    /// This configuration with comparisons computed by `protocol`.
    ///
    /// ```
    /// use privpy_core::{Comparison, Config};
    /// let gc = Config::fast().with_comparison(Comparison::GarbledCircuit);
    /// assert_eq!(gc.comparison(), Comparison::GarbledCircuit);
    /// assert_eq!(Config::fast().comparison(), Comparison::Auto);
    /// ```
    pub fn with_comparison(self, protocol: Comparison) -> Self {
        Config {
            comparison: protocol,
            ..self
        }
    }

    /// The comparison protocol.
    pub fn comparison(&self) -> Comparison {
        self.comparison
    }

    /// This configuration for servers connected by `network` (what
    /// [`Comparison::Auto`] chooses by).
    ///
    /// ```
    /// use privpy_core::{Config, Network};
    /// assert_eq!(Config::fast().network(), Network::Local);
    /// assert_eq!(Config::fast().with_network(Network::Wan).network(), Network::Wan);
    /// ```
    pub fn with_network(self, network: Network) -> Self {
        Config { network, ..self }
    }

    /// The network the servers are configured for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// This configuration with a memory budget of `bytes` per server for one secret
    /// array (default [`DEFAULT_MEMORY_BUDGET`], at least [`MIN_MEMORY_BUDGET`]).
    ///
    /// An input whose share is larger can only be used as a
    /// [`crate::LargeArray`] ([`crate::Session::large_input`]): [`crate::Session::input`]
    /// refuses it with [`crate::Error::OverBudget`], and so does any `LargeArray`
    /// method that would hold more than the budget in memory. `LargeArray`
    /// operations work in chunks of an eighth of it. All four servers must use the
    /// same budget (it decides how operations are split): in a deployment it is part
    /// of the job's configuration that `S1` sends.
    ///
    /// ```
    /// use privpy_core::Config;
    /// let c = Config::fast().with_memory_budget(64 << 20);
    /// assert_eq!(c.memory_budget(), 64 << 20);
    /// // Below the minimum, the minimum applies.
    /// assert_eq!(Config::fast().with_memory_budget(1).memory_budget(), 1 << 20);
    /// ```
    pub fn with_memory_budget(self, bytes: u64) -> Self {
        Config {
            memory_budget: bytes.max(MIN_MEMORY_BUDGET),
            ..self
        }
    }

    /// The memory budget per server for one secret array, in bytes
    /// ([`Config::with_memory_budget`]).
    pub fn memory_budget(&self) -> u64 {
        self.memory_budget
    }

    /// `log2` of the bound on input magnitudes.
    pub fn bound_log2(&self) -> u32 {
        self.bound_log2
    }

    /// The ring.
    pub fn ring(&self) -> RingKind {
        self.ring
    }

    /// The number of fractional bits `f`.
    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// The exclusive bound on `|x|` for inputs (`2^bound_log2`).
    pub fn bound(&self) -> f64 {
        2f64.powi(self.bound_log2 as i32)
    }

    /// The resolution `2^-f`: one unit in the last place.
    pub fn ulp(&self) -> f64 {
        2f64.powi(-(self.frac_bits as i32))
    }

    /// The exclusive bound on `|c|` for public operands and constants inside programs:
    /// `2^(l - f - 2)`, so that `c̃` is a valid signed ring element. (A public factor
    /// multiplies each share locally, which is exact for any encodable `c`; keeping the
    /// *result* in range is the program's business, as in plain fixed-point code.)
    pub fn public_bound(&self) -> f64 {
        2f64.powi((self.ring.bits() - self.frac_bits - 2) as i32)
    }

    /// Upper bound on the probability that one operand's shares wrap in a
    /// multiplication (paper Theorem 2), for an operand at the bound.
    pub fn wrap_failure_bound(&self) -> f64 {
        2f64.powi(self.bound_log2 as i32 + self.frac_bits as i32 - self.ring.bits() as i32)
    }

    /// Encodes one value as a ring element, checking it against the bound.
    ///
    /// # Errors
    /// NaN, ±inf, or `|x|` at or above [`Config::bound`].
    pub fn encode_scalar<R: Ring>(&self, x: f64) -> Result<R, EncodeError> {
        self.encode_one(x, &[])
    }

    /// Decodes one ring element: `I(t) / 2^f`.
    pub fn decode_scalar<R: Ring>(&self, t: R) -> f64 {
        self.decode_one(t)
    }

    /// Encodes one value, checking it against the input bound.
    pub(crate) fn encode_one<R: Ring>(&self, x: f64, index: &[usize]) -> Result<R, EncodeError> {
        self.encode_within::<R>(x, index, self.bound())
    }

    /// Encodes one value, checking it against `bound`.
    fn encode_within<R: Ring>(
        &self,
        x: f64,
        index: &[usize],
        bound: f64,
    ) -> Result<R, EncodeError> {
        if x.is_nan() {
            return Err(EncodeError::NaN {
                index: index.to_vec(),
            });
        }
        if x.is_infinite() {
            return Err(EncodeError::Infinite {
                index: index.to_vec(),
            });
        }
        if x.abs() >= bound {
            return Err(EncodeError::OutOfRange {
                index: index.to_vec(),
                value: x,
                bound,
            });
        }
        Ok(encode_unchecked(x, self.frac_bits))
    }

    /// Encodes an input array, naming the first element outside the input bound.
    pub(crate) fn encode<R: Ring>(
        &self,
        x: &ArrayViewD<'_, f64>,
    ) -> Result<ndarray::ArrayD<R>, EncodeError> {
        self.encode_array(x, self.bound())
    }

    /// Encodes a public operand, checked against [`Config::public_bound`].
    pub(crate) fn encode_public<R: Ring>(
        &self,
        x: &ArrayViewD<'_, f64>,
    ) -> Result<ndarray::ArrayD<R>, EncodeError> {
        self.encode_array(x, self.public_bound())
    }

    fn encode_array<R: Ring>(
        &self,
        x: &ArrayViewD<'_, f64>,
        bound: f64,
    ) -> Result<ndarray::ArrayD<R>, EncodeError> {
        let mut out = Vec::with_capacity(x.len());
        for (idx, &v) in x.indexed_iter() {
            out.push(self.encode_within(v, idx.slice(), bound)?);
        }
        Ok(ndarray::ArrayD::from_shape_vec(x.raw_dim(), out)
            .unwrap_or_else(|_| unreachable!("same length")))
    }

    /// Decodes one element: `I(t) / 2^f`.
    #[inline]
    pub(crate) fn decode_one<R: Ring>(&self, t: R) -> f64 {
        t.to_f64_signed() * self.ulp()
    }
}

/// `round(x · 2^f) mod 2^l` for a finite `x` whose encoding fits in the ring.
pub(crate) fn encode_unchecked<R: Ring>(x: f64, f: u32) -> R {
    let bits = x.abs().to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    let frac = bits & ((1u64 << 52) - 1);
    // |x| = m · 2^e exactly.
    let (m, e) = if exp == 0 {
        (frac, -1074)
    } else {
        (frac | (1u64 << 52), exp - 1075)
    };
    let s = e + f as i32;
    let mag = if s >= 0 {
        if s as u32 >= R::BITS {
            R::zero()
        } else {
            R::from_u64(m).shl(s as u32)
        }
    } else {
        let r = (-s) as u32;
        if r > 54 {
            R::zero()
        } else {
            // Round half away from zero on the magnitude.
            R::from_u64(((m as u128 + (1u128 << (r - 1))) >> r) as u64)
        }
    };
    if x.is_sign_negative() {
        mag.wneg()
    } else {
        mag
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ring::{Z64, Z128, Z256};

    fn rt<R: Ring>(c: &Config, x: f64) -> f64 {
        c.decode_one(c.encode_one::<R>(x, &[]).unwrap())
    }

    #[test]
    fn encode_rounds_to_nearest_all_presets() {
        for x in [0.0, 1.0, -1.0, 0.5, -2.75, 1e-3, -123456.789, 3.0e-5] {
            let c = Config::fast();
            assert!((rt::<Z64>(&c, x) - x).abs() <= c.ulp() / 2.0, "{x}");
            let c = Config::default();
            assert!((rt::<Z128>(&c, x) - x).abs() <= c.ulp() / 2.0, "{x}");
            let c = Config::paper();
            assert!(
                (rt::<Z256>(&c, x) - x).abs() <= x.abs() * 1e-15 + c.ulp(),
                "{x}"
            );
        }
        // Exactly representable values are exact, including near the bound.
        let c = Config::default();
        let near = c.bound() - 0.25;
        assert_eq!(rt::<Z128>(&c, near), near);
        assert_eq!(rt::<Z128>(&c, -near), -near);
        let c = Config::paper();
        let near = 2f64.powi(62) * 1.5;
        assert_eq!(rt::<Z256>(&c, -near), -near);
        // Half an ulp rounds away from zero.
        let c = Config::fast();
        assert_eq!(c.encode_one::<Z64>(c.ulp() / 2.0, &[]).unwrap(), Z64(1));
        assert_eq!(
            c.encode_one::<Z64>(-c.ulp() / 2.0, &[]).unwrap(),
            Z64(u64::MAX)
        );
        assert_eq!(c.encode_one::<Z64>(c.ulp() / 2.1, &[]).unwrap(), Z64(0));
    }

    #[test]
    fn bad_values_are_refused_with_position_and_bound() {
        let c = Config::default();
        let e = c.encode_one::<Z128>(f64::NAN, &[2, 1]).unwrap_err();
        assert_eq!(e, EncodeError::NaN { index: vec![2, 1] });
        assert!(matches!(
            c.encode_one::<Z128>(f64::NEG_INFINITY, &[0]),
            Err(EncodeError::Infinite { .. })
        ));
        let e = c.encode_one::<Z128>(-c.bound(), &[3]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("[3]") && msg.contains("2.147483648e9"),
            "{msg}"
        );
    }

    #[test]
    fn custom_configs_are_validated() {
        assert!(matches!(
            Config::new(RingKind::Z64, 40, 5),
            Err(crate::Error::NumberFormat { frac_bits: 40, .. })
        ));
        assert!(matches!(
            Config::new(RingKind::Z64, 16, 30),
            Err(crate::Error::NumberFormat { bound_log2: 30, .. })
        ));
        let c = Config::new(RingKind::Z128, 40, 40).unwrap();
        assert_eq!(c.frac_bits(), 40);
        // Presets satisfy their own documented constraints.
        for c in [Config::default(), Config::fast(), Config::paper()] {
            assert!(Config::new(c.ring(), c.frac_bits(), c.bound_log2).is_ok());
        }
        assert_eq!(Config::default().wrap_failure_bound(), 2f64.powi(-65));
    }
}
