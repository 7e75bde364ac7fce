"""Files on disk: the recordings folder, WAV files, names, crash recovery, retention, free space and the phones' USB files."""
