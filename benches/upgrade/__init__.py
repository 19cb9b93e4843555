"""What clients see while the sidecar is upgraded in place (hand-over)."""
