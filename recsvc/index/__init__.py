"""The searchable index of recordings: what an index is and what searches
ask (store), its backends (sqlite, the embedded default; postgres, shared by
several nodes; backends picks one), its thread (indexer) and how numbers
are matched (numberplan)."""

__all__ = ["store", "backends", "sqlite", "postgres", "indexer", "numberplan", "spreadsheet"]
