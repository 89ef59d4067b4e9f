"""Records, readers of public formats, image loading and collation."""
