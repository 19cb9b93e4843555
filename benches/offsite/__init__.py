"""Copy entries replicated off-site, against rclone."""
