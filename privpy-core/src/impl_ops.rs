//! Arithmetic operators on [`Priv`], for every owned/borrowed and secret/public mix.

use crate::engine::BinOp;
use crate::priv_array::{Operand, Priv, or_abort};
use crate::types::{Broadcast, PrivType, Public};
use ndarray::{Array, Dimension};
use std::ops::{Add, Div, Mul, Neg, Sub};

macro_rules! impl_binop {
    ($Trait:ident, $method:ident, $op:expr) => {
        // secret op secret
        impl<A: PrivType + Broadcast<B>, B: PrivType> $Trait<&Priv<B>> for &Priv<A> {
            type Output = Priv<<A as Broadcast<B>>::Output>;
            #[track_caller]
            fn $method(self, rhs: &Priv<B>) -> Self::Output {
                Priv::new(
                    or_abort(self.binop($op, rhs.operand(), false)),
                    self.eng.clone(),
                )
            }
        }
        impl<A: PrivType + Broadcast<B>, B: PrivType> $Trait<Priv<B>> for &Priv<A> {
            type Output = Priv<<A as Broadcast<B>>::Output>;
            #[track_caller]
            fn $method(self, rhs: Priv<B>) -> Self::Output {
                self.$method(&rhs)
            }
        }
        impl<A: PrivType + Broadcast<B>, B: PrivType> $Trait<&Priv<B>> for Priv<A> {
            type Output = Priv<<A as Broadcast<B>>::Output>;
            #[track_caller]
            fn $method(self, rhs: &Priv<B>) -> Self::Output {
                (&self).$method(rhs)
            }
        }
        impl<A: PrivType + Broadcast<B>, B: PrivType> $Trait<Priv<B>> for Priv<A> {
            type Output = Priv<<A as Broadcast<B>>::Output>;
            #[track_caller]
            fn $method(self, rhs: Priv<B>) -> Self::Output {
                (&self).$method(&rhs)
            }
        }
        // secret op public
        impl<A: PrivType + Broadcast<P::Kind>, P: Public> $Trait<P> for &Priv<A> {
            type Output = Priv<<A as Broadcast<P::Kind>>::Output>;
            #[track_caller]
            fn $method(self, rhs: P) -> Self::Output {
                let d = self.binop($op, Operand::Public(rhs.view_dyn()), false);
                Priv::new(or_abort(d), self.eng.clone())
            }
        }
        impl<A: PrivType + Broadcast<P::Kind>, P: Public> $Trait<P> for Priv<A> {
            type Output = Priv<<A as Broadcast<P::Kind>>::Output>;
            #[track_caller]
            fn $method(self, rhs: P) -> Self::Output {
                (&self).$method(rhs)
            }
        }
        // public op secret
        impl<A: PrivType> $Trait<&Priv<A>> for f64
        where
            f64: Broadcast<A>,
        {
            type Output = Priv<<f64 as Broadcast<A>>::Output>;
            #[track_caller]
            fn $method(self, rhs: &Priv<A>) -> Self::Output {
                let d = rhs.binop($op, Operand::Public(self.view_dyn()), true);
                Priv::new(or_abort(d), rhs.eng.clone())
            }
        }
        impl<A: PrivType> $Trait<Priv<A>> for f64
        where
            f64: Broadcast<A>,
        {
            type Output = Priv<<f64 as Broadcast<A>>::Output>;
            #[track_caller]
            fn $method(self, rhs: Priv<A>) -> Self::Output {
                self.$method(&rhs)
            }
        }
        impl<A: PrivType, D: Dimension> $Trait<&Priv<A>> for &Array<f64, D>
        where
            Array<f64, D>: Broadcast<A>,
        {
            type Output = Priv<<Array<f64, D> as Broadcast<A>>::Output>;
            #[track_caller]
            fn $method(self, rhs: &Priv<A>) -> Self::Output {
                let d = rhs.binop($op, Operand::Public(self.view().into_dyn()), true);
                Priv::new(or_abort(d), rhs.eng.clone())
            }
        }
        impl<A: PrivType, D: Dimension> $Trait<Priv<A>> for &Array<f64, D>
        where
            Array<f64, D>: Broadcast<A>,
        {
            type Output = Priv<<Array<f64, D> as Broadcast<A>>::Output>;
            #[track_caller]
            fn $method(self, rhs: Priv<A>) -> Self::Output {
                self.$method(&rhs)
            }
        }
        impl<A: PrivType, D: Dimension> $Trait<&Priv<A>> for Array<f64, D>
        where
            Array<f64, D>: Broadcast<A>,
        {
            type Output = Priv<<Array<f64, D> as Broadcast<A>>::Output>;
            #[track_caller]
            fn $method(self, rhs: &Priv<A>) -> Self::Output {
                (&self).$method(rhs)
            }
        }
        impl<A: PrivType, D: Dimension> $Trait<Priv<A>> for Array<f64, D>
        where
            Array<f64, D>: Broadcast<A>,
        {
            type Output = Priv<<Array<f64, D> as Broadcast<A>>::Output>;
            #[track_caller]
            fn $method(self, rhs: Priv<A>) -> Self::Output {
                (&self).$method(&rhs)
            }
        }
    };
}

impl_binop!(Add, add, BinOp::Add);
impl_binop!(Sub, sub, BinOp::Sub);
impl_binop!(Mul, mul, BinOp::Mul);

/// Division by a public scalar: multiplication by its reciprocal (no communication).
/// Division by a secret comes with the derived operations (Newton–Raphson).
impl<A: PrivType + Broadcast<f64>> Div<f64> for &Priv<A> {
    type Output = Priv<<A as Broadcast<f64>>::Output>;
    #[track_caller]
    #[allow(clippy::suspicious_arithmetic_impl)] // division is multiplication by the reciprocal
    fn div(self, rhs: f64) -> Self::Output {
        self * (1.0 / rhs)
    }
}

impl<A: PrivType + Broadcast<f64>> Div<f64> for Priv<A> {
    type Output = Priv<<A as Broadcast<f64>>::Output>;
    #[track_caller]
    #[allow(clippy::suspicious_arithmetic_impl)] // division is multiplication by the reciprocal
    fn div(self, rhs: f64) -> Self::Output {
        &self * (1.0 / rhs)
    }
}

/// Element-wise division by a public array: multiplication by its reciprocals.
impl<A: PrivType + Broadcast<Array<f64, D>>, D: Dimension> Div<&Array<f64, D>> for &Priv<A>
where
    Array<f64, D>: PrivType,
{
    type Output = Priv<<A as Broadcast<Array<f64, D>>>::Output>;
    #[track_caller]
    #[allow(clippy::suspicious_arithmetic_impl)] // division is multiplication by the reciprocal
    fn div(self, rhs: &Array<f64, D>) -> Self::Output {
        self * rhs.mapv(|v| 1.0 / v)
    }
}

impl<A: PrivType> Neg for &Priv<A> {
    type Output = Priv<A>;
    fn neg(self) -> Priv<A> {
        Priv::new(self.eng.neg(&self.data), self.eng.clone())
    }
}

impl<A: PrivType> Neg for Priv<A> {
    type Output = Priv<A>;
    fn neg(self) -> Priv<A> {
        -&self
    }
}

/// `a / b` for secrets: `a · (1/b)` with [`Priv::reciprocal`] (its range applies to `b`).
impl<A: PrivType + Broadcast<B>, B: PrivType> Div<&Priv<B>> for &Priv<A> {
    type Output = Priv<<A as Broadcast<B>>::Output>;
    #[track_caller]
    #[allow(clippy::suspicious_arithmetic_impl)] // division is multiplication by the reciprocal
    fn div(self, rhs: &Priv<B>) -> Self::Output {
        self * &rhs.reciprocal()
    }
}

impl<A: PrivType + Broadcast<B>, B: PrivType> Div<Priv<B>> for Priv<A> {
    type Output = Priv<<A as Broadcast<B>>::Output>;
    #[track_caller]
    fn div(self, rhs: Priv<B>) -> Self::Output {
        &self / &rhs
    }
}

impl<A: PrivType + Broadcast<B>, B: PrivType> Div<&Priv<B>> for Priv<A> {
    type Output = Priv<<A as Broadcast<B>>::Output>;
    #[track_caller]
    fn div(self, rhs: &Priv<B>) -> Self::Output {
        &self / rhs
    }
}

/// `c / b` for a public scalar and a secret: `c · (1/b)`, one local multiplication.
impl<A: PrivType> Div<&Priv<A>> for f64
where
    f64: Broadcast<A>,
    A: Broadcast<f64>,
{
    type Output = Priv<A>;
    #[track_caller]
    #[allow(clippy::suspicious_arithmetic_impl)]
    fn div(self, rhs: &Priv<A>) -> Priv<A> {
        let r = rhs.reciprocal();
        let d = crate::priv_array::or_abort(r.binop(
            BinOp::Mul,
            Operand::Public(self.view_dyn()),
            false,
        ));
        Priv::new(d, rhs.eng.clone())
    }
}
