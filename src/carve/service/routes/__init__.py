"""The service's routes, one `APIRouter` per resource: health, jobs, datasets (with clusters and
events), versions, report. `carve.service.app.create_app` includes them in that order."""
