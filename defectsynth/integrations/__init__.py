"""Training-loop integrations.

``DefectDataset`` needs nothing beyond defectsynth's own dependencies. The adapters that
need third-party packages live in their own modules and import them only when imported:
``defectsynth.integrations.torch`` (torch, optionally torchvision) and
``defectsynth.integrations.albumentations`` (albumentations 2.x).
"""

from __future__ import annotations

from .dataset import DefectDataset, read_image

__all__ = ["DefectDataset", "read_image"]
