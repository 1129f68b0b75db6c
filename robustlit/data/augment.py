"""The standard training augmentation for small images: padded random crop, optionally a flip."""

from __future__ import annotations

from torchvision import transforms


def crop_flip(image_size: int, padding: int, padding_mode: str, flip: bool) -> transforms.Compose:
    """Random crop after padding, then a random horizontal flip; works on ``(C, H, W)`` tensors.

    Randomness comes from torch's global generator, which Lightning seeds in the main process
    and in every worker, so augmented runs stay reproducible.

    Args:
        image_size: height and width of the input and the output.
        padding: pixels added on each side before cropping; capped at ``image_size - 1`` because
            reflect padding cannot be wider than the image.
        padding_mode: ``"reflect"`` for natural images, ``"constant"`` (zeros) for digits on black.
        flip: whether to flip horizontally with probability 0.5 (wrong for digits and text).

    Returns:
        A transform from tensor to tensor of the same shape.

    Example:
        >>> import torch
        >>> aug = crop_flip(32, padding=4, padding_mode="reflect", flip=True)
        >>> tuple(aug(torch.rand(3, 32, 32)).shape)
        (3, 32, 32)
    """
    steps: list[object] = [
        transforms.RandomCrop(image_size, padding=min(padding, image_size - 1), padding_mode=padding_mode)
    ]
    if flip:
        steps.append(transforms.RandomHorizontalFlip())
    return transforms.Compose(steps)
