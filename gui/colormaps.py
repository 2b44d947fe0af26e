"""Colouring brain maps on a grey cortex: the view of :mod:`engine.session.colour`.

The colour tables live in the engine (pure numpy, one home); the cortex view and its colour
bar import them from here so that both paint exactly the same colours.
"""

from engine.session.colour import MapStyle, cortex_background, map_rgb, value_colors

__all__ = ["MapStyle", "cortex_background", "map_rgb", "value_colors"]
