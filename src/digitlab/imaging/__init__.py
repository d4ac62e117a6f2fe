"""Users' images brought into MNIST's form (28x28, white ink on black, centred): the layer
below `data` (image-folder data sets) and `inference` (predict, serve), which both use it."""

from digitlab.imaging.preprocess import ImageSource, open_image, split_digits, to_mnist

__all__ = ["ImageSource", "open_image", "split_digits", "to_mnist"]
