from admin_harness import admin  # noqa: F401  (fixture)
