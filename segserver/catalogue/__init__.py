"""Catalogue: sites, segments, campaigns and content (redis-om models), and the
per-site runtime the request path uses (schema, event types, dictionaries)."""
