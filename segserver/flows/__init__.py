"""The use cases: every request and job calls exactly one flow (DESIGN.md "Modules")."""
