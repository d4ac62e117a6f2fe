"""The embedding map of a report: what the network's last hidden layer makes of the test images.

The features are the input of the network's final `nn.Linear` (the layer that turns them into
class scores), caught with forward hooks on one pass that also gives the predictions; t-SNE
(scikit-learn, seeded) lays them out in two dimensions, where images the network finds alike
lie close together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from digitlab.config import EVAL_BATCH_SIZE
from digitlab.data.digitdata import DigitData, to_pixels
from digitlab.errors import DigitlabError

EMBEDDED = 2000  # test images on the map: enough to show every class's cluster, t-SNE in seconds
PCA_DIMENSIONS = 50  # features are first reduced to this many by PCA (t-SNE's usual first step)
TSNE_ITERATIONS = 500  # half scikit-learn's default: the same clusters at 2,000 points, in half the time


@dataclass
class Embedding:
    coordinates: np.ndarray  # (N, 2) t-SNE coordinates
    labels: np.ndarray  # (N,) true classes
    predicted: np.ndarray  # (N,) the model's classes
    indices: np.ndarray  # (N,) which test images, ascending
    classes: list[str]

    @property
    def mistakes(self) -> np.ndarray:
        return self.predicted != self.labels


@torch.inference_mode()
def penultimate_features(
    model: nn.Module, images: torch.Tensor, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, D), logits (N, classes)) of uint8 images (N, 28, 28): the features are the
    input of the last `nn.Linear` that runs in the forward pass (the classifier's head), found
    by hooking every Linear, so any architecture that ends in one works."""
    linears = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise DigitlabError(f"{type(model).__name__}: no nn.Linear layer, so no penultimate features")
    caught: list[torch.Tensor] = []

    def catch(module, inputs, output) -> None:
        caught.append(inputs[0])

    handles = [linear.register_forward_hook(catch) for linear in linears]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    features, logits = [], []
    try:
        for start in range(0, len(images), batch_size):
            caught.clear()
            pixels = to_pixels(images[start : start + batch_size].to(device)).unsqueeze(1)
            logits.append(model(pixels).float().cpu())
            features.append(caught[-1].flatten(1).float().cpu())  # the last Linear to run
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not logits:
        return np.empty((0, 0), np.float32), np.empty((0, 0), np.float32)
    return torch.cat(features).numpy(), torch.cat(logits).numpy()


def embedding_map(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 2) t-SNE coordinates of (N, D) features: PCA to at most 50 dimensions first, then
    t-SNE initialised by PCA. One thread: the same features and seed give the same map on any
    machine, and OpenMP threads fighting busy cores (a training run beside it) made t-SNE 5x
    slower."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    features = np.asarray(features, dtype=np.float32)
    n = len(features)
    if n < 2:
        return np.zeros((n, 2), np.float32)
    perplexity = min(30.0, (n - 1) / 3)  # t-SNE needs perplexity < N
    tsne = TSNE(2, init="pca", random_state=seed, perplexity=perplexity, max_iter=TSNE_ITERATIONS, n_jobs=1)
    with threadpool_limits(1):
        dimensions = min(PCA_DIMENSIONS, n, features.shape[1])
        if dimensions < features.shape[1]:
            features = PCA(dimensions, random_state=seed).fit_transform(features)
        return tsne.fit_transform(features).astype(np.float32)


def data_embedding(model: nn.Module, data: DigitData, limit: int = EMBEDDED, seed: int = 0) -> Embedding:
    """The embedding map of up to `limit` images of `data` (a seeded sample when it has more),
    with the model's predictions on them to mark its mistakes."""
    indices = np.arange(len(data))
    if len(data) > limit:
        indices = np.sort(np.random.default_rng(seed).choice(len(data), limit, replace=False))
    chosen = torch.as_tensor(indices, device=data.images.device)
    features, logits = penultimate_features(model, data.images[chosen])
    return Embedding(
        embedding_map(features, seed),
        data.labels.cpu().numpy()[indices],
        logits.argmax(1) if len(logits) else np.empty(0, np.int64),
        indices,
        list(data.classes),
    )
