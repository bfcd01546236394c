"""Trains a small MNIST CNN with PyTorch and exports it for privpy.

Outside the crate's build: privpy never runs this. It writes

* ``models/mnist-torch-cnn.safetensors``: the model's ``state_dict`` exactly as
  ``safetensors.torch.save_file`` saves it (PyTorch's names and layouts, F32, with
  batch norm's ``num_batches_tracked`` counters);
* ``models/mnist-torch-cnn-reference.safetensors``: PyTorch's own logits (F64, the
  model evaluated in double precision) for the 300 test images shipped in
  ``data/mnist``, which privpy's test compares with its private predictions.

The Rust declaration of the same network is ``privpy::nn`` in
``examples/mnist.rs --model torch-cnn`` and ``tests/suite/nn.rs``::

    Sequential::new(&[1, 28, 28]).normalize(&[0.1307], &[0.3081])
        .conv2d("conv1", 6, 5).padding(2).batch_norm("bn1").relu().max_pool(2)
        .conv2d("conv2", 16, 5).relu().avg_pool(2)
        .flatten().linear("fc1", 120).batch_norm("bn3").sigmoid().linear("fc2", 10)

Run (about two minutes on two cores; needs torch and safetensors, and the full MNIST
set, by default in ../shared/data/mnist)::

    python models/torch/train_mnist_cnn.py [--data DIR] [--epochs 2]
"""

import argparse
import gzip
import os

import numpy as np
import torch
from safetensors.torch import save_file
from torch import nn

MEAN, STD = 0.1307, 0.3081
HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.dirname(HERE)
REPO = os.path.dirname(MODELS)


def idx(path):
    """An IDX file (gzip-compressed or not) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.bn1 = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.bn3 = nn.BatchNorm1d(120)
        self.fc2 = nn.Linear(120, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = nn.functional.avg_pool2d(torch.relu(self.conv2(x)), 2)
        x = torch.sigmoid(self.bn3(self.fc1(x.flatten(1))))
        return self.fc2(x)


def images(a):
    """uint8 (n, 28, 28) to normalized float (n, 1, 28, 28), as transforms.Normalize."""
    return (torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1) - MEAN) / STD


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "mnist"))
    p.add_argument("--epochs", type=int, default=2)
    args = p.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    xtr = images(idx(os.path.join(args.data, "train-images-idx3-ubyte.gz")))
    ytr = torch.from_numpy(idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    xte = images(idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz")))
    yte = torch.from_numpy(idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    model = Net()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 128):
            b = perm[i : i + 128]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(xtr[b]), ytr[b])
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xte).argmax(1) == yte).float().mean().item()
        print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {acc:.4f}")
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(MODELS, "mnist-torch-cnn.safetensors"))
    # PyTorch's logits for the shipped images, in double precision.
    shipped = images(idx(os.path.join(REPO, "data", "mnist", "t10k-300-images-idx3-ubyte")))
    with torch.no_grad():
        logits = model.double()(shipped.double())
    save_file(
        {"logits": logits.contiguous()},
        os.path.join(MODELS, "mnist-torch-cnn-reference.safetensors"),
    )
    print("wrote", os.path.join(MODELS, "mnist-torch-cnn.safetensors"))


if __name__ == "__main__":
    main()
