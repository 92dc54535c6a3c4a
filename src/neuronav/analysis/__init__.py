"""The analysis engine: preprocessing (reorient, register, resample, mask, normalise), model
inference and measurements. Public entry point of the first stage: :mod:`neuronav.analysis.preprocess`."""
