//! [`Session`]: what a program sees of the server it runs on.

use crate::data::Data;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::priv_array::Priv;
use crate::transport::{CommStats, Role};
use crate::types::{PrivType, Public, check_rank};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// One server's handle on a running program: its inputs, where outputs go, and its
/// communication statistics. Every server runs the same program with its own
/// `Session`; the program must take the same public decisions on all of them.
pub struct Session {
    pub(crate) eng: Rc<dyn Engine>,
    pub(crate) inputs: BTreeMap<String, Data>,
    pub(crate) clients: Vec<String>,
    pub(crate) outputs: RefCell<Vec<(String, String, Data)>>,
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
    /// The secret input uploaded under `name`, as a `Priv<A>`.
    ///
    /// # Errors
    /// [`Error::UnknownInput`] when nobody uploaded it; a rank error when it does not
    /// have `A`'s number of dimensions.
    #[track_caller]
    pub fn input<A: PrivType>(&self, name: &str) -> Result<Priv<A>> {
        let data = self.inputs.get(name).ok_or_else(|| Error::UnknownInput {
            name: name.to_string(),
        })?;
        check_rank::<A>(data)?;
        Ok(Priv::new(data.clone(), self.eng.clone()))
    }

    /// Marks `value` as output `name` for `client`; only that client can open it.
    /// The servers keep their shares; nothing is revealed to any server.
    ///
    /// # Errors
    /// [`Error::UnknownClient`] for a client that is not registered;
    /// [`Error::DuplicateOutput`] when the name was already used for that client.
    #[track_caller]
    pub fn output<A: PrivType>(&self, client: &str, name: &str, value: &Priv<A>) -> Result<()> {
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
        outs.push((client.to_string(), name.to_string(), value.data.clone()));
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
        let d = crate::priv_array::or_abort(self.eng.constant(&a.view()));
        Priv::new(d, self.eng.clone())
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
