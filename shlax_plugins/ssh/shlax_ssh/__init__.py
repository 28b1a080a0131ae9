"""shlax's SSH backend: the system's OpenSSH client, multiplexed, one round trip per command."""
