"""Street-level views rendered from OpenStreetMap maps (placeholder, filled below)."""
