"""Files on disk: the recordings folder, WAV files, names, a recording's parts, sync turns, crash recovery, retention, free space and the phones' USB files."""

from recsvc.storage.folder import Storage

# The recordings folder at a path that stays when its module changes (the
# archive backends come beside it); then the package's modules.
__all__ = [
    "Storage",
    "folder", "wav", "naming", "parts", "syncing", "recovery", "retention", "diskspace",
    "usbfile", "erasure",
]
