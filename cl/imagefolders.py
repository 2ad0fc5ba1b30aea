"""What a set of images in class folders is, as the data loader and the archive extractor both read it:
the names that point at one, the files that count as images, the format they are read in and the
share of each class held out for testing. A leaf module, so that cl.data and cl.archive share the
rules without importing each other."""

from __future__ import annotations

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
FOLDER_PREFIX = "folder:"  # folder:PATH, a folder of class folders or a .zip of them
ARCHIVE_PREFIX = "archive:"  # archive:ID, an archive cl.archive extracted into its cache
# An image folder or archive is read in CIFAR-10's format (32x32 colour): the study's small
# encoders take it as it is, and photos of any size fit.
FOLDER_CHANNELS, FOLDER_SIZE = 3, 32
TEST_SHARE = 0.2  # of each class, in a set without its own train/test split


def held_out_count(n: int) -> int:
    """Test images of a class of ``n`` in a set without its own split: ``max(1, round(0.2 n))``,
    none for a class of one (it stays in train)."""
    return max(1, round(TEST_SHARE * n)) if n > 1 else 0
