"""fusecli: general image fusion with the pseudo-siamese Laplacian pyramid transformer."""

__version__ = "0.1.0"
