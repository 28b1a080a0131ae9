"""Step keys, content hashing with a stat cache, and the record of layer use for pruning."""
