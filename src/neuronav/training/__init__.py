"""Reproducible training of the shipped models on synthetic, domain-randomised phantom data.

- :mod:`neuronav.training.data` – training cases: phantom heads rendered with random contrast,
  bias, noise, resolution and residual misregistration, normalised exactly as inference does.
- :mod:`neuronav.training.unet` – the segmentation network (needs the ``train`` extra: torch).
- :mod:`neuronav.training.segmentation` – the training loop, ONNX export and model card.
"""
