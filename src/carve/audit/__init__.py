"""The read model of one clustering version: layout, neighbours, summaries, coverage, quality.

* `derive`: `derive_views(root, version)`, called once after every clustering step, writes the
  version's summary, layout and neighbours files (the UI's data products).
* `model`: `VersionView`, one object per clustering version with named, cached members; the
  service's routes, the static report and `carve ui-export` read it.
* `coverage`: the one "under-covered" rule and the change between two versions.
* `quality`: the quality gate's findings per dataset (counts, worst episodes, drop list), per
  event, and as the map's `defect` facet.
* `models`: the typed (pydantic) responses of the audit routes.
* `paths`: every API path the analysts' pages read, written once.
"""
