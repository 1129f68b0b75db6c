"""Reading an ImageFolder tree (``root/<class>/<image>``) with errors that name the folder or file."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from robustlit.errors import DataError


def find_classes(folder: Path, where: str = "data.root") -> tuple[str, ...]:
    """Return the sorted class folder names in ``folder``, skipping hidden ones such as ``.cache``.

    Args:
        folder: a folder whose sub-folders are the classes.
        where: how messages name the folder, e.g. ``"data.root"`` or ``"data.root/train"``.

    Returns:
        The class names; the label of a class is its position.

    Raises:
        DataError: if ``folder`` does not exist or has no class folders.

    Example:
        >>> find_classes(Path("/data/pets/test"))  # doctest: +SKIP
        ('cat', 'dog')
    """
    if not folder.is_dir():
        raise DataError(f"{where}={folder} does not exist or is not a folder; pass data.root=PATH")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"{where}={folder} has no class folders; expected {where}/<class>/<image> (ImageFolder layout)"
        )
    return tuple(classes)


def scan_images(folder: Path, classes: Sequence[str], where: str = "data.root") -> list[tuple[str, int]]:
    """Return ``(path, label)`` for every image under ``folder/<class>/``, in sorted order.

    A class folder without images is kept (so labels stay aligned with the class names) and
    reported with a warning.

    Args:
        folder: the folder that holds the class folders.
        classes: the class names, in label order.
        where: how messages name the folder, e.g. ``"data.root"`` or ``"data.root/train"``.

    Returns:
        The samples, sorted by class and then by file name.

    Raises:
        DataError: if no class folder holds an image.

    Example:
        >>> scan_images(Path("/data/pets/test"), ("cat", "dog"))[:1]  # doctest: +SKIP
        [('/data/pets/test/cat/0001.jpg', 0)]
    """
    samples = make_dataset(
        str(folder), {name: i for i, name in enumerate(classes)}, extensions=IMG_EXTENSIONS, allow_empty=True
    )
    if not samples:
        raise DataError(
            f"{where}={folder} has class folders but no images in them ({', '.join(IMG_EXTENSIONS)}); "
            f"expected {where}/<class>/<image> (ImageFolder layout)"
        )
    found = {label for _, label in samples}
    empty = [name for i, name in enumerate(classes) if i not in found]
    if empty:
        rank_zero_warn(f"{where}={folder}: these class folders hold no images: {', '.join(empty)}")
    return samples


def load_image(path: str, mode: str) -> Image.Image:
    """Open an image file and convert it to ``mode`` (``"RGB"`` or ``"L"``).

    Args:
        path: the image file.
        mode: PIL mode to convert to; gray images become RGB and RGB images gray as needed.

    Returns:
        The decoded image.

    Raises:
        DataError: naming the file, if it cannot be read or decoded.

    Example:
        >>> load_image("/data/pets/test/cat/0001.jpg", "RGB").size  # doctest: +SKIP
        (32, 32)
    """
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DataError(f"cannot read image {path} ({err}); delete or replace the file in data.root") from err


class ImageFiles(Dataset):
    """Images listed as ``(path, label)``, returned as float32 ``(C, H, W)`` tensors in [0, 1].

    Args:
        samples: ``(path, label)`` pairs, e.g. from :func:`scan_images`.
        channels: 3 (RGB) or 1 (gray); images are converted as needed.
        image_size: the height and width of every returned image.
        resize: resize the shorter side to ``image_size`` and center-crop; if False, an image of
            another size raises DataError naming the file.
        transform: optional callable applied to each tensor, e.g. training augmentation.

    Example:
        >>> ds = ImageFiles([("/data/pets/test/cat/0001.jpg", 0)], 3, 32, resize=False)  # doctest: +SKIP
        >>> tuple(ds[0][0].shape)  # doctest: +SKIP
        (3, 32, 32)
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, int]],
        channels: int,
        image_size: int,
        resize: bool,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]
        self.mode = "RGB" if channels == 3 else "L"
        self.image_size = image_size
        self.resize = resize
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, label = self.samples[index]
        image = load_image(path, self.mode)
        if self.resize:
            image = TF.resize(image, self.image_size, InterpolationMode.BILINEAR, antialias=True)
            image = TF.center_crop(image, self.image_size)
        elif image.size != (self.image_size, self.image_size):
            width, height = image.size
            raise DataError(
                f"image {path} is {width}x{height}, not {self.image_size}x{self.image_size} like the "
                "others; pass data.image_size=N to resize every image to NxN"
            )
        x = TF.pil_to_tensor(image).to(torch.float32).div_(255)
        if self.transform is not None:
            x = self.transform(x)
        return x, label
