//! Neural networks declared in Rust, with their weights read from a PyTorch `state_dict`.
//!
//! [`Sequential`] declares a network layer by layer, as `torch.nn.Sequential` would,
//! with the name each layer has in the PyTorch module (`"conv1"`, `"fc2"`, or `"0"`,
//! `"3"` in an `nn.Sequential`). [`Sequential::build`] checks the declaration and
//! infers every layer's shape. [`Model::load_safetensors`] reads a state dict saved by
//! `safetensors.torch.save_file(model.state_dict(), path)`, checks it against the
//! declaration before anything is shared (every missing, unexpected or wrongly shaped
//! tensor is listed in one [`ModelError::StateDict`]), and prepares the weights.
//!
//! # Layers and their tensors
//!
//! | builder call | PyTorch module | tensors (PyTorch names and layouts) |
//! |---|---|---|
//! | [`normalize`](Sequential::normalize)`(mean, std)` | `transforms.Normalize` | none (public, part of the declaration) |
//! | [`linear`](Sequential::linear)`(name, out)` | `nn.Linear(in, out)` | `name.weight` `(out, in)`, `name.bias` `(out)` |
//! | [`conv2d`](Sequential::conv2d)`(name, out, k)` | `nn.Conv2d(in, out, k)` | `name.weight` `(out, in, k, k)`, `name.bias` `(out)` |
//! | [`batch_norm`](Sequential::batch_norm)`(name)` | `nn.BatchNorm1d/2d(c)` (evaluation mode) | `name.weight`, `name.bias`, `name.running_mean`, `name.running_var`, each `(c)`; `name.num_batches_tracked` is ignored |
//! | [`relu`](Sequential::relu)`()`, [`sigmoid`](Sequential::sigmoid)`()` | `nn.ReLU`, `nn.Sigmoid` | none |
//! | [`max_pool`](Sequential::max_pool)`(k)`, [`avg_pool`](Sequential::avg_pool)`(k)`, [`sum_pool`](Sequential::sum_pool)`(k)` | `nn.MaxPool2d(k)`, `nn.AvgPool2d(k)`, `k²·AvgPool2d(k)` | none |
//! | [`flatten`](Sequential::flatten)`()` | `nn.Flatten` | none |
//! | [`rbf`](Sequential::rbf)`(name, classes)` | LeNet-5's Euclidean RBF output | `name.weight` `(classes, features)`: one prototype per row |
//!
//! [`stride`](Sequential::stride), [`padding`](Sequential::padding),
//! [`no_bias`](Sequential::no_bias) and [`eps`](Sequential::eps) change the layer just
//! added (PyTorch's `stride=`, `padding=`, `bias=False`, `eps=`). Pooling has no padding
//! and drops incomplete windows (PyTorch's defaults). A sample is one row of the input
//! matrix: the input shape declared in [`Sequential::new`] (`[features]` or
//! `[channels, height, width]`), flattened in row-major order as `x.flatten(1)` in
//! PyTorch.
//!
//! # Preparation
//!
//! The model owner, who holds the weights in the clear, prepares them once
//! ([`Model::prepare`]) so that the servers compute as little as possible on secrets:
//! - `Linear` and `Conv2d` weights are laid out for one secret matrix product each:
//!   `(in, out)` and `(in·k·k, out)` (an im2col product).
//! - A batch normalization directly after a `Linear` or `Conv2d` is folded into that
//!   layer's weights and bias (`scale = γ/√(σ² + ε)`, `w·scale`,
//!   `(b − μ)·scale + β`), in the clear and in `f64`. Elsewhere it becomes a secret
//!   per-channel scale and shift.
//! - The input normalization is folded into the first layer when that is a `Linear`
//!   (possibly after `flatten`) or a `Conv2d`. Zero padding then pads with the channel's
//!   mean, which is what zero is after normalization, so the fold is exact. Otherwise the
//!   servers apply it as a public affine map, which costs no communication.
//! - The RBF output becomes a product with `2·Pᵀ` and a bias `−‖p_c‖²`. Its logit for
//!   class `c` is `‖x‖² − ‖x − p_c‖²`: the nearest prototype has the largest logit.
//!
//! Every decision depends on the declaration alone, which the servers share; only the
//! values are secret. The weights are re-checked for shape when a program loads them
//! ([`Model::secret_weights`]), so an upload of the wrong tensor is refused, never run.
//!
//! # Example
//!
//! ```
//! use privpy_ml::nn::Sequential;
//! use privpy_ml::prelude::*;
//! use std::collections::BTreeMap;
//!
//! let model = Sequential::new(&[4]).linear("fc1", 3).relu().linear("fc2", 2).build()?;
//! // A state dict with PyTorch's names and layouts (here written by hand).
//! let mut sd = BTreeMap::new();
//! sd.insert("fc1.weight".to_string(), Array2::from_shape_fn((3, 4), |(i, j)| 0.1 * (i + j) as f64 - 0.2).into_dyn());
//! sd.insert("fc1.bias".to_string(), array![0.1, -0.1, 0.0].into_dyn());
//! sd.insert("fc2.weight".to_string(), array![[1.0, -1.0, 0.5], [-0.5, 0.25, 1.0]].into_dyn());
//! sd.insert("fc2.bias".to_string(), array![0.0, 0.1].into_dyn());
//! let weights = model.prepare(&sd)?;
//!
//! let x = array![[1.0, 2.0, -1.0, 0.5], [0.0, -1.0, 3.0, 1.0]];
//! let mut cluster = LocalCluster::new(Config::default());
//! let (owner, user) = (cluster.client("owner"), cluster.client("user"));
//! weights.upload(&mut cluster, &owner, "net")?;
//! cluster.upload(&user, "x", &x)?;
//! let run = cluster.run(|s| {
//!     let net = model.secret_weights(s, "net")?;
//!     let x = s.input::<Array2<f64>>("x")?;
//!     s.output("user", "logits", &model.logits(&net, &x)?)
//! })?;
//! let logits: Array2<f64> = run.open(&user, "logits")?;
//! let clear = model.clear_logits(&weights, &x)?;
//! assert!((&logits - &clear).iter().all(|d| d.abs() < 1e-4));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::data::DataError;
use crate::model;
use crate::prelude::*;
use ndarray::{ArrayD, Ix2, IxDyn};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Absolute tolerance of the sigmoid in inference (see [`Priv::sigmoid_with_tolerance`]).
pub const SIGMOID_TOLERANCE: f64 = crate::programs::INFERENCE_TOLERANCE;

/// Samples per step of [`Model::logits`] unless [`Model::with_batch_chunk`] changes it:
/// larger batches run in chunks of this many rows, which bounds each message.
pub const DEFAULT_BATCH_CHUNK: usize = 64;

/// One layer of a [`Sequential`] declaration (see the [module docs](self) for the
/// tensors each takes).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Layer {
    /// A fully connected layer, PyTorch's `nn.Linear`.
    Linear {
        /// The module's name in the state dict.
        name: String,
        /// Output features.
        outputs: usize,
        /// Whether it has a bias (`bias=True`, the default).
        bias: bool,
    },
    /// A 2-D convolution with a square kernel, PyTorch's `nn.Conv2d`.
    Conv2d {
        /// The module's name in the state dict.
        name: String,
        /// Output channels.
        outputs: usize,
        /// Kernel size.
        kernel: usize,
        /// Stride (default 1).
        stride: usize,
        /// Zero padding on each side (default 0).
        padding: usize,
        /// Whether it has a bias.
        bias: bool,
    },
    /// Batch normalization with running statistics (evaluation mode), over the
    /// channels of a `[c, h, w]` or the features of a `[c]` activation.
    BatchNorm {
        /// The module's name in the state dict.
        name: String,
        /// `ε` (default `1e-5`, PyTorch's).
        eps: f64,
    },
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + e^-x)`, to [`SIGMOID_TOLERANCE`].
    Sigmoid,
    /// Maximum over `kernel × kernel` windows.
    MaxPool {
        /// Window size.
        kernel: usize,
        /// Stride (default: the window size).
        stride: usize,
    },
    /// Mean over `kernel × kernel` windows.
    AvgPool {
        /// Window size.
        kernel: usize,
        /// Stride (default: the window size).
        stride: usize,
    },
    /// Sum over `kernel × kernel` windows (LeNet-5's subsampling before its scale).
    SumPool {
        /// Window size.
        kernel: usize,
        /// Stride (default: the window size).
        stride: usize,
    },
    /// `[c, h, w]` to `[c·h·w]`.
    Flatten,
    /// LeNet-5's Euclidean RBF output: logit `‖x‖² − ‖x − p_c‖²` for each prototype `p_c`.
    Rbf {
        /// The module's name in the state dict.
        name: String,
        /// Number of classes (prototypes).
        classes: usize,
    },
}

impl Layer {
    fn kind(&self) -> &'static str {
        match self {
            Layer::Linear { .. } => "linear",
            Layer::Conv2d { .. } => "conv2d",
            Layer::BatchNorm { .. } => "batch_norm",
            Layer::Relu => "relu",
            Layer::Sigmoid => "sigmoid",
            Layer::MaxPool { .. } => "max_pool",
            Layer::AvgPool { .. } => "avg_pool",
            Layer::SumPool { .. } => "sum_pool",
            Layer::Flatten => "flatten",
            Layer::Rbf { .. } => "rbf",
        }
    }

    /// The layer's name in the state dict, for layers with tensors.
    pub fn name(&self) -> Option<&str> {
        match self {
            Layer::Linear { name, .. }
            | Layer::Conv2d { name, .. }
            | Layer::BatchNorm { name, .. }
            | Layer::Rbf { name, .. } => Some(name),
            _ => None,
        }
    }

    fn label(&self) -> String {
        match self.name() {
            Some(n) => format!("{} {n:?}", self.kind()),
            None => self.kind().to_string(),
        }
    }
}

/// A tensor whose shape differs from what the declaration expects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrongShape {
    /// The tensor's name in the state dict.
    pub tensor: String,
    /// The declared layer it belongs to (for example `conv2d "conv1"`).
    pub layer: String,
    /// The shape the declaration implies.
    pub expected: Vec<usize>,
    /// The shape in the file.
    pub actual: Vec<usize>,
}

/// What can go wrong declaring a model or loading its weights.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// The declaration itself is inconsistent (a layer that does not fit the shape
    /// before it, a modifier on the wrong layer, a bad normalization).
    #[error("layer {index} ({layer}): {reason}")]
    Declaration {
        /// Position of the layer in the declaration (0-based; the input is "input").
        index: usize,
        /// The layer (for example `conv2d "conv1"`).
        layer: String,
        /// What is wrong.
        reason: String,
    },
    /// The state dict does not match the declaration. Every problem is listed.
    #[error("{}", describe_mismatch(missing, unexpected, wrong_shapes))]
    StateDict {
        /// Tensors the declaration needs that the file lacks.
        missing: Vec<String>,
        /// Tensors in the file that no declared layer takes.
        unexpected: Vec<String>,
        /// Tensors of the wrong shape.
        wrong_shapes: Vec<WrongShape>,
    },
    /// A tensor holds a value the model cannot use (NaN, ±inf, a variance whose
    /// `σ² + ε` is not positive).
    #[error("tensor {tensor:?}: {reason}")]
    BadValue {
        /// The tensor.
        tensor: String,
        /// What is wrong.
        reason: String,
    },
    /// The input's shape does not match the declaration.
    #[error(
        "input of shape {actual:?}: the model takes rows of {expected} values (one flattened sample each)"
    )]
    Input {
        /// Values per sample.
        expected: usize,
        /// The shape given.
        actual: Vec<usize>,
    },
    /// The file could not be read or is not a safetensors file.
    #[error(transparent)]
    File(#[from] DataError),
    /// The cleartext reference run failed.
    #[error(transparent)]
    Run(#[from] Error),
}

fn describe_mismatch(missing: &[String], unexpected: &[String], wrong: &[WrongShape]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!("missing tensors: {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        parts.push(format!("unexpected tensors: {}", unexpected.join(", ")));
    }
    for w in wrong {
        parts.push(format!(
            "{} of {} has shape {:?}, expected {:?}",
            w.tensor, w.layer, w.actual, w.expected
        ));
    }
    format!(
        "the state dict does not match the model: {}",
        parts.join("; ")
    )
}

/// A network declared layer by layer (see the [module docs](self)). Errors in the
/// declaration are reported by [`Sequential::build`].
#[derive(Clone, Debug)]
pub struct Sequential {
    input: Vec<usize>,
    normalize: Option<(Vec<f64>, Vec<f64>)>,
    layers: Vec<Layer>,
    error: Option<(usize, String, String)>,
}

impl Sequential {
    /// A network taking samples of shape `input`: `[features]` or
    /// `[channels, height, width]`.
    pub fn new(input: &[usize]) -> Self {
        Sequential {
            input: input.to_vec(),
            normalize: None,
            layers: Vec::new(),
            error: None,
        }
    }

    fn fail(mut self, layer: String, reason: String) -> Self {
        if self.error.is_none() {
            self.error = Some((self.layers.len(), layer, reason));
        }
        self
    }

    fn push(mut self, layer: Layer) -> Self {
        self.layers.push(layer);
        self
    }

    /// Input preprocessing `(x − mean) / std`, per channel (one value for every channel,
    /// or one per channel; per feature for a `[features]` input). Must come before the
    /// first layer. Folded into the first layer where possible (see the module docs).
    pub fn normalize(self, mean: &[f64], std: &[f64]) -> Self {
        if !self.layers.is_empty() {
            return self.fail(
                "normalize".into(),
                "normalize must be declared before the first layer".into(),
            );
        }
        let mut s = self;
        s.normalize = Some((mean.to_vec(), std.to_vec()));
        s
    }

    /// A fully connected layer with `outputs` features (`nn.Linear`), named `name`.
    pub fn linear(self, name: &str, outputs: usize) -> Self {
        self.push(Layer::Linear {
            name: name.into(),
            outputs,
            bias: true,
        })
    }

    /// A convolution with `outputs` channels and a `kernel × kernel` window
    /// (`nn.Conv2d`), stride 1 and no padding unless changed.
    pub fn conv2d(self, name: &str, outputs: usize, kernel: usize) -> Self {
        self.push(Layer::Conv2d {
            name: name.into(),
            outputs,
            kernel,
            stride: 1,
            padding: 0,
            bias: true,
        })
    }

    /// Batch normalization over the channels (`nn.BatchNorm2d`) or features
    /// (`nn.BatchNorm1d`), with `ε = 1e-5`.
    pub fn batch_norm(self, name: &str) -> Self {
        self.push(Layer::BatchNorm {
            name: name.into(),
            eps: 1e-5,
        })
    }

    /// `nn.ReLU`.
    pub fn relu(self) -> Self {
        self.push(Layer::Relu)
    }

    /// `nn.Sigmoid`.
    pub fn sigmoid(self) -> Self {
        self.push(Layer::Sigmoid)
    }

    /// `nn.MaxPool2d(kernel)`.
    pub fn max_pool(self, kernel: usize) -> Self {
        self.push(Layer::MaxPool {
            kernel,
            stride: kernel,
        })
    }

    /// `nn.AvgPool2d(kernel)`.
    pub fn avg_pool(self, kernel: usize) -> Self {
        self.push(Layer::AvgPool {
            kernel,
            stride: kernel,
        })
    }

    /// Sum pooling: `kernel²` times `nn.AvgPool2d(kernel)`.
    pub fn sum_pool(self, kernel: usize) -> Self {
        self.push(Layer::SumPool {
            kernel,
            stride: kernel,
        })
    }

    /// `nn.Flatten`: `[c, h, w]` to `[c·h·w]`.
    pub fn flatten(self) -> Self {
        self.push(Layer::Flatten)
    }

    /// LeNet-5's RBF output with `classes` prototypes (`name.weight`, one per row).
    pub fn rbf(self, name: &str, classes: usize) -> Self {
        self.push(Layer::Rbf {
            name: name.into(),
            classes,
        })
    }

    /// Sets the stride of the convolution or pooling just added.
    pub fn stride(mut self, stride: usize) -> Self {
        match self.layers.last_mut() {
            Some(
                Layer::Conv2d { stride: s, .. }
                | Layer::MaxPool { stride: s, .. }
                | Layer::AvgPool { stride: s, .. }
                | Layer::SumPool { stride: s, .. },
            ) => {
                *s = stride;
                self
            }
            _ => self.misplaced("stride", "a convolution or pooling layer"),
        }
    }

    /// Sets the zero padding of the convolution just added.
    pub fn padding(mut self, padding: usize) -> Self {
        match self.layers.last_mut() {
            Some(Layer::Conv2d { padding: p, .. }) => {
                *p = padding;
                self
            }
            _ => self.misplaced("padding", "a convolution"),
        }
    }

    /// Removes the bias of the linear layer or convolution just added (`bias=False`).
    pub fn no_bias(mut self) -> Self {
        match self.layers.last_mut() {
            Some(Layer::Linear { bias, .. } | Layer::Conv2d { bias, .. }) => {
                *bias = false;
                self
            }
            _ => self.misplaced("no_bias", "a linear layer or convolution"),
        }
    }

    /// Sets `ε` of the batch normalization just added.
    pub fn eps(mut self, eps: f64) -> Self {
        match self.layers.last_mut() {
            Some(Layer::BatchNorm { eps: e, .. }) => {
                *e = eps;
                self
            }
            _ => self.misplaced("eps", "a batch normalization"),
        }
    }

    fn misplaced(self, what: &str, needs: &str) -> Self {
        let last = self.layers.last().map_or("input".into(), Layer::label);
        let reason = format!("{what} applies to {needs}, not to {last}");
        let mut s = self.fail(what.into(), reason);
        // The modifier belongs to the previous layer's position.
        if let Some(e) = s.error.as_mut() {
            e.0 = e.0.saturating_sub(1);
        }
        s
    }

    /// Checks the declaration and infers every layer's shape.
    ///
    /// # Errors
    /// [`ModelError::Declaration`] naming the first layer that does not fit: a
    /// convolution or pooling on a flat activation, a linear layer on an unflattened one,
    /// a window larger than its input, a zero size or stride, a modifier after the wrong
    /// layer, a duplicate name, a normalization of the wrong length or with a
    /// non-positive or non-finite `std`, or an input shape other than `[f]` or `[c, h, w]`.
    pub fn build(self) -> Result<Model, ModelError> {
        if let Some((index, layer, reason)) = self.error {
            return Err(ModelError::Declaration {
                index,
                layer,
                reason,
            });
        }
        let decl = |index: usize, layer: &str, reason: String| ModelError::Declaration {
            index,
            layer: layer.to_string(),
            reason,
        };
        if !matches!(self.input.len(), 1 | 3) || self.input.contains(&0) {
            return Err(decl(
                0,
                "input",
                format!(
                    "the input shape must be [features] or [channels, height, width] with no zero length, not {:?}",
                    self.input
                ),
            ));
        }
        if let Some((mean, std)) = &self.normalize {
            let channels = self.input[0];
            for (what, v) in [("mean", mean), ("std", std)] {
                if v.len() != 1 && v.len() != channels {
                    return Err(decl(
                        0,
                        "normalize",
                        format!("{what} has {} values; 1 or {channels} expected", v.len()),
                    ));
                }
            }
            if mean.iter().any(|m| !m.is_finite()) {
                return Err(decl(0, "normalize", "mean must be finite".into()));
            }
            if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(decl(
                    0,
                    "normalize",
                    "std must be finite and positive".into(),
                ));
            }
        }
        let mut shapes = vec![self.input.clone()];
        let mut names = BTreeSet::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let at = shapes[i].clone();
            let err = |reason: String| decl(i, &layer.label(), reason);
            if let Some(n) = layer.name() {
                if n.is_empty() {
                    return Err(err("the name is empty".into()));
                }
                if !names.insert(n.to_string()) {
                    return Err(err(format!("the name {n:?} is used twice")));
                }
            }
            let window = |k: usize, s: usize, p: usize| -> Result<(usize, usize), ModelError> {
                if at.len() != 3 {
                    return Err(err(format!(
                        "needs a [channels, height, width] activation, got {at:?}"
                    )));
                }
                if k == 0 || s == 0 {
                    return Err(err("kernel size and stride must be at least 1".into()));
                }
                let (h, w) = (at[1] + 2 * p, at[2] + 2 * p);
                if k > h || k > w {
                    return Err(err(format!(
                        "a {k}×{k} window does not fit a {}×{} activation",
                        h, w
                    )));
                }
                Ok(((h - k) / s + 1, (w - k) / s + 1))
            };
            let flat = |what: &str| -> Result<usize, ModelError> {
                match at.as_slice() {
                    [f] => Ok(*f),
                    _ => Err(err(format!(
                        "{what} needs a flat activation, got {at:?}; add flatten() before it"
                    ))),
                }
            };
            let out = match layer {
                Layer::Linear { outputs, .. } => {
                    flat("a linear layer")?;
                    if *outputs == 0 {
                        return Err(err("needs at least one output".into()));
                    }
                    vec![*outputs]
                }
                Layer::Rbf { classes, .. } => {
                    flat("the RBF output")?;
                    if *classes == 0 {
                        return Err(err("needs at least one class".into()));
                    }
                    vec![*classes]
                }
                Layer::Conv2d {
                    outputs,
                    kernel,
                    stride,
                    padding,
                    ..
                } => {
                    if *outputs == 0 {
                        return Err(err("needs at least one output channel".into()));
                    }
                    let (ho, wo) = window(*kernel, *stride, *padding)?;
                    vec![*outputs, ho, wo]
                }
                Layer::MaxPool { kernel, stride }
                | Layer::AvgPool { kernel, stride }
                | Layer::SumPool { kernel, stride } => {
                    let (ho, wo) = window(*kernel, *stride, 0)?;
                    vec![at[0], ho, wo]
                }
                Layer::BatchNorm { eps, .. } => {
                    if !(eps.is_finite() && *eps >= 0.0) {
                        return Err(err(format!(
                            "eps must be finite and non-negative, not {eps}"
                        )));
                    }
                    at.clone()
                }
                Layer::Relu | Layer::Sigmoid => at.clone(),
                Layer::Flatten => vec![at.iter().product()],
            };
            shapes.push(out);
        }
        if self.layers.is_empty() {
            return Err(decl(0, "input", "the model has no layers".into()));
        }
        let plan = plan(&self.layers, &shapes, self.normalize.as_ref());
        Ok(Model {
            input: self.input,
            normalize: self.normalize,
            layers: self.layers,
            shapes,
            plan,
            chunk: DEFAULT_BATCH_CHUNK,
        })
    }
}

/// A tensor the servers hold: its suffix after the upload prefix and its shape.
#[derive(Clone, Debug)]
struct Slot {
    suffix: String,
    shape: Vec<usize>,
}

/// One step of the servers' computation, derived from the declaration alone.
#[derive(Clone, Debug)]
enum Step {
    /// `x·w + b` with secret `w` (in, out) and `b` (out), slots `w`, `b`.
    Affine {
        w: usize,
        b: usize,
    },
    /// im2col of `[c, h, w]` and a product with secret `(c·k·k, out)` weights.
    Conv {
        w: usize,
        b: usize,
        input: [usize; 3],
        outputs: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        /// Per channel, the raw value padding stands for (the mean when normalization
        /// was folded in, else 0).
        pad: Vec<f64>,
    },
    /// Secret per-channel `x·scale + shift`.
    ChannelAffine {
        scale: usize,
        shift: usize,
    },
    /// Public per-channel `x·scale + shift` (an unfolded normalization).
    PublicAffine {
        scale: Vec<f64>,
        shift: Vec<f64>,
    },
    Relu,
    Sigmoid,
    MaxPool {
        kernel: usize,
        stride: usize,
    },
    /// Sum over windows, times `scale`.
    Pool {
        kernel: usize,
        stride: usize,
        scale: f64,
    },
    Flatten,
}

/// The servers' plan: steps and the secret tensors they use (in upload order).
#[derive(Clone, Debug)]
struct Plan {
    steps: Vec<Step>,
    slots: Vec<Slot>,
    /// Whether the normalization is folded into the first weighted layer.
    folded_normalization: bool,
}

fn per_channel(v: &[f64], channels: usize) -> Vec<f64> {
    if v.len() == 1 {
        vec![v[0]; channels]
    } else {
        v.to_vec()
    }
}

/// Whether the normalization folds into the first weighted layer: layers[0] is
/// Linear or Conv2d, or Flatten then Linear.
fn normalization_target(layers: &[Layer]) -> Option<usize> {
    match layers {
        [Layer::Linear { .. } | Layer::Conv2d { .. }, ..] => Some(0),
        [Layer::Flatten, Layer::Linear { .. }, ..] => Some(1),
        _ => None,
    }
}

fn plan(layers: &[Layer], shapes: &[Vec<usize>], normalize: Option<&(Vec<f64>, Vec<f64>)>) -> Plan {
    let mut slots = Vec::new();
    let mut slot = |suffix: String, shape: Vec<usize>| {
        slots.push(Slot { suffix, shape });
        slots.len() - 1
    };
    let mut steps = Vec::new();
    let fold_target = normalize.and(normalization_target(layers));
    if let (Some((mean, std)), None) = (normalize, fold_target) {
        let c = shapes[0][0];
        let (m, s) = (per_channel(mean, c), per_channel(std, c));
        steps.push(Step::PublicAffine {
            scale: s.iter().map(|s| 1.0 / s).collect(),
            shift: m.iter().zip(&s).map(|(m, s)| -m / s).collect(),
        });
    }
    for (i, layer) in layers.iter().enumerate() {
        let at = &shapes[i];
        let folded_bn = matches!(layer, Layer::BatchNorm { .. })
            && i > 0
            && matches!(layers[i - 1], Layer::Linear { .. } | Layer::Conv2d { .. });
        match layer {
            Layer::Linear { outputs, .. } => {
                let w = slot(format!("{i}.w"), vec![at[0], *outputs]);
                let b = slot(format!("{i}.b"), vec![*outputs]);
                steps.push(Step::Affine { w, b });
            }
            Layer::Rbf { classes, .. } => {
                let w = slot(format!("{i}.w"), vec![at[0], *classes]);
                let b = slot(format!("{i}.b"), vec![*classes]);
                steps.push(Step::Affine { w, b });
            }
            Layer::Conv2d {
                outputs,
                kernel,
                stride,
                padding,
                ..
            } => {
                let w = slot(format!("{i}.w"), vec![at[0] * kernel * kernel, *outputs]);
                let b = slot(format!("{i}.b"), vec![*outputs]);
                let pad = match (fold_target, normalize) {
                    (Some(0), Some((mean, _))) if i == 0 => per_channel(mean, at[0]),
                    _ => vec![0.0; at[0]],
                };
                steps.push(Step::Conv {
                    w,
                    b,
                    input: [at[0], at[1], at[2]],
                    outputs: *outputs,
                    kernel: *kernel,
                    stride: *stride,
                    padding: *padding,
                    pad,
                });
            }
            Layer::BatchNorm { .. } if folded_bn => {}
            Layer::BatchNorm { .. } => {
                let scale = slot(format!("{i}.scale"), vec![at[0]]);
                let shift = slot(format!("{i}.shift"), vec![at[0]]);
                steps.push(Step::ChannelAffine { scale, shift });
            }
            Layer::Relu => steps.push(Step::Relu),
            Layer::Sigmoid => steps.push(Step::Sigmoid),
            Layer::MaxPool { kernel, stride } => steps.push(Step::MaxPool {
                kernel: *kernel,
                stride: *stride,
            }),
            Layer::AvgPool { kernel, stride } => steps.push(Step::Pool {
                kernel: *kernel,
                stride: *stride,
                scale: 1.0 / (kernel * kernel) as f64,
            }),
            Layer::SumPool { kernel, stride } => steps.push(Step::Pool {
                kernel: *kernel,
                stride: *stride,
                scale: 1.0,
            }),
            Layer::Flatten => steps.push(Step::Flatten),
        }
    }
    Plan {
        steps,
        slots,
        folded_normalization: fold_target.is_some(),
    }
}

/// A checked declaration: layers with their shapes, and the servers' plan.
#[derive(Clone, Debug)]
pub struct Model {
    input: Vec<usize>,
    normalize: Option<(Vec<f64>, Vec<f64>)>,
    layers: Vec<Layer>,
    shapes: Vec<Vec<usize>>,
    plan: Plan,
    chunk: usize,
}

/// Weights prepared by the model owner (see the module docs), ready to upload. They
/// are the owner's secret in the clear: `Debug` shows names and shapes only.
#[derive(Clone)]
pub struct Weights {
    tensors: Vec<(String, ArrayD<f64>)>,
}

impl fmt::Debug for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shapes: Vec<(&str, &[usize])> = self
            .tensors
            .iter()
            .map(|(n, a)| (n.as_str(), a.shape()))
            .collect();
        f.debug_struct("Weights").field("tensors", &shapes).finish()
    }
}

impl Weights {
    /// The prepared tensors, as `(suffix, value)`: a program loads
    /// `"{prefix}.{suffix}"` ([`Model::secret_weights`]).
    pub fn tensors(&self) -> impl Iterator<Item = (&str, &ArrayD<f64>)> {
        self.tensors.iter().map(|(n, a)| (n.as_str(), a))
    }

    /// The name under which a tensor is uploaded: `"{prefix}.{suffix}"`.
    pub fn input_name(prefix: &str, suffix: &str) -> String {
        format!("{prefix}.{suffix}")
    }

    /// Secret-shares every tensor to `cluster` as `owner`'s inputs
    /// `"{prefix}.{suffix}"`. Over the network, upload [`Weights::tensors`] with the
    /// client's own upload call, under the same names.
    ///
    /// # Errors
    /// As [`LocalCluster::upload`] (values out of the preset's range).
    pub fn upload(&self, cluster: &mut LocalCluster, owner: &Client, prefix: &str) -> Result<()> {
        for (suffix, a) in &self.tensors {
            cluster.upload(owner, &Self::input_name(prefix, suffix), a)?;
        }
        Ok(())
    }

    /// Number of scalar weights.
    pub fn len(&self) -> usize {
        self.tensors.iter().map(|(_, a)| a.len()).sum()
    }

    /// Whether there are no weights (a model of parameter-free layers only).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The model's secret weights inside a program ([`Model::secret_weights`]).
#[derive(Clone)]
pub struct SecretWeights {
    tensors: Vec<Priv<ArrayD<f64>>>,
    /// The weight matrices prepared as right operands ([`SecretWeights::prepare`]),
    /// by slot.
    prepared: Vec<Option<Prepared>>,
}

impl SecretWeights {
    /// Prepares every weight matrix as the right operand of its products
    /// ([`Prepared`]): one exchange of the weights now, after which each batch sends
    /// only its activations' shares. Worth it when the same session runs more than
    /// one batch (a service's session; [`Model::logits`] does it itself for a batch
    /// larger than its chunk).
    ///
    /// # Errors
    /// A lost peer.
    pub fn prepare(&mut self) -> Result<()> {
        for (t, p) in self.tensors.iter().zip(self.prepared.iter_mut()) {
            if p.is_none() && t.ndim() == 2 {
                *p = Some(t.clone().into_type::<Array2<f64>>()?.prepare()?);
            }
        }
        Ok(())
    }

    /// Whether [`SecretWeights::prepare`] has run.
    pub fn is_prepared(&self) -> bool {
        self.tensors
            .iter()
            .zip(&self.prepared)
            .all(|(t, p)| t.ndim() != 2 || p.is_some())
    }

    /// `x · w` for the weight matrix in slot `i`, prepared or not.
    fn product(&self, x: &Priv<Array2<f64>>, i: usize) -> Result<Priv<Array2<f64>>> {
        match &self.prepared[i] {
            Some(p) => x.try_dot(p),
            None => x.try_dot(&self.tensors[i].clone().into_type::<Array2<f64>>()?),
        }
    }
}

/// What [`Model::check`] measured.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// Samples run.
    pub samples: usize,
    /// Largest absolute difference between a private and a cleartext logit.
    pub max_logit_diff: f64,
    /// Samples whose private prediction (argmax) equals the cleartext one.
    pub agreeing: usize,
    /// Wall time of the private run (all four servers).
    pub private_time: Duration,
    /// Bytes the servers sent in the private run.
    pub bytes: u64,
    /// Communication rounds of the private run.
    pub rounds: u64,
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} samples: largest logit difference {:.3e}, {}/{} predictions agree; private run {:.1} ms, {} bytes, {} rounds",
            self.samples,
            self.max_logit_diff,
            self.agreeing,
            self.samples,
            self.private_time.as_secs_f64() * 1e3,
            self.bytes,
            self.rounds
        )
    }
}

fn invalid(reason: String) -> Error {
    Error::InvalidArgument {
        operation: "nn::Model",
        reason,
    }
}

fn argmax_rows(a: &Array2<f64>) -> Vec<usize> {
    a.rows()
        .into_iter()
        .map(|r| {
            let mut best = 0;
            for (j, v) in r.iter().enumerate() {
                if *v > r[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

impl Model {
    /// The declared layers.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// The shape of one sample.
    pub fn input_shape(&self) -> &[usize] {
        &self.input
    }

    /// Values per sample (the input matrix's columns).
    pub fn input_len(&self) -> usize {
        self.input.iter().product()
    }

    /// Logits per sample (the output matrix's columns).
    pub fn output_len(&self) -> usize {
        self.shapes.last().map_or(0, |s| s.iter().product())
    }

    /// The activation shape after each layer (`shapes()[0]` is the input).
    pub fn shapes(&self) -> &[Vec<usize>] {
        &self.shapes
    }

    /// Whether the input normalization is folded into the first layer's weights.
    pub fn normalization_folded(&self) -> bool {
        self.plan.folded_normalization
    }

    /// The same model running batches in chunks of `rows` samples (at least 1).
    pub fn with_batch_chunk(mut self, rows: usize) -> Self {
        self.chunk = rows.max(1);
        self
    }

    /// Every tensor the state dict must hold, with its PyTorch shape, in declaration
    /// order (`num_batches_tracked` is accepted but not required).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            let at = &self.shapes[i];
            match layer {
                Layer::Linear {
                    name,
                    outputs,
                    bias,
                } => {
                    out.push((format!("{name}.weight"), vec![*outputs, at[0]]));
                    if *bias {
                        out.push((format!("{name}.bias"), vec![*outputs]));
                    }
                }
                Layer::Conv2d {
                    name,
                    outputs,
                    kernel,
                    bias,
                    ..
                } => {
                    out.push((
                        format!("{name}.weight"),
                        vec![*outputs, at[0], *kernel, *kernel],
                    ));
                    if *bias {
                        out.push((format!("{name}.bias"), vec![*outputs]));
                    }
                }
                Layer::BatchNorm { name, .. } => {
                    for t in ["weight", "bias", "running_mean", "running_var"] {
                        out.push((format!("{name}.{t}"), vec![at[0]]));
                    }
                }
                Layer::Rbf { name, classes } => {
                    out.push((format!("{name}.weight"), vec![*classes, at[0]]));
                }
                _ => {}
            }
        }
        out
    }

    /// Reads a state dict saved by `safetensors.torch.save_file` and prepares it
    /// ([`Model::prepare`]). F32, F64 and I64 tensors are read.
    ///
    /// # Errors
    /// [`ModelError::File`] when the file cannot be read or parsed, else as
    /// [`Model::prepare`].
    pub fn load_safetensors(&self, path: &Path) -> Result<Weights, ModelError> {
        let sd = model::load_safetensors(path)?;
        self.prepare(&sd)
    }

    /// Checks a state dict (PyTorch names and layouts) against the declaration and
    /// prepares the weights for upload (see the module docs).
    ///
    /// # Errors
    /// - [`ModelError::StateDict`] listing every missing tensor, every unexpected one
    ///   (`<batch norm>.num_batches_tracked` excepted) and every wrong shape, with its
    ///   layer, the expected and the actual shape;
    /// - [`ModelError::BadValue`] for a NaN or infinite value, or a batch
    ///   normalization whose `running_var + ε` is not positive.
    pub fn prepare(
        &self,
        state_dict: &BTreeMap<String, ArrayD<f64>>,
    ) -> Result<Weights, ModelError> {
        let expected = self.expected_tensors();
        let mut missing = Vec::new();
        let mut wrong_shapes = Vec::new();
        let layer_of = |tensor: &str| -> String {
            let prefix = tensor.rsplit_once('.').map_or(tensor, |(p, _)| p);
            self.layers
                .iter()
                .find(|l| l.name() == Some(prefix))
                .map_or_else(String::new, Layer::label)
        };
        for (name, shape) in &expected {
            match state_dict.get(name) {
                None => missing.push(name.clone()),
                Some(a) if a.shape() != shape.as_slice() => wrong_shapes.push(WrongShape {
                    tensor: name.clone(),
                    layer: layer_of(name),
                    expected: shape.clone(),
                    actual: a.shape().to_vec(),
                }),
                Some(_) => {}
            }
        }
        let known: BTreeSet<&str> = expected.iter().map(|(n, _)| n.as_str()).collect();
        let tracked: BTreeSet<String> = self
            .layers
            .iter()
            .filter(|l| matches!(l, Layer::BatchNorm { .. }))
            .filter_map(|l| l.name().map(|n| format!("{n}.num_batches_tracked")))
            .collect();
        let unexpected: Vec<String> = state_dict
            .keys()
            .filter(|k| !known.contains(k.as_str()) && !tracked.contains(*k))
            .cloned()
            .collect();
        if !(missing.is_empty() && unexpected.is_empty() && wrong_shapes.is_empty()) {
            return Err(ModelError::StateDict {
                missing,
                unexpected,
                wrong_shapes,
            });
        }
        for (name, _) in &expected {
            if let Some(v) = state_dict
                .get(name)
                .and_then(|a| a.iter().find(|v| !v.is_finite()))
            {
                return Err(ModelError::BadValue {
                    tensor: name.clone(),
                    reason: format!("holds {v}"),
                });
            }
        }
        self.prepare_checked(state_dict)
    }

    fn prepare_checked(&self, sd: &BTreeMap<String, ArrayD<f64>>) -> Result<Weights, ModelError> {
        let get = |n: String| -> ArrayD<f64> {
            sd.get(&n)
                .cloned()
                .unwrap_or_else(|| ArrayD::zeros(IxDyn(&[0])))
        };
        let fold = self
            .normalize
            .as_ref()
            .and(normalization_target(&self.layers));
        let mut tensors: Vec<(String, ArrayD<f64>)> = Vec::new();
        let mut i = 0;
        while i < self.layers.len() {
            let at = &self.shapes[i];
            let layer = &self.layers[i];
            // (w (in, out), b (out)) for weighted layers.
            let weighted: Option<(Array2<f64>, Array1<f64>)> = match layer {
                Layer::Linear {
                    name,
                    outputs,
                    bias,
                } => {
                    let w = to2(get(format!("{name}.weight")))?.t().to_owned();
                    let b = if *bias {
                        to1(get(format!("{name}.bias")))?
                    } else {
                        Array1::zeros(*outputs)
                    };
                    Some((w, b))
                }
                Layer::Conv2d {
                    name,
                    outputs,
                    bias,
                    ..
                } => {
                    let w = get(format!("{name}.weight"));
                    let rows = w.len() / outputs;
                    let w = to2(w
                        .into_shape_with_order(IxDyn(&[*outputs, rows]))
                        .map_err(shape_bug)?)?
                    .t()
                    .to_owned();
                    let b = if *bias {
                        to1(get(format!("{name}.bias")))?
                    } else {
                        Array1::zeros(*outputs)
                    };
                    Some((w, b))
                }
                Layer::Rbf { name, .. } => {
                    let p = to2(get(format!("{name}.weight")))?;
                    let norms = p
                        .rows()
                        .into_iter()
                        .map(|r| -r.dot(&r))
                        .collect::<Array1<f64>>();
                    Some((p.t().to_owned() * 2.0, norms))
                }
                _ => None,
            };
            if let Some((mut w, mut b)) = weighted {
                if let (Some(true), Some((mean, std))) = (fold.map(|f| f == i), &self.normalize) {
                    // Input feature r of w belongs to channel r / (rows per channel).
                    let c = self.input[0];
                    let (m, s) = (per_channel(mean, c), per_channel(std, c));
                    let per = w.nrows() / c;
                    for (r, mut row) in w.rows_mut().into_iter().enumerate() {
                        let ch = if self.input.len() == 1 { r } else { r / per };
                        row.mapv_inplace(|v| v / s[ch]);
                        b.scaled_add(-m[ch], &row);
                    }
                }
                // A batch normalization right after folds into w and b.
                if let (
                    Some(Layer::BatchNorm { name, eps }),
                    Layer::Linear { .. } | Layer::Conv2d { .. },
                ) = (self.layers.get(i + 1), layer)
                {
                    let (scale, shift) = bn_affine(name, *eps, &get)?;
                    for (o, mut col) in w.columns_mut().into_iter().enumerate() {
                        col *= scale[o];
                    }
                    b = (&b * &scale) + &shift;
                }
                tensors.push((format!("{i}.w"), w.into_dyn()));
                tensors.push((format!("{i}.b"), b.into_dyn()));
            } else if let Layer::BatchNorm { name, eps } = layer {
                let folded = i > 0
                    && matches!(
                        self.layers[i - 1],
                        Layer::Linear { .. } | Layer::Conv2d { .. }
                    );
                if !folded {
                    let (scale, shift) = bn_affine(name, *eps, &get)?;
                    debug_assert_eq!(scale.len(), at[0]);
                    tensors.push((format!("{i}.scale"), scale.into_dyn()));
                    tensors.push((format!("{i}.shift"), shift.into_dyn()));
                }
            }
            i += 1;
        }
        debug_assert_eq!(tensors.len(), self.plan.slots.len());
        Ok(Weights { tensors })
    }

    /// The prepared weights as the session's secrets, uploaded by [`Weights::upload`]
    /// under `prefix`.
    ///
    /// # Errors
    /// A missing input, or one whose shape is not what this declaration prepares
    /// ([`Error::InvalidArgument`]): weights prepared for another model are refused.
    pub fn secret_weights(&self, s: &Session, prefix: &str) -> Result<SecretWeights> {
        let mut tensors = Vec::with_capacity(self.plan.slots.len());
        for slot in &self.plan.slots {
            let name = Weights::input_name(prefix, &slot.suffix);
            let t = s.input::<ArrayD<f64>>(&name)?;
            if t.shape() != slot.shape.as_slice() {
                return Err(invalid(format!(
                    "input {name:?} has shape {:?}; this model's prepared tensor has shape {:?}",
                    t.shape(),
                    slot.shape
                )));
            }
            tensors.push(t);
        }
        let prepared = vec![None; tensors.len()];
        Ok(SecretWeights { tensors, prepared })
    }

    /// The logits of every sample (one flattened sample per row of `x`; one row of
    /// logits per sample), computed on the secrets. Batches larger than the chunk size
    /// ([`Model::with_batch_chunk`]) run in chunks.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `x` has no rows or the wrong number of columns,
    /// or `weights` were loaded for another model.
    pub fn logits(
        &self,
        weights: &SecretWeights,
        x: &Priv<Array2<f64>>,
    ) -> Result<Priv<Array2<f64>>> {
        let (b, cols) = (x.shape()[0], x.shape()[1]);
        if cols != self.input_len() || b == 0 {
            return Err(invalid(
                ModelError::Input {
                    expected: self.input_len(),
                    actual: x.shape().to_vec(),
                }
                .to_string(),
            ));
        }
        if weights.tensors.len() != self.plan.slots.len()
            || weights
                .tensors
                .iter()
                .zip(&self.plan.slots)
                .any(|(t, s)| t.shape() != s.shape.as_slice())
        {
            return Err(invalid(
                "the secret weights were loaded for another model".into(),
            ));
        }
        if b > self.chunk {
            // Several chunks: the weights travel once, not once per chunk.
            let mut local;
            let weights = if weights.is_prepared() {
                weights
            } else {
                local = weights.clone();
                local.prepare()?;
                &local
            };
            let mut parts = Vec::new();
            for start in (0..b).step_by(self.chunk) {
                let rows = x.slice(s![start..(start + self.chunk).min(b), ..]);
                parts.push(self.forward(weights, &rows)?);
            }
            let refs: Vec<&Priv<Array2<f64>>> = parts.iter().collect();
            return concatenate(&refs, Axis(0))?.into_type();
        }
        self.forward(weights, x)
    }

    /// The predicted class of every sample: the argmax of [`Model::logits`].
    ///
    /// # Errors
    /// As [`Model::logits`].
    pub fn predict(
        &self,
        weights: &SecretWeights,
        x: &Priv<Array2<f64>>,
    ) -> Result<Priv<Array1<f64>>> {
        Ok(self.logits(weights, x)?.argmax_axis(Axis(1)))
    }

    fn forward(&self, weights: &SecretWeights, x: &Priv<Array2<f64>>) -> Result<Priv<Array2<f64>>> {
        let b = x.shape()[0];
        let w = |i: usize| &weights.tensors[i];
        let mut shape = vec![b];
        shape.extend(&self.input);
        let mut h: Priv<ArrayD<f64>> = x.reshape(shape);
        for step in &self.plan.steps {
            h = match step {
                Step::Affine { w: wi, b: bi } => {
                    let x2: Priv<Array2<f64>> = h.into_type()?;
                    (weights.product(&x2, *wi)? + w(*bi)).into_dyn()
                }
                Step::Conv {
                    w: wi,
                    b: bi,
                    input: [c, hh, ww],
                    outputs,
                    kernel: k,
                    stride: st,
                    padding: p,
                    pad,
                } => {
                    let (c, hh, ww, k, st, p) = (*c, *hh, *ww, *k, *st, *p);
                    let ho = (hh + 2 * p - k) / st + 1;
                    let wo = (ww + 2 * p - k) / st + 1;
                    let flat = h.flatten();
                    let source = if p > 0 {
                        let pads =
                            flat.take(&vec![0; c], Axis(0)) * 0.0 + Array1::from(pad.clone());
                        concatenate(&[&flat, &pads], Axis(0))?.into_type::<Array1<f64>>()?
                    } else {
                        flat
                    };
                    let idx = im2col_indices((b, c, hh, ww), k, st, p);
                    let cols = source.take(&idx, Axis(0)).reshape((b * ho * wo, c * k * k));
                    let z = weights.product(&cols, *wi)? + w(*bi);
                    z.reshape([b, ho, wo, *outputs])
                        .permuted_axes(&[0, 3, 1, 2])
                        .flatten()
                        .reshape([b, *outputs, ho, wo])
                }
                Step::ChannelAffine { scale, shift } => {
                    let mut cshape = vec![h.shape()[1]];
                    cshape.extend(std::iter::repeat_n(1, h.ndim() - 2));
                    &h * &w(*scale).reshape(cshape.clone()) + w(*shift).reshape(cshape)
                }
                Step::PublicAffine { scale, shift } => {
                    let mut cshape = vec![scale.len()];
                    cshape.extend(std::iter::repeat_n(1, h.ndim() - 2));
                    let sc = ArrayD::from_shape_vec(IxDyn(&cshape), scale.clone())
                        .map_err(|e| invalid(e.to_string()))?;
                    let sh = ArrayD::from_shape_vec(IxDyn(&cshape), shift.clone())
                        .map_err(|e| invalid(e.to_string()))?;
                    &h * &sc + &sh
                }
                Step::Relu => h.relu(),
                Step::Sigmoid => h.sigmoid_with_tolerance(SIGMOID_TOLERANCE),
                Step::MaxPool { kernel, stride } => {
                    h.max_pool2d((*kernel, *kernel), (*stride, *stride))
                }
                Step::Pool {
                    kernel,
                    stride,
                    scale,
                } => {
                    let (k, st) = (*kernel, *stride);
                    let (c, hh, ww) = (h.shape()[1], h.shape()[2], h.shape()[3]);
                    let (ho, wo) = ((hh - k) / st + 1, (ww - k) / st + 1);
                    let mut idx = Vec::with_capacity(b * c * ho * wo * k * k);
                    for m in 0..b * c {
                        for i in 0..ho {
                            for j in 0..wo {
                                for di in 0..k {
                                    for dj in 0..k {
                                        idx.push((m * hh + i * st + di) * ww + j * st + dj);
                                    }
                                }
                            }
                        }
                    }
                    let sums = h
                        .flatten()
                        .take(&idx, Axis(0))
                        .reshape((b * c * ho * wo, k * k))
                        .sum_axis(Axis(1));
                    let sums = if *scale == 1.0 { sums } else { sums * *scale };
                    sums.reshape([b, c, ho, wo])
                }
                Step::Flatten => {
                    let n: usize = h.shape()[1..].iter().product();
                    h.reshape([b, n])
                }
            };
        }
        let n: usize = h.shape()[1..].iter().product();
        h.reshape([b, n]).into_type()
    }

    /// The logits in the clear, in `f64`, from the prepared weights: the reference a
    /// private run is compared with. It runs the same program on privpy's cleartext
    /// engine.
    ///
    /// # Errors
    /// [`ModelError::Input`] when `x` has the wrong number of columns or no rows.
    pub fn clear_logits(
        &self,
        weights: &Weights,
        x: &Array2<f64>,
    ) -> Result<Array2<f64>, ModelError> {
        self.check_input(x)?;
        Ok(self.run_on(LocalCluster::cleartext(), weights, x)?.0)
    }

    fn check_input(&self, x: &Array2<f64>) -> Result<(), ModelError> {
        if x.ncols() != self.input_len() || x.nrows() == 0 {
            return Err(ModelError::Input {
                expected: self.input_len(),
                actual: x.shape().to_vec(),
            });
        }
        Ok(())
    }

    fn run_on(
        &self,
        mut cluster: LocalCluster,
        weights: &Weights,
        x: &Array2<f64>,
    ) -> Result<(Array2<f64>, Duration, u64, u64)> {
        let owner = cluster.client("model-owner");
        let user = cluster.client("user");
        weights.upload(&mut cluster, &owner, "model")?;
        cluster.upload(&user, "x", x)?;
        let start = Instant::now();
        let run = cluster.run(|s| {
            let net = self.secret_weights(s, "model")?;
            let x = s.input::<Array2<f64>>("x")?;
            s.output("user", "logits", &self.logits(&net, &x)?)
        })?;
        let time = start.elapsed();
        let logits: Array2<f64> = run.open(&user, "logits")?;
        Ok((
            logits,
            time,
            run.stats().total_bytes(),
            run.stats().rounds(),
        ))
    }

    /// Runs `x` (one flattened sample per row) privately on an in-process cluster with
    /// `config` and in the clear, and reports the largest logit difference and how many
    /// predictions agree: the check to run before deploying a model.
    ///
    /// # Errors
    /// An input of the wrong shape ([`Error::InvalidArgument`]), or values outside the
    /// preset's range.
    pub fn check(&self, weights: &Weights, x: &Array2<f64>, config: Config) -> Result<CheckReport> {
        self.check_input(x).map_err(|e| invalid(e.to_string()))?;
        let (clear, ..) = self.run_on(LocalCluster::cleartext(), weights, x)?;
        let (private, time, bytes, rounds) = self.run_on(LocalCluster::new(config), weights, x)?;
        let max_logit_diff = (&private - &clear)
            .iter()
            .fold(0.0f64, |m, d| m.max(d.abs()));
        let agreeing = argmax_rows(&private)
            .iter()
            .zip(argmax_rows(&clear))
            .filter(|(a, b)| **a == *b)
            .count();
        Ok(CheckReport {
            samples: x.nrows(),
            max_logit_diff,
            agreeing,
            private_time: time,
            bytes,
            rounds,
        })
    }
}

/// The positions im2col gathers for a `k × k` convolution with `stride` and `pad`
/// of a flat `(b, c, h, w)` array: for each output position (`n`, `i`, `j`), the
/// `c · k · k` inputs in `(channel, di, dj)` order. A position in the padding is
/// `b·c·h·w + channel`: the caller appends one padding value per channel.
pub(crate) fn im2col_indices(
    (b, c, h, w): (usize, usize, usize, usize),
    k: usize,
    stride: usize,
    pad: usize,
) -> Vec<usize> {
    let (ho, wo) = (
        (h + 2 * pad - k) / stride + 1,
        (w + 2 * pad - k) / stride + 1,
    );
    let n_in = b * c * h * w;
    let mut idx = Vec::with_capacity(b * ho * wo * c * k * k);
    for n in 0..b {
        for i in 0..ho {
            for j in 0..wo {
                for ch in 0..c {
                    for di in 0..k {
                        for dj in 0..k {
                            let (r, q) = (i * stride + di, j * stride + dj);
                            idx.push(if r < pad || q < pad || r - pad >= h || q - pad >= w {
                                n_in + ch
                            } else {
                                ((n * c + ch) * h + r - pad) * w + q - pad
                            });
                        }
                    }
                }
            }
        }
    }
    idx
}

fn shape_bug(e: ndarray::ShapeError) -> ModelError {
    ModelError::BadValue {
        tensor: "weights".into(),
        reason: e.to_string(),
    }
}

fn to2(a: ArrayD<f64>) -> Result<Array2<f64>, ModelError> {
    a.into_dimensionality::<Ix2>().map_err(shape_bug)
}

fn to1(a: ArrayD<f64>) -> Result<Array1<f64>, ModelError> {
    a.into_dimensionality::<ndarray::Ix1>().map_err(shape_bug)
}

/// Batch normalization's `scale = γ/√(σ² + ε)` and `shift = β − μ·scale`.
fn bn_affine(
    name: &str,
    eps: f64,
    get: &dyn Fn(String) -> ArrayD<f64>,
) -> Result<(Array1<f64>, Array1<f64>), ModelError> {
    let gamma = to1(get(format!("{name}.weight")))?;
    let beta = to1(get(format!("{name}.bias")))?;
    let mean = to1(get(format!("{name}.running_mean")))?;
    let var = to1(get(format!("{name}.running_var")))?;
    if let Some(v) = var
        .iter()
        .find(|v| (**v + eps).partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater))
    {
        return Err(ModelError::BadValue {
            tensor: format!("{name}.running_var"),
            reason: format!("σ² + ε = {} is not positive", v + eps),
        });
    }
    let scale: Array1<f64> = gamma
        .iter()
        .zip(&var)
        .map(|(g, v)| g / (v + eps).sqrt())
        .collect();
    let shift = &beta - &(&mean * &scale);
    Ok((scale, shift))
}
