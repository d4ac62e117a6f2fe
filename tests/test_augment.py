import torch

from digitlab.data.augment import BatchAugment


def centre_of_mass(images: torch.Tensor) -> torch.Tensor:
    """(N, 2) ink centre (row, column) of (N, 1, H, W) images."""
    weights = images[:, 0]
    rows = torch.arange(weights.shape[1], dtype=torch.float32)
    mass = weights.sum((1, 2))
    return torch.stack([(weights.sum(2) * rows).sum(1) / mass, (weights.sum(1) * rows).sum(1) / mass], 1)


def test_inactive_augment_is_identity(mnist_test):
    images = mnist_test.images[:8].unsqueeze(1).float() / 255
    assert BatchAugment()(images, torch.Generator().manual_seed(0)) is images


def test_shapes_and_determinism(mnist_test):
    images = mnist_test.images[:64].unsqueeze(1).float() / 255
    augment = BatchAugment(rotate=15, scale=0.1, shift=2, shear=10)
    first = augment(images, torch.Generator().manual_seed(5))
    again = augment(images, torch.Generator().manual_seed(5))
    other = augment(images, torch.Generator().manual_seed(6))
    assert first.shape == images.shape and first.dtype == images.dtype
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, images)


def test_shift_moves_ink_by_at_most_the_limit(mnist_test):
    images = mnist_test.images[:200].unsqueeze(1).float() / 255
    moved = BatchAugment(shift=3)(images, torch.Generator().manual_seed(1))
    distance = (centre_of_mass(moved) - centre_of_mass(images)).abs()
    assert distance.max() < 3.5 and distance.mean() > 0.5


def test_augmented_digits_keep_their_label(mnist_test):
    """A nearest-centroid classifier reads augmented digits about as well as the originals."""
    train, test = mnist_test.subset(slice(0, 5000)), mnist_test.subset(slice(5000, 6000))
    flat = train.images.float().flatten(1) / 255
    centroids = torch.stack([flat[train.labels == d].mean(0) for d in range(10)])

    def accuracy(images: torch.Tensor) -> float:
        predicted = torch.cdist(images.flatten(1), centroids).argmin(1)
        return (predicted == test.labels).float().mean().item()

    images = test.images.unsqueeze(1).float() / 255
    augment = BatchAugment(rotate=10, scale=0.1, shift=1, shear=5)
    plain, augmented = accuracy(images), accuracy(augment(images, torch.Generator().manual_seed(2)))
    assert plain > 0.75 and augmented > plain - 0.15


def pixels(mnist_test, n: int = 64) -> torch.Tensor:
    return mnist_test.images[:n].unsqueeze(1).float() / 255


def test_stroke_makes_some_pens_thicker_and_some_thinner(mnist_test):
    images = pixels(mnist_test)
    changed = BatchAugment(stroke=1.0)(images, torch.Generator().manual_seed(0))
    ink_before, ink_after = images.sum((1, 2, 3)), changed.sum((1, 2, 3))
    thicker, thinner = (ink_after > ink_before * 1.15).sum(), (ink_after < ink_before * 0.85).sum()
    assert thicker > 15 and thinner > 15 and thicker + thinner == len(images)
    assert changed.min() >= 0 and changed.max() <= 1


def test_low_resolution_loses_detail_in_about_its_share(mnist_test):
    images = pixels(mnist_test, 200)
    changed = BatchAugment(lowres=0.5)(images, torch.Generator().manual_seed(0))
    touched = (changed - images).abs().amax((1, 2, 3)) > 1e-6
    assert 70 < touched.sum() < 130

    def detail(x):  # energy of the differences between neighbouring pixels
        return (x[..., 1:] - x[..., :-1]).pow(2).sum((1, 2, 3))

    assert (detail(changed[touched]) < detail(images[touched])).all()


def test_blur_keeps_the_ink_and_spreads_it(mnist_test):
    images = pixels(mnist_test)
    blurred = BatchAugment(blur=1.5)(images, torch.Generator().manual_seed(0))
    assert torch.allclose(blurred.sum((1, 2, 3)), images.sum((1, 2, 3)), rtol=0.02)
    assert (blurred.amax((1, 2, 3)) < images.amax((1, 2, 3))).float().mean() > 0.8


def test_elastic_and_aspect_move_ink_but_keep_it_near(mnist_test):
    from test_augment import centre_of_mass

    images = pixels(mnist_test, 200)
    for augment in (BatchAugment(elastic=2.0), BatchAugment(aspect=0.3)):
        moved = augment(images, torch.Generator().manual_seed(3))
        assert not torch.allclose(moved, images, atol=0.05)
        assert (centre_of_mass(moved) - centre_of_mass(images)).abs().max() < 2.5


def test_gamma_and_noise_change_grey_levels_within_range(mnist_test):
    images = pixels(mnist_test)
    changed = BatchAugment(gamma=0.7, noise=0.1)(images, torch.Generator().manual_seed(0))
    assert changed.min() >= 0 and changed.max() <= 1
    background = changed[images == 0]
    assert 0.005 < background.mean() < 0.1  # noise on the background, clamped at 0


def test_a_new_kind_does_not_change_the_draws_of_the_geometry(mnist_test):
    images = pixels(mnist_test)
    geometry = BatchAugment(rotate=10, shift=2)(images, torch.Generator().manual_seed(4))
    with_blur = BatchAugment(rotate=10, shift=2, blur=1e-4)(images, torch.Generator().manual_seed(4))
    assert torch.allclose(geometry, with_blur, atol=1e-4)


def test_the_robust_preset_keeps_digits_readable(mnist_test, trained_checkpoint):
    """A CNN trained without augmentation (96.5 % on plain digits) still reads most digits
    under the robust preset's heavy augmentation (it reads 60 %; destroyed digits give 10 %)."""
    from digitlab import load_checkpoint
    from digitlab.config import preset_config

    model = load_checkpoint(trained_checkpoint).model
    test = mnist_test.subset(slice(0, 2000))
    changed = BatchAugment.from_config(preset_config("robust"))(
        pixels(test, 2000), torch.Generator().manual_seed(0)
    )
    with torch.no_grad():
        accuracy = (model(changed).argmax(1) == test.labels).float().mean().item()
    assert 0.5 < accuracy < 0.9  # readable, yet far from the plain digits: it does augment


def test_flip_mirrors_about_its_share_of_the_images(mnist_test):
    images = pixels(mnist_test, 400)
    flipped = BatchAugment(flip=0.5)(images, torch.Generator().manual_seed(2))
    mirrored = (flipped == images.flip(-1)).flatten(1).all(1)
    kept = (flipped == images).flatten(1).all(1)
    assert (mirrored | kept).all()  # each image whole, one way or the other
    assert 0.4 < mirrored.float().mean() < 0.6


def test_random_erasing_replaces_one_rectangle_in_about_its_share(mnist_test):
    images = pixels(mnist_test, 400)
    erased = BatchAugment(erase=0.5)(images, torch.Generator().manual_seed(3))
    changed = erased != images
    touched = changed.flatten(1).any(1)
    assert 0.4 < touched.float().mean() < 0.6
    for mask in changed[touched][:, 0]:  # the changed pixels lie in one rectangle of 2-33 % of the area
        rows, columns = mask.nonzero(as_tuple=True)
        box = (rows.max() - rows.min() + 1) * (columns.max() - columns.min() + 1)
        assert box <= 0.34 * 28 * 28 and mask.sum() >= 0.5 * box  # noise may equal a pixel by chance
    assert ((erased >= 0) & (erased <= 1)).all()
