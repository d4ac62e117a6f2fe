import torch

from digitlab.data.augment import AffineAugment


def centre_of_mass(images: torch.Tensor) -> torch.Tensor:
    """(N, 2) ink centre (row, column) of (N, 1, H, W) images."""
    weights = images[:, 0]
    rows = torch.arange(weights.shape[1], dtype=torch.float32)
    mass = weights.sum((1, 2))
    return torch.stack([(weights.sum(2) * rows).sum(1) / mass, (weights.sum(1) * rows).sum(1) / mass], 1)


def test_inactive_augment_is_identity(mnist_test):
    images = mnist_test.images[:8].unsqueeze(1).float()
    assert AffineAugment()(images, torch.Generator().manual_seed(0)) is images


def test_shapes_and_determinism(mnist_test):
    images = mnist_test.images[:64].unsqueeze(1).float()
    augment = AffineAugment(rotate=15, scale=0.1, shift=2, shear=10)
    first = augment(images, torch.Generator().manual_seed(5))
    again = augment(images, torch.Generator().manual_seed(5))
    other = augment(images, torch.Generator().manual_seed(6))
    assert first.shape == images.shape and first.dtype == images.dtype
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, images)


def test_shift_moves_ink_by_at_most_the_limit(mnist_test):
    images = mnist_test.images[:200].unsqueeze(1).float()
    moved = AffineAugment(shift=3)(images, torch.Generator().manual_seed(1))
    distance = (centre_of_mass(moved) - centre_of_mass(images)).abs()
    assert distance.max() < 3.5 and distance.mean() > 0.5


def test_augmented_digits_keep_their_label(mnist_test):
    """A nearest-centroid classifier reads augmented digits about as well as the originals."""
    train, test = mnist_test.subset(slice(0, 5000)), mnist_test.subset(slice(5000, 6000))
    flat = train.images.float().flatten(1)
    centroids = torch.stack([flat[train.labels == d].mean(0) for d in range(10)])

    def accuracy(images: torch.Tensor) -> float:
        predicted = torch.cdist(images.flatten(1), centroids).argmin(1)
        return (predicted == test.labels).float().mean().item()

    images = test.images.unsqueeze(1).float()
    augment = AffineAugment(rotate=10, scale=0.1, shift=1, shear=5)
    plain, augmented = accuracy(images), accuracy(augment(images, torch.Generator().manual_seed(2)))
    assert plain > 0.75 and augmented > plain - 0.15
