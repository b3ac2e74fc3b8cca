"""The bundled 8x8 digits data set (scikit-learn, 1,797 images) and a small CNN trained on it.

Why: agreement with fp32 says a quantised model computes what the fp32 one does; only a model with
real labels says whether either is right. scikit-learn ships this data set inside the package, so
the zoo model `digits_cnn` is trained at build time (seeded, a few seconds on one CPU core) with no
download, and its held-out split is the eval set for `lab models accuracy`.

Split: a seeded permutation (SPLIT_SEED), the first 80 % train (1,438 images), the rest eval
(359 images). Pixels are scaled from 0..16 to 0..1 float32, shape N x 1 x 8 x 8.
"""
from __future__ import annotations

from typing import Any

SPLIT_SEED = 0
TRAIN_SHARE = 0.8
EVAL_TAG = "sklearn-digits"  # zoo tag `eval:` naming this set
NUM_CLASSES = 10


def load_split() -> tuple[Any, Any, Any, Any]:
    """(x_train, y_train, x_eval, y_eval) as numpy arrays; same on every machine."""
    import numpy as np
    from sklearn.datasets import load_digits  # data file ships inside the wheel

    data = load_digits()
    x = (data.images.astype("float32") / 16.0).reshape(-1, 1, 8, 8)
    y = data.target.astype("int64")
    order = np.random.RandomState(SPLIT_SEED).permutation(len(y))
    cut = int(round(TRAIN_SHARE * len(y)))
    tr, ev = order[:cut], order[cut:]
    return x[tr], y[tr], x[ev], y[ev]


def eval_set() -> tuple[Any, Any]:
    """The held-out images and labels."""
    _, _, x, y = load_split()
    return x, y


def calibration_set(n: int) -> Any:
    """The first `n` training images (PTQ calibration never sees the eval split)."""
    x, _, _, _ = load_split()
    return x[:n]


def architectures() -> dict[str, Any]:
    """Lab architectures for lab.models.build's export worker (paddle imported lazily, in the worker)."""
    import numpy as np
    import paddle
    from paddle import nn

    class DigitsCNN(nn.Layer):
        """conv(1->16) relu conv(16->32, stride 2) relu, fc(512->10); trained in the constructor.

        Training inside __init__ keeps lab.models.build unchanged: each export process (PIR and legacy)
        builds the same seeded model; full-batch-order determinism on CPU makes both identical
        (the test compares their outputs).
        """

        def __init__(self, epochs: int = 15, batch_size: int = 32, lr: float = 0.003):
            super().__init__()
            self.conv1 = nn.Conv2D(1, 16, 3, padding=1)
            self.conv2 = nn.Conv2D(16, 32, 3, stride=2, padding=1)
            self.fc = nn.Linear(32 * 4 * 4, NUM_CLASSES)
            self._train(epochs, batch_size, lr)

        def forward(self, x):
            x = nn.functional.relu(self.conv1(x))
            x = nn.functional.relu(self.conv2(x))
            return self.fc(paddle.flatten(x, 1))

        def _train(self, epochs, batch_size, lr):
            x_tr, y_tr, _, _ = load_split()
            opt = paddle.optimizer.Adam(learning_rate=lr, parameters=self.parameters())
            rng = np.random.RandomState(SPLIT_SEED + 1)
            self.train()
            for _ in range(epochs):
                order = rng.permutation(len(y_tr))
                for start in range(0, len(order), batch_size):
                    idx = order[start:start + batch_size]
                    logits = self(paddle.to_tensor(x_tr[idx]))
                    loss = nn.functional.cross_entropy(logits, paddle.to_tensor(y_tr[idx]))
                    loss.backward()
                    opt.step()
                    opt.clear_grad()
            self.eval()

    return {"digits_cnn": DigitsCNN}
