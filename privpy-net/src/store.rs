//! The SS store of `S1` and `S2`: uploaded input shares and unrevealed output shares.
//!
//! An embedded, crash-safe database (redb: copy-on-write B-trees, every commit
//! durable) in the server's data directory. A server that restarts finds every
//! upload it acknowledged and every output not yet fetched. Outputs are deleted
//! when their client fetches them, or by [`Store::sweep`] after the configured time.
//! Each record keeps its owner; the server checks the requesting client against it.

use crate::wire::{R, W, WireError};
use privpy_core::RingKind;
use privpy_core::share::Share;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

// Version 2 of the record layout: inputs carry their upload tag; outputs are keyed
// by (job, recipient, name).
const INPUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("inputs.v2");
const OUTPUTS: TableDefinition<(u64, &str, &str), &[u8]> = TableDefinition::new("outputs.v2");

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error (I/O, corruption, lock held by another process).
    #[error("share store: {0}")]
    Db(String),
    /// A stored record could not be decoded (corruption).
    #[error("share store record {key:?} is corrupt: {source}")]
    Corrupt {
        /// The record.
        key: String,
        /// Why it does not decode.
        source: WireError,
    },
    /// The name belongs to another client.
    #[error("input {name:?} belongs to {owner}")]
    NotOwner {
        /// The input.
        name: String,
        /// Its owner.
        owner: String,
    },
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// An uploaded input share.
#[derive(Clone, Debug)]
pub struct StoredInput {
    /// The client that uploaded it.
    pub owner: String,
    /// The upload's tag: the same on `S1` and `S2` when both hold shares from the
    /// same upload.
    pub tag: u128,
    /// Other clients that may use it in their jobs.
    pub readers: Vec<String>,
    /// This server's share.
    pub share: Share,
}

impl StoredInput {
    /// Whether `client` may use this input.
    pub fn readable_by(&self, client: &str) -> bool {
        self.owner == client || self.readers.iter().any(|r| r == client)
    }
}

/// An output share waiting for its client.
#[derive(Clone, Debug)]
pub struct StoredOutput {
    /// The client entitled to it.
    pub client: String,
    /// Seconds since the Unix epoch when it was stored.
    pub created: u64,
    /// This server's share.
    pub share: Share,
}

fn put_share(w: &mut W, s: &Share) {
    w.ring(s.ring().unwrap_or(RingKind::Z64));
    w.shape(s.shape());
    w.bytes(&s.to_bytes());
}

fn get_share(r: &mut R<'_>) -> Result<Share, WireError> {
    let ring = r.ring()?;
    let shape = r.shape()?;
    let bytes = r.bytes("share")?;
    Share::from_bytes(ring, &shape, &bytes).map_err(|e| WireError::Invalid {
        what: "share",
        reason: e.to_string(),
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The share store of one primary server.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store { .. }")
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` (file `shares.redb`).
    ///
    /// # Errors
    /// The directory cannot be created, or the database cannot be opened (for
    /// example, another server process holds it).
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| db(format!("{}: {e}", dir.display())))?;
        let path = dir.join("shares.redb");
        let db = Database::create(&path).map_err(|e| db(format!("{}: {e}", path.display())))?;
        let tx = db.begin_write().map_err(self::db)?;
        tx.open_table(INPUTS).map_err(self::db)?;
        tx.open_table(OUTPUTS).map_err(self::db)?;
        tx.commit().map_err(self::db)?;
        Ok(Store { db })
    }

    /// Stores an input share durably. The owner may replace its own input; another
    /// client's name is refused and nothing changes.
    ///
    /// # Errors
    /// [`StoreError::NotOwner`], or a database error.
    pub fn put_input(&self, name: &str, input: &StoredInput) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(INPUTS).map_err(db)?;
            if let Some(prev) = t.get(name).map_err(db)? {
                let prev = decode_input(name, prev.value())?;
                if prev.owner != input.owner {
                    return Err(StoreError::NotOwner {
                        name: name.to_string(),
                        owner: prev.owner,
                    });
                }
            }
            let mut w = W(Vec::new());
            w.str(&input.owner);
            w.u128(input.tag);
            w.strs(&input.readers);
            put_share(&mut w, &input.share);
            t.insert(name, w.0.as_slice()).map_err(db)?;
        }
        tx.commit().map_err(db)
    }

    /// The input stored under `name`.
    ///
    /// # Errors
    /// A database error or a corrupt record.
    pub fn input(&self, name: &str) -> Result<Option<StoredInput>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(INPUTS).map_err(db)?;
        match t.get(name).map_err(db)? {
            Some(v) => Ok(Some(decode_input(name, v.value())?)),
            None => Ok(None),
        }
    }

    /// Names of the stored inputs.
    ///
    /// # Errors
    /// A database error.
    pub fn input_names(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(INPUTS).map_err(db)?;
        let mut names = Vec::new();
        for entry in t.iter().map_err(db)? {
            let (k, _) = entry.map_err(db)?;
            names.push(k.value().to_string());
        }
        Ok(names)
    }

    /// Stores the output shares of a job in one transaction: `(recipient, name, share)`.
    ///
    /// # Errors
    /// A database error (then none of them is stored).
    pub fn put_outputs(
        &self,
        job: u64,
        outputs: &[(String, String, Share)],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(OUTPUTS).map_err(db)?;
            let created = now();
            for (client, name, share) in outputs {
                let mut w = W(Vec::new());
                w.str(client);
                w.u64(created);
                put_share(&mut w, share);
                t.insert((job, client.as_str(), name.as_str()), w.0.as_slice())
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// `client`'s share of output `name` of `job`, which stays stored until
    /// [`Store::release_output`] or expiry. `Ok(None)` when there is no such output
    /// for this client (another client's output of the same name is a different
    /// record, so its existence is not revealed).
    ///
    /// # Errors
    /// A database error or a corrupt record.
    pub fn output(&self, job: u64, client: &str, name: &str) -> Result<Option<Share>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(OUTPUTS).map_err(db)?;
        match t.get((job, client, name)).map_err(db)? {
            Some(v) => Ok(Some(decode_output(name, v.value())?.share)),
            None => Ok(None),
        }
    }

    /// Deletes `client`'s output `name` of `job`; whether it was there.
    ///
    /// # Errors
    /// A database error.
    pub fn release_output(&self, job: u64, client: &str, name: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let found = {
            let mut t = tx.open_table(OUTPUTS).map_err(db)?;
            t.remove((job, client, name)).map_err(db)?.is_some()
        };
        tx.commit().map_err(db)?;
        Ok(found)
    }

    /// The outputs waiting for `client`: job, name and shape.
    ///
    /// # Errors
    /// A database error or a corrupt record.
    pub fn outputs_for(&self, client: &str) -> Result<Vec<(u64, String, Vec<usize>)>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(OUTPUTS).map_err(db)?;
        let mut out = Vec::new();
        for entry in t.iter().map_err(db)? {
            let (k, v) = entry.map_err(db)?;
            let (job, who, name) = k.value();
            if who == client {
                let o = decode_output(name, v.value())?;
                out.push((job, name.to_string(), o.share.shape().to_vec()));
            }
        }
        Ok(out)
    }

    /// Number of stored outputs.
    ///
    /// # Errors
    /// A database error.
    pub fn output_count(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(OUTPUTS).map_err(db)?;
        t.len().map_err(db)
    }

    /// Deletes outputs older than `ttl`; returns how many.
    ///
    /// # Errors
    /// A database error.
    pub fn sweep(&self, ttl: Duration) -> Result<u64, StoreError> {
        self.sweep_before(now().saturating_sub(ttl.as_secs()))
    }

    /// Deletes outputs created before `cutoff` (seconds since the Unix epoch).
    fn sweep_before(&self, cutoff: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let mut removed = 0;
        {
            let mut t = tx.open_table(OUTPUTS).map_err(db)?;
            t.retain(|_, v| {
                // Corrupt records are dropped too: nobody could fetch them.
                let keep = created_at(v).is_some_and(|c| c >= cutoff);
                if !keep {
                    removed += 1;
                }
                keep
            })
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(removed)
    }
}

fn created_at(v: &[u8]) -> Option<u64> {
    let mut r = R(v);
    r.str("client").ok()?;
    r.u64("created").ok()
}

fn decode_input(name: &str, v: &[u8]) -> Result<StoredInput, StoreError> {
    let mut r = R(v);
    let parse = |r: &mut R<'_>| -> Result<StoredInput, WireError> {
        Ok(StoredInput {
            owner: r.str("owner")?,
            tag: r.u128("upload tag")?,
            readers: r.strs("readers")?,
            share: get_share(r)?,
        })
    };
    parse(&mut r).map_err(|source| StoreError::Corrupt {
        key: name.to_string(),
        source,
    })
}

fn decode_output(name: &str, v: &[u8]) -> Result<StoredOutput, StoreError> {
    let mut r = R(v);
    let parse = |r: &mut R<'_>| -> Result<StoredOutput, WireError> {
        Ok(StoredOutput {
            client: r.str("client")?,
            created: r.u64("created")?,
            share: get_share(r)?,
        })
    };
    parse(&mut r).map_err(|source| StoreError::Corrupt {
        key: name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use privpy_core::Config;

    fn share(v: &[f64]) -> Share {
        let a = ndarray::Array1::from(v.to_vec()).into_dyn();
        let [s, _] = privpy_core::share::share(&Config::fast(), &a.view()).unwrap();
        s
    }

    #[test]
    fn survives_reopen_and_enforces_owners() {
        let dir = std::env::temp_dir().join(format!("privpy-store-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = share(&[1.0, 2.0]);
        {
            let st = Store::open(&dir).unwrap();
            let inp = StoredInput {
                owner: "alice".into(),
                tag: 42,
                readers: vec!["bob".into()],
                share: s.clone(),
            };
            st.put_input("x", &inp).unwrap();
            let theft = StoredInput {
                owner: "mallory".into(),
                ..inp
            };
            assert!(matches!(
                st.put_input("x", &theft),
                Err(StoreError::NotOwner { .. })
            ));
            st.put_outputs(7, &[("alice".into(), "y".into(), s.clone())])
                .unwrap();
        }
        let st = Store::open(&dir).unwrap();
        let x = st.input("x").unwrap().unwrap();
        assert_eq!(x.owner, "alice");
        assert_eq!(x.tag, 42);
        assert!(x.readable_by("bob") && !x.readable_by("carol"));
        assert_eq!(x.share.to_bytes(), s.to_bytes());
        assert!(st.output(7, "bob", "y").unwrap().is_none());
        assert_eq!(
            st.output(7, "alice", "y").unwrap().unwrap().to_bytes(),
            s.to_bytes()
        );
        assert_eq!(
            st.outputs_for("alice").unwrap(),
            vec![(7, "y".to_string(), vec![2])]
        );
        assert!(st.outputs_for("bob").unwrap().is_empty());
        assert!(
            st.output(7, "alice", "y").unwrap().is_some(),
            "a fetch can be repeated until released"
        );
        assert!(!st.release_output(7, "bob", "y").unwrap());
        assert!(st.release_output(7, "alice", "y").unwrap());
        assert!(st.output(7, "alice", "y").unwrap().is_none(), "released");
        st.put_outputs(8, &[("alice".into(), "z".into(), s)])
            .unwrap();
        assert_eq!(st.sweep(Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(st.output_count().unwrap(), 1);
        assert_eq!(st.sweep_before(now() + 1).unwrap(), 1, "expired");
        assert_eq!(st.output_count().unwrap(), 0);
        drop(st);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
