"""The searchable index of recordings: its SQL (store), its thread (indexer) and how numbers are matched."""

__all__ = ["store", "indexer", "numberplan"]
