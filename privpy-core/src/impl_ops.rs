//! Arithmetic operators on [`Priv`], for every owned/borrowed and secret/public mix.

use crate::engine::BinOp;
use crate::priv_array::{Operand, Priv};
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
                Priv::from_result(self.binop($op, rhs.operand(), false), self.eng.clone())
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
                Priv::from_result(d, self.eng.clone())
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
                Priv::from_result(d, rhs.eng.clone())
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
                Priv::from_result(d, rhs.eng.clone())
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

/// Division by a public value (`f64`, an array, a view, or a reference to one):
/// multiplication by its reciprocals (no communication).
macro_rules! impl_div_public {
    ($($recv:ty),*) => {$(
        impl<A: PrivType + Broadcast<P::Kind>, P: Public> Div<P> for $recv {
            type Output = Priv<<A as Broadcast<P::Kind>>::Output>;
            #[track_caller]
            #[allow(clippy::suspicious_arithmetic_impl)] // division is multiplication by the reciprocal
            fn div(self, rhs: P) -> Self::Output {
                let recip = rhs.view_dyn().mapv(|v| 1.0 / v);
                let d = self.binop(BinOp::Mul, Operand::Public(recip.view()), false);
                Priv::from_result(d, self.eng.clone())
            }
        }
    )*};
}
impl_div_public!(&Priv<A>, Priv<A>);

/// `a / b` for secrets: `a · (1/b)` with [`Priv::reciprocal`] (its range applies to `b`),
/// for every owned/borrowed combination.
macro_rules! impl_div_secret {
    ($(($lhs:ty, $rhs:ty)),*) => {$(
        impl<A: PrivType + Broadcast<B>, B: PrivType> Div<$rhs> for $lhs {
            type Output = Priv<<A as Broadcast<B>>::Output>;
            #[track_caller]
            #[allow(clippy::suspicious_arithmetic_impl)] // division is multiplication by the reciprocal
            fn div(self, rhs: $rhs) -> Self::Output {
                let lhs: &Priv<A> = std::borrow::Borrow::borrow(&self);
                lhs * &rhs.reciprocal()
            }
        }
    )*};
}
impl_div_secret!(
    (&Priv<A>, &Priv<B>),
    (&Priv<A>, Priv<B>),
    (Priv<A>, &Priv<B>),
    (Priv<A>, Priv<B>)
);

/// `c / b` for a public scalar or array `c` and a secret `b`: `c · (1/b)`, one local
/// multiplication after the reciprocal.
macro_rules! impl_div_by_secret {
    ($(($lhs:ty, $rhs:ty)),*) => {$(
        impl<A: PrivType, D: Dimension> Div<$rhs> for $lhs
        where
            Array<f64, D>: Broadcast<A>,
        {
            type Output = Priv<<Array<f64, D> as Broadcast<A>>::Output>;
            #[track_caller]
            #[allow(clippy::suspicious_arithmetic_impl)]
            fn div(self, rhs: $rhs) -> Self::Output {
                let r = rhs.reciprocal();
                let d = r.binop(BinOp::Mul, Operand::Public(self.view().into_dyn()), true);
                Priv::from_result(d, rhs.eng.clone())
            }
        }
    )*};
}
impl_div_by_secret!(
    (&Array<f64, D>, &Priv<A>),
    (&Array<f64, D>, Priv<A>),
    (Array<f64, D>, &Priv<A>),
    (Array<f64, D>, Priv<A>)
);

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
        let d = r.binop(BinOp::Mul, Operand::Public(self.view_dyn()), false);
        Priv::from_result(d, rhs.eng.clone())
    }
}

impl<A: PrivType> Div<Priv<A>> for f64
where
    f64: Broadcast<A>,
    A: Broadcast<f64>,
{
    type Output = Priv<A>;
    #[track_caller]
    fn div(self, rhs: Priv<A>) -> Priv<A> {
        self / &rhs
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
