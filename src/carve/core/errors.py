"""Error types that name the thing that failed and the reason.

`EpisodeError` is raised for one bad episode: the pipeline quarantines that episode in
the catalog and carries on. `SourceError` is raised when a whole source cannot be read
(unknown format version, missing meta files): nothing can be listed, the run stops.
"""

from __future__ import annotations


class CarveError(Exception):
    """Base class of Carve's own errors."""


class SourceError(CarveError):
    """A dataset that cannot be opened at all. The message names the dataset and the reason."""


class EpisodeError(CarveError):
    """One episode that cannot be processed.

    The message reads like `episode 17 of lerobot:///data/panda: video ends at 4.2 s but
    actions run to 6.0 s`.
    """

    def __init__(self, episode: str, reason: str):
        self.episode = episode
        self.reason = reason
        super().__init__(f"{episode}: {reason}")
