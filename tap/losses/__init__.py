"""Loss terms, one family per file: contrastive (encoder) and sibling ranking (world model) terms."""
