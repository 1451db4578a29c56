"""The only package that imports redis: clients, keys, Lua scripts, repositories."""
