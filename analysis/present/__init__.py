"""Presentation of results: what a person reads. Never computes a statistic itself.

- ``findings``: the Overview's "what to look at", each with the query that opens its images.
- ``query``: the gallery's image queries (filters, sorts) and their URLs.
- ``figures``: Plotly figure builders shared by the dashboard and the report.
- ``formatting``: how numbers and intervals are written.
- ``report``: the exported report (HTML, Markdown, CSV).
"""
