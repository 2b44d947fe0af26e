"""A BIDS / fMRIPrep folder as a :class:`~engine.project.Project`."""

from __future__ import annotations

from typing import Dict, Optional

from ..io.bids import scan_bids_folder
from ..project import AtlasRef, Episode, Project, RunRef

__all__ = ["discover_bids", "DEFAULT_SURFACE_ATLAS"]

#: Bundled atlas given to surface data (the user can change ``project.atlases``).
DEFAULT_SURFACE_ATLAS = "schaefer400"
_ATLAS_SPACES = ("fsaverage5", "fsLR32k")


def discover_bids(path, tr_s: Optional[float] = None, space: Optional[str] = None,
                  desc: Optional[str] = None) -> Project:
    """Build a Project from the BOLD runs under a BIDS or fMRIPrep folder.

    Parameters
    ----------
    tr_s : float, optional
        The TR the user gave (``--tr``): used where the files hold none; a clash with a TR
        stored with the data is listed in ``extra["problems"]`` (and ``tr_s`` used).
    space : str, optional
        Keep only runs in this ``space-`` (e.g. ``fsaverage5``, ``MNI152NLin2009cAsym``).
    desc : str, optional
        Keep only runs with this ``desc-`` (e.g. ``preproc``).

    Returns
    -------
    Project
        One RunRef per run (a GIFTI pair is one run, referenced by its ``hemi-L`` file), with
        confounds (``desc-confounds_timeseries.tsv``) and brain mask (``desc-brain_mask``)
        attached. A run's episode is the video its ``events.tsv`` ``stim_file`` names (the
        episode is named after the file), else its task (with a video named after the task
        when there is one). Surface runs (fsaverage5 / fsLR32k) get the bundled
        ``schaefer400`` atlas as the project's atlas. ``extra`` holds ``layout``,
        ``problems``, ``tr_sources`` (run -> where its TR came from), ``missing_runs`` and
        ``held_out_episodes`` (videos no run is paired with).
    """
    scan = scan_bids_folder(path, tr_s=tr_s, space=space, desc=desc)
    root = scan.root
    project = Project(name=root.name, root=root)
    episodes: Dict[str, Episode] = {}
    used_videos = set()
    tr_sources = {}
    for r in scan.runs:
        episode = r.stimulus.stem if (r.stim_file and r.stimulus is not None) else \
            (r.stim_file.rsplit("/", 1)[-1].split(".")[0] if r.stim_file else r.task)
        if r.stimulus is not None:
            used_videos.add(r.stimulus)
        project.runs.append(RunRef(
            name=r.name, path=project.relative(r.path), episode=episode, subject=r.subject, space=r.space,
            tr_s=float(r.tr_s), confounds=project.relative(r.confounds) if r.confounds else None,
            mask=project.relative(r.mask) if r.mask else None))
        tr_sources[r.name] = r.tr_source
        if episode not in episodes:
            episodes[episode] = Episode(name=episode, video=project.relative(r.stimulus) if r.stimulus else None,
                                        events=project.relative(r.events) if r.events else None)
        elif episodes[episode].video is None and r.stimulus is not None:
            episodes[episode].video = project.relative(r.stimulus)
    held_out = []
    for v in scan.videos:
        if v in used_videos or v.stem in episodes:
            continue
        episodes[v.stem] = Episode(name=v.stem, video=project.relative(v))
        held_out.append({"episode": v.stem, "reason": "a stimulus no run is paired with"})
    project.episodes = [episodes[k] for k in sorted(episodes)]
    spaces = sorted({r.space for r in project.runs if r.space in _ATLAS_SPACES})
    if spaces:
        project.atlases.append(AtlasRef(name=DEFAULT_SURFACE_ATLAS, path=f"builtin:{DEFAULT_SURFACE_ATLAS}",
                                        space=spaces[0]))
    subjects = sorted({r.subject for r in project.runs})
    with_runs: Dict[str, set] = {}
    for r in project.runs:
        with_runs.setdefault(r.episode, set()).add(r.subject)
    missing = [{"subject": s, "episode": ep, "known": False}
               for ep in sorted(with_runs) for s in subjects if s not in with_runs[ep]]
    project.extra.update({"layout": "bids", "problems": list(scan.problems), "tr_sources": tr_sources,
                          "subjects": subjects, "missing_runs": missing, "held_out_episodes": held_out})
    return project
