"""The off-site repository at scale: many entries, uploads and retention."""
