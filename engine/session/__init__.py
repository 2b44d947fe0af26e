"""An opened project for the views, in parts with one job each.

- :mod:`.opening`: reading the project, its runs, result, surface and atlases;
- :mod:`.timebase`: per run, video frame, TR, feature row and result row from one place;
- :mod:`.stimulus`: frames, subtitles, words and the scrub proxy;
- :mod:`.attention`: attention files registered in the project;
- :mod:`.maps`: brain maps and time courses;
- :mod:`.regions`: per-region tables;
- :mod:`.colour`: colour tables and blending (pure numpy);
- :mod:`.project_session`: :class:`ProjectSession`, the facade composing them.
"""

from .colour import (INFERNO, blend, blend_heatmap, heatmap_frame, heatmap_rgb, is_special_token, token_shading,
                     upsample_grid)
from .opening import LoadedRun, load_surface
from .project_session import ProjectSession
from .timebase import TimeBase

__all__ = ["LoadedRun", "ProjectSession", "TimeBase", "load_surface", "upsample_grid", "heatmap_rgb", "blend",
           "blend_heatmap", "heatmap_frame", "token_shading", "is_special_token", "INFERNO"]
