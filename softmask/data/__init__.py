"""Video and mask I/O (DAVIS layout) and the synthetic VOS video generator."""
