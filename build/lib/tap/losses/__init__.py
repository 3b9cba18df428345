"""Loss terms, one family per file: contrastive (encoder) and world-model terms."""
