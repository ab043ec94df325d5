"""zkwarden's benchmarks against kazoo, aiozk and a raw-socket bound (``make bench``).

See ``bench/README.md``. Not part of the library.
"""
