"""The coverage audit: reads a catalog and its versions, renders the report page from jinja2 templates."""
