"""Image sources, by-image splits and patch sampling (``sources``, ``patches``)."""
