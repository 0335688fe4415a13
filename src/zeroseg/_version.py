__version__ = "0.1.0"

NUMERICS_VERSION = 2
"""Version of zeroseg's numerics: bumped whenever any output changes (a label map, a capture, a score).

It is part of the feature cache key and of every evaluation run's hash, so captures and per-image results
computed by another numerics version are never reused as current ones. ``tests/test_numerics_version.py`` fails
when the pinned outputs change and this number does not.
"""
