//! Loaders for the evaluation data sets, with validation: a malformed file is an
//! error naming the file and the place, never a panic or silent garbage.
//!
//! Files ending in `.gz` are decompressed. [`data_dir`] finds the full sets;
//! [`shipped`] names the slices in the repository's `data/` folder.

use ndarray::{Array1, Array2};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What went wrong reading a data file.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file's contents are not in the expected format.
    #[error("{path}: {place}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Where: a line number or a byte offset.
        place: String,
        /// What is wrong.
        reason: String,
    },
}

fn format_err(path: &Path, place: impl Into<String>, reason: impl Into<String>) -> DataError {
    DataError::Format {
        path: path.to_path_buf(),
        place: place.into(),
        reason: reason.into(),
    }
}

/// The bytes of a file, decompressed when its name ends in `.gz`.
///
/// # Errors
/// [`DataError::Io`] when it cannot be read or decompressed.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(io)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// The directory with the full data sets: `$PRIVPY_DATA`, else `shared/data` beside
/// the repository when it exists.
pub fn data_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("PRIVPY_DATA") {
        return Some(PathBuf::from(d));
    }
    let candidate = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    candidate.is_dir().then_some(candidate)
}

/// A file of the slices shipped in the repository (`data/…`).
pub fn shipped(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(relative)
}

/// MNIST images (`n × 784`, pixels scaled to `[0, 1]`) and labels.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// One image per row, 28×28 pixels row-major, divided by 255.
    pub images: Array2<f64>,
    /// The digit of each image.
    pub labels: Array1<u8>,
}

fn be_u32(b: &[u8], at: usize, path: &Path) -> Result<u32, DataError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| {
            format_err(
                path,
                format!("byte {at}"),
                "file ends inside the IDX header",
            )
        })
}

/// Reads MNIST from IDX files (LeCun's format; `.gz` allowed), at most `limit` images.
///
/// # Errors
/// A missing file, a wrong magic number (0x803 for images, 0x801 for labels), image
/// sizes other than 28×28, a count that the file's length does not match, counts that
/// differ between the two files, or a label above 9.
pub fn load_mnist(images: &Path, labels: &Path, limit: Option<usize>) -> Result<Mnist, DataError> {
    let ib = read_bytes(images)?;
    let lb = read_bytes(labels)?;
    if be_u32(&ib, 0, images)? != 0x803 {
        return Err(format_err(
            images,
            "byte 0",
            "not an IDX image file (magic is not 0x00000803)",
        ));
    }
    if be_u32(&lb, 0, labels)? != 0x801 {
        return Err(format_err(
            labels,
            "byte 0",
            "not an IDX label file (magic is not 0x00000801)",
        ));
    }
    let n = be_u32(&ib, 4, images)? as usize;
    let (rows, cols) = (be_u32(&ib, 8, images)?, be_u32(&ib, 12, images)?);
    if (rows, cols) != (28, 28) {
        return Err(format_err(
            images,
            "byte 8",
            format!("images are {rows}x{cols}, expected 28x28"),
        ));
    }
    if ib.len() != 16 + n * 784 {
        return Err(format_err(
            images,
            "header",
            format!(
                "{n} images need {} bytes, the file has {}",
                16 + n * 784,
                ib.len()
            ),
        ));
    }
    let nl = be_u32(&lb, 4, labels)? as usize;
    if lb.len() != 8 + nl {
        return Err(format_err(
            labels,
            "header",
            format!(
                "{nl} labels need {} bytes, the file has {}",
                8 + nl,
                lb.len()
            ),
        ));
    }
    if nl != n {
        return Err(format_err(
            labels,
            "header",
            format!("{nl} labels for {n} images"),
        ));
    }
    let m = limit.map_or(n, |l| l.min(n));
    let label_bytes = &lb[8..8 + m];
    if let Some(k) = label_bytes.iter().position(|&v| v > 9) {
        return Err(format_err(
            labels,
            format!("label {k}"),
            format!("label {} is not a digit", label_bytes[k]),
        ));
    }
    let px = Array2::from_shape_fn((m, 784), |(i, j)| ib[16 + i * 784 + j] as f64 / 255.0);
    Ok(Mnist {
        images: px,
        labels: Array1::from(label_bytes.to_vec()),
    })
}

/// A LIBSVM data set as a dense matrix with a trailing bias column of ones, and
/// labels mapped to `{0, 1}` (`+1 → 1`, `-1`/`0 → 0`).
#[derive(Clone, Debug)]
pub struct Libsvm {
    /// `n × (dims + 1)`: the features, then 1.
    pub x: Array2<f64>,
    /// 0 or 1 per row.
    pub y: Array1<f64>,
}

/// Reads a LIBSVM file (`label index:value …`, indices from 1), at most `limit` rows,
/// with the dimension fixed at `dims` (Adult/a9a: 123; the test file never uses 123).
///
/// # Errors
/// A malformed line (naming it): a label other than ±1/0, a pair that is not
/// `index:value`, an index of 0 or above `dims`, a value that is not a finite number.
pub fn load_libsvm(path: &Path, dims: usize, limit: Option<usize>) -> Result<Libsvm, DataError> {
    let bytes = read_bytes(path)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| format_err(path, "file", format!("not UTF-8: {e}")))?;
    let mut xs = Vec::new();
    let mut ys = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        if limit.is_some_and(|l| ys.len() >= l) {
            break;
        }
        let place = || format!("line {}", ln + 1);
        let mut parts = line.split_whitespace();
        let Some(label) = parts.next() else { continue };
        let y = match label {
            "+1" | "1" => 1.0,
            "-1" | "0" => 0.0,
            other => {
                return Err(format_err(
                    path,
                    place(),
                    format!("label {other:?} is not +1, -1 or 0"),
                ));
            }
        };
        let mut row = vec![0.0; dims + 1];
        row[dims] = 1.0;
        for p in parts {
            let (i, v) = p
                .split_once(':')
                .ok_or_else(|| format_err(path, place(), format!("{p:?} is not index:value")))?;
            let i: usize = i
                .parse()
                .map_err(|_| format_err(path, place(), format!("index {i:?} is not a number")))?;
            if i == 0 || i > dims {
                return Err(format_err(
                    path,
                    place(),
                    format!("index {i} is outside 1..={dims}"),
                ));
            }
            let v: f64 = v
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| {
                    format_err(path, place(), format!("value {v:?} is not a finite number"))
                })?;
            row[i - 1] = v;
        }
        xs.extend(row);
        ys.push(y);
    }
    let n = ys.len();
    Ok(Libsvm {
        x: Array2::from_shape_vec((n, dims + 1), xs)
            .map_err(|e| format_err(path, "file", e.to_string()))?,
        y: Array1::from(ys),
    })
}

/// The Credit Card Fraud set: the 28 PCA features and `Amount` (29 columns, plus a
/// bias column of ones), and `Class` (1 = fraud).
#[derive(Clone, Debug)]
pub struct CreditCard {
    /// `n × 30`: V1..V28, Amount, then 1.
    pub x: Array2<f64>,
    /// 0 or 1 per row.
    pub y: Array1<f64>,
}

/// Reads `creditcard.csv` (ULB/Kaggle; `.gz` allowed), at most `limit` rows.
///
/// # Errors
/// A header other than `"Time","V1",…,"V28","Amount","Class"`, a row without 31
/// fields, a field that is not a finite number, or a class other than 0/1 (naming the line).
pub fn load_creditcard(path: &Path, limit: Option<usize>) -> Result<CreditCard, DataError> {
    let text = String::from_utf8(read_bytes(path)?)
        .map_err(|e| format_err(path, "file", format!("not UTF-8: {e}")))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split(',')
        .map(|h| h.trim_matches('"').to_string())
        .collect();
    let mut want = vec!["Time".to_string()];
    want.extend((1..=28).map(|k| format!("V{k}")));
    want.extend(["Amount".to_string(), "Class".to_string()]);
    if header != want {
        return Err(format_err(
            path,
            "line 1",
            "header is not \"Time\",\"V1\",…,\"V28\",\"Amount\",\"Class\"",
        ));
    }
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for (ln, line) in lines.enumerate() {
        if limit.is_some_and(|l| ys.len() >= l) {
            break;
        }
        let place = || format!("line {}", ln + 2);
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 31 {
            return Err(format_err(
                path,
                place(),
                format!("{} fields, expected 31", f.len()),
            ));
        }
        let num = |s: &str| -> Result<f64, DataError> {
            s.trim_matches('"')
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format_err(path, place(), format!("{s:?} is not a finite number")))
        };
        for s in &f[1..30] {
            xs.push(num(s)?);
        }
        xs.push(1.0);
        let c = num(f[30])?;
        if c != 0.0 && c != 1.0 {
            return Err(format_err(
                path,
                place(),
                format!("class {c} is not 0 or 1"),
            ));
        }
        ys.push(c);
    }
    let n = ys.len();
    Ok(CreditCard {
        x: Array2::from_shape_vec((n, 30), xs)
            .map_err(|e| format_err(path, "file", e.to_string()))?,
        y: Array1::from(ys),
    })
}

/// Ratings as `(user, item, rating)` with 0-based ids, and the numbers of users and items.
#[derive(Clone, Debug)]
pub struct Ratings {
    /// `(user, item, rating)` triples.
    pub triples: Vec<(usize, usize, f64)>,
    /// One more than the largest user id.
    pub users: usize,
    /// One more than the largest item id.
    pub items: usize,
}

impl Ratings {
    /// The dense rating matrix (`users × items`, 0 where unrated) and its 0/1 mask.
    pub fn dense(&self) -> (Array2<f64>, Array2<f64>) {
        let mut r = Array2::zeros((self.users, self.items));
        let mut m = Array2::zeros((self.users, self.items));
        for &(u, i, v) in &self.triples {
            r[[u, i]] = v;
            m[[u, i]] = 1.0;
        }
        (r, m)
    }
}

/// Reads MovieLens ratings: the 100K `u.data` (tab-separated `user item rating time`)
/// or the 1M `ratings.dat` (`user::item::rating::time`), detected per line.
///
/// # Errors
/// A line without four fields, an id of 0 or not a number, or a rating outside 1..=5.
pub fn load_movielens(path: &Path) -> Result<Ratings, DataError> {
    let text = String::from_utf8(read_bytes(path)?)
        .map_err(|e| format_err(path, "file", format!("not UTF-8: {e}")))?;
    let mut out = Ratings {
        triples: Vec::new(),
        users: 0,
        items: 0,
    };
    for (ln, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let place = || format!("line {}", ln + 1);
        let f: Vec<&str> = if line.contains("::") {
            line.split("::").collect()
        } else {
            line.split('\t').collect()
        };
        if f.len() != 4 {
            return Err(format_err(
                path,
                place(),
                format!("{} fields, expected user, item, rating, timestamp", f.len()),
            ));
        }
        let id = |s: &str| -> Result<usize, DataError> {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&v| v > 0)
                .ok_or_else(|| format_err(path, place(), format!("{s:?} is not a positive id")))
        };
        let (u, i) = (id(f[0])?, id(f[1])?);
        let r: f64 = f[2]
            .trim()
            .parse()
            .ok()
            .filter(|r| (1.0..=5.0).contains(r))
            .ok_or_else(|| {
                format_err(path, place(), format!("rating {:?} is not in 1..=5", f[2]))
            })?;
        out.users = out.users.max(u);
        out.items = out.items.max(i);
        out.triples.push((u - 1, i - 1, r));
    }
    Ok(out)
}

/// The MNIST training set (60,000 images) from a data directory in the layout of
/// `shared/data/` (`mnist/train-*-ubyte.gz`), at most `limit` images.
///
/// # Errors
/// As [`load_mnist`].
pub fn mnist_train(dir: &Path, limit: Option<usize>) -> Result<Mnist, DataError> {
    load_mnist(
        &dir.join("mnist/train-images-idx3-ubyte.gz"),
        &dir.join("mnist/train-labels-idx1-ubyte.gz"),
        limit,
    )
}

/// The MNIST test set (10,000 images) from a data directory, at most `limit` images.
///
/// # Errors
/// As [`load_mnist`].
pub fn mnist_test(dir: &Path, limit: Option<usize>) -> Result<Mnist, DataError> {
    load_mnist(
        &dir.join("mnist/t10k-images-idx3-ubyte.gz"),
        &dir.join("mnist/t10k-labels-idx1-ubyte.gz"),
        limit,
    )
}
