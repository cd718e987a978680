"""State stores (adapters): the `protocol.StateStore` interface, `memory`, `sqlite` (the default) and
`redis` backends, `factory.open_store`, `schema` (the `[store]` and `[admin]` settings).
"""
