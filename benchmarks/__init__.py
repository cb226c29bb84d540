"""Side-by-side benchmarks of fastpeewee and its peers (``make bench``)."""
