"""bookengine: exact L2 order books for BTSE's OSS stream, kept in sync by a sans-I/O core."""

__version__ = "0.1.0"
