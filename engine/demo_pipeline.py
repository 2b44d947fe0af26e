"""Moved to :mod:`engine.pipeline.demo` (the demo runs on the one analysis pipeline); kept importable."""

from .pipeline.demo import (ALPHAS, DELAYS, REGION_SPACE, feature_spaces, recovery_summary,  # noqa: F401
                            run_demo_pipeline)

__all__ = ["run_demo_pipeline", "feature_spaces", "recovery_summary", "DELAYS", "ALPHAS", "REGION_SPACE"]
