"""Profile schema, byte layout, event → update specs and feature decoding."""
