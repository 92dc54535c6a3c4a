"""NeuroNav: AI analysis of brain MRI (research software, not for clinical use)."""

__version__ = "0.1.0"
