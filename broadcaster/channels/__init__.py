"""The channels: their specs, the data each is built from, system status, feeds and freshness."""
