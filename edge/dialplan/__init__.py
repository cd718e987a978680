"""Dialplan files (sans-IO): `schema` (the TOML structs), `load.load_dialplans` (a directory -> a
validated `plan.Plan`, errors as `file: $.path: reason`), `plan.Plan.lookup` (called number -> entry).
"""
