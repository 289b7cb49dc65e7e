"""LeRobot datasets on the Hugging Face Hub: `hf://datasets/<org>/<name>[@<revision>]`.

Owns `open_hub_source(uri, ...)`, which `open_source` calls for an `hf://` URI:

1. the revision (default `main`) is pinned to its commit (`carve.storage.hub.pin`), so the
   source's `uri`, every `EpisodeRef.source_uri` and the catalog's record of the dataset name
   the commit (`hf://datasets/org/name@<sha>`), and the workers read that snapshot whatever
   the branch does meanwhile; the source keeps what was asked for (`requested_uri`) and the
   commit (`revision`);
2. the repo must be a LeRobot dataset (`meta/info.json`): anything else raises `SourceError`
   naming the repo;
3. it is then read by the ordinary `LeRobotSource`, through the Hub filesystem that
   `carve.storage.fs.resolve` returns for `hf://` (range reads through a block cache, each
   byte fetched at most once; see `carve.storage.hub`).

The dataset's name is the repo's name (`lerobot/pusht` -> `pusht`), as for a local copy in a
folder of that name, unless `dataset=` says otherwise.
"""

from __future__ import annotations

from carve.core.errors import SourceError
from carve.ingest.sources.lerobot import LeRobotSource
from carve.storage.hub import HubError, is_hub_uri, pin

__all__ = ["HubLeRobotSource", "is_hub_uri", "open_hub_source"]


class HubLeRobotSource(LeRobotSource):
    """A `LeRobotSource` over a pinned Hub revision; `requested_uri` is the URI as given and
    `revision` the commit it resolved to."""

    requested_uri: str
    revision: str


def open_hub_source(uri: str, format: str = "auto", *, dataset: str | None = None,
                    camera: str | list[str] | None = None) -> HubLeRobotSource:
    if format not in ("auto", "lerobot"):
        raise SourceError(f"dataset {uri}: Carve reads LeRobot datasets from the Hub, not format {format!r} "
                          "(use --format auto or lerobot)")
    try:
        hp = pin(uri)
    except HubError as e:
        raise SourceError(f"dataset {uri}: {e}") from None
    pinned = hp.uri
    from carve.storage.fs import resolve

    fs, root = resolve(pinned)
    import pyarrow.fs as pafs

    try:
        has_info = fs.get_file_info(root + "/meta/info.json").type == pafs.FileType.File
    except HubError as e:
        raise SourceError(f"dataset {uri}: {e}") from None
    if not has_info:
        raise SourceError(
            f"dataset {uri}: Hub repo {hp.repo_id} at {hp.revision} is not a LeRobot dataset (no meta/info.json); "
            "Carve reads LeRobot v2.1/v3.0 datasets from the Hub"
        )
    try:
        src = HubLeRobotSource(pinned, dataset=dataset or hp.name, camera=camera)
    except HubError as e:
        raise SourceError(f"dataset {uri}: {e}") from None
    src.requested_uri = uri
    src.revision = str(hp.revision)
    return src
