"""Suite-wide test settings."""

from hypothesis import settings

# The suite runs on 2-core machines beside real daemons: a per-example deadline would turn a busy
# moment into a failure that says nothing about the code. Hypothesis still reports slow examples.
settings.register_profile("ductile", deadline=None)
settings.load_profile("ductile")
