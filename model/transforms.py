"""Input transforms a linear model needs, applied identically at training and serving time.

Deskewing (LeCun's MNIST table): measure the slant of a digit from its second-order image
moments and undo it with a shear about its centre of mass, which also centres it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

SIZE = 28
CENTRE = (SIZE - 1) / 2.0
KNOWN_TRANSFORMS = ("deskew",)


def deskew(images: np.ndarray) -> np.ndarray:
    """Deskew a batch (N, 28, 28) or one (28, 28) image of pixel values; same shape, float32.

    Pixels are weights: centre of mass (cy, cx), slant alpha = cov(y, x) / var(y). The output
    pixel (r, c) samples the input at (r + cy - 13.5, c + alpha * (r - 13.5) + cx - 13.5),
    bilinearly, so a digit slanted by alpha comes back upright and centred.
    """
    single = images.ndim == 2
    batch = np.asarray(images, dtype=np.float32).reshape(-1, SIZE, SIZE)
    x = torch.from_numpy(batch)
    total = x.sum(dim=(1, 2))
    safe = total.clamp_min(1e-6)
    coords = torch.arange(SIZE, dtype=torch.float32)
    # Moments from row and column profiles (small matmuls), not full-size products.
    row_mass = x.sum(dim=2)  # (N, 28): ink per row
    col_mass = x.sum(dim=1)  # (N, 28): ink per column
    cy = row_mass @ coords / safe
    cx = col_mass @ coords / safe
    var_y = row_mass @ (coords * coords) / safe - cy * cy
    cov_xy = ((x @ coords) @ coords) / safe - cy * cx
    alpha = torch.where(var_y > 1e-6, cov_xy / var_y.clamp_min(1e-6), torch.zeros_like(var_y))
    # Empty images stay as they are.
    alpha = torch.where(total > 0, alpha, torch.zeros_like(alpha))
    cy = torch.where(total > 0, cy, torch.full_like(cy, CENTRE))
    cx = torch.where(total > 0, cx, torch.full_like(cx, CENTRE))

    # The same map in grid_sample's coordinates ((x, y) in [-1, 1], align_corners=True puts
    # -1 and 1 on the outer pixel centres), where it is affine: x' = x + alpha y + tx, y' = y + ty.
    # Written in place: F.affine_grid builds the same grid three times slower.
    n, half = len(x), (SIZE - 1) / 2.0
    lin = torch.linspace(-1.0, 1.0, SIZE)
    grid = torch.empty(n, SIZE, SIZE, 2)
    gx, gy = grid[..., 0], grid[..., 1]
    gx.copy_(lin.view(1, 1, SIZE).expand(n, SIZE, SIZE))
    gx.add_(alpha.view(-1, 1, 1) * lin.view(1, SIZE, 1))
    gx.add_(((cx - CENTRE) / half).view(-1, 1, 1))
    gy.copy_((lin.view(1, SIZE, 1) + ((cy - CENTRE) / half).view(-1, 1, 1)).expand(n, SIZE, SIZE))
    out = F.grid_sample(
        x.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=True
    ).squeeze(1)
    result = out.clamp_(0, 255).numpy()
    return result[0] if single else result


def apply_transforms(images: np.ndarray, transforms: tuple[str, ...] | list[str]) -> np.ndarray:
    """Apply the named transforms (as recorded in a checkpoint) in order; float32 out."""
    out = np.asarray(images, dtype=np.float32)
    for name in transforms:
        if name == "deskew":
            out = deskew(out)
        else:
            raise ValueError(f"unknown input transform {name!r}; known: {KNOWN_TRANSFORMS}")
    return out
