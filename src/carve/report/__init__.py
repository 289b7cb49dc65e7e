"""The coverage audit's static outputs: the report page (jinja2 templates, matplotlib charts) and
`carve ui-export`, both read from the audit read model (`carve.audit`)."""
