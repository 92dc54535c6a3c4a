"""Tests of neuronav.deid."""
